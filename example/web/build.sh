#!/bin/sh
# "Build" the web app into web/dist: bundle the CSS with the shared theme and
# stamp the app name/version from shared/app.env into the HTML.
# Run from the app root (the directory holding package.json).
set -eu

. ./shared/app.env
out=web/dist
build_id=$(cat package.json shared/app.env shared/theme.css web/*.html web/*.css web/*.js web/httpd.conf | sha256sum | cut -c1-12)

rm -rf "$out"
mkdir -p "$out"
sed -e "s/{{APP_NAME}}/$APP_NAME/g" \
    -e "s/{{APP_VERSION}}/$APP_VERSION/g" \
    -e "s/{{BUILD_ID}}/$build_id/g" \
    web/index.html > "$out/index.html"
cat shared/theme.css web/styles.css > "$out/app.css"
cp web/app.js "$out/app.js"
cp web/404.html web/httpd.conf "$out/"
printf '{"name":"%s","version":"%s","build":"%s"}\n' "$APP_SLUG" "$APP_VERSION" "$build_id" > "$out/version.json"
echo "web: built $APP_NAME v$APP_VERSION ($build_id) into $out"
