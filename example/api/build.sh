#!/bin/sh
# "Build" the API into api/dist: lay out the runtime tree and stamp the
# version from shared/app.env. Run from the app root (holding package.json).
set -eu

. ./shared/app.env
out=api/dist
build_id=$(cat package.json shared/app.env api/cgi-bin/* api/bin/* api/lib/* api/httpd.conf | sha256sum | cut -c1-12)

rm -rf "$out"
mkdir -p "$out/bin" "$out/etc" "$out/lib" "$out/public/cgi-bin"
cp api/bin/serve api/bin/handle-request "$out/bin/"
cp api/lib/probe.sh "$out/lib/"
cp api/cgi-bin/health api/cgi-bin/ready "$out/public/cgi-bin/"
chmod 0755 "$out"/bin/* "$out"/public/cgi-bin/*
cp shared/app.env "$out/etc/app.env"
cp api/httpd.conf "$out/etc/httpd.conf"
printf '{"name":"%s-api","version":"%s","build":"%s"}\n' "$APP_SLUG" "$APP_VERSION" "$build_id" > "$out/public/version.json"
echo "api: built $APP_NAME API v$APP_VERSION ($build_id) into $out"
