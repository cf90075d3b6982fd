"""`gcloud storage` for standin-gcloud: Cloud Storage as files, for lifeos's gs:// backup tests.

Objects are files under $STANDIN_GCLOUD_HOME/storage/BUCKET/OBJECT (a bucket is a directory:
`storage buckets create gs://B` or a test's mkdir). Each write gets a new generation, kept in
state.json under "storage". Commands, with gcloud's flags and words:

  storage cp SRC DST                      local -> gs://, gs:// -> local (file or directory)
  storage cat URL                         the object's bytes on stdout
  storage ls [URL]                        buckets, or the objects under gs://B[/PREFIX]
  storage objects describe URL            metadata as `--format json` prints it (snake_case
                                          keys: size, md5_hash and crc32c_hash in base64, ...)
  storage buckets create gs://B

Every command needs an account (gcloud's "You do not currently have an active account
selected", exit 1). A missing bucket or object is gcloud's 404 message, exit 1.
STANDIN_GCLOUD_STORAGE_FAIL=cp makes every `cp` to gs:// fail after writing nothing (a test
hook: no such variable exists in gcloud).
"""
import base64
import datetime
import hashlib
import json
import os
import shutil
import sys

import common

GROUP = "gcloud.storage"


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc32c_table()


def crc32c(path):
    crc = 0xFFFFFFFF
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            for b in chunk:
                crc = _CRC[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFF).to_bytes(4, "big")


def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.digest()


def b64(raw):
    return base64.b64encode(raw).decode()


def split_url(url, command):
    """gs://BUCKET/OBJECT -> (BUCKET, OBJECT or "")."""
    if not url.startswith("gs://"):
        raise common.GcloudError(command, f"Invalid cloud URL: {url}")
    rest = url[len("gs://"):]
    bucket, _, obj = rest.partition("/")
    if not bucket:
        raise common.GcloudError(command, f"Invalid cloud URL: {url}")
    return bucket, obj


class Storage:
    def __init__(self, ctx):
        self.ctx = ctx
        self.root = ctx.path("storage")

    def bucket_dir(self, bucket):
        return os.path.join(self.root, bucket)

    def has_bucket(self, bucket):
        return os.path.isdir(self.bucket_dir(bucket))

    def object_path(self, bucket, obj):
        return os.path.join(self.bucket_dir(bucket), obj)

    def has_object(self, bucket, obj):
        return bool(obj) and os.path.isfile(self.object_path(bucket, obj))

    def objects(self, bucket, prefix=""):
        base = self.bucket_dir(bucket)
        out = []
        for d, _, files in os.walk(base):
            for f in files:
                name = os.path.relpath(os.path.join(d, f), base)
                if name.startswith(prefix) and not name.endswith(".standin-tmp"):
                    out.append(name)
        return sorted(out)

    def put(self, src, bucket, obj):
        dest = self.object_path(bucket, obj)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        tmp = dest + ".standin-tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
        with self.ctx.locked():
            state = self.ctx.load()
            gens = state.setdefault("storage", {}).setdefault("generations", {})
            key = f"{bucket}/{obj}"
            now = datetime.datetime.now(datetime.timezone.utc)
            gens[key] = {
                "generation": str(int(now.timestamp() * 1_000_000)),
                "created": now.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            }
            self.ctx.save(state)

    def describe(self, bucket, obj):
        path = self.object_path(bucket, obj)
        gen = self.ctx.load().get("storage", {}).get("generations", {}).get(f"{bucket}/{obj}", {})
        generation = gen.get("generation", "1")
        created = gen.get("created", "1970-01-01T00:00:00+0000")
        md5_raw = md5(path)
        return {
            "bucket": bucket,
            "content_type": "application/octet-stream",
            "crc32c_hash": b64(crc32c(path)),
            "creation_time": created,
            "etag": b64(hashlib.sha1(f"{bucket}/{obj}#{generation}".encode()).digest()[:10]),
            "generation": generation,
            "md5_hash": b64(md5_raw),
            "metageneration": 1,
            "name": obj,
            "size": os.path.getsize(path),
            "storage_class": "STANDARD",
            "storage_url": f"gs://{bucket}/{obj}#{generation}",
            "update_time": created,
        }


def no_match(command, urls):
    listed = "\n".join(f"-{u}" for u in urls)
    return common.GcloudError(command, f"The following URLs matched no objects or files:\n{listed}")


def cp(argv, ctx):
    command = f"{GROUP}.cp"
    args = common.Flags(argv, ctx, command, flags={"--no-clobber": False, "-n": False,
                                                   "--content-type": True})
    ctx.require_auth(command)
    if len(args.positional) < 2:
        return ctx.usage_error(command, "argument DESTINATION: Must be specified.")
    if len(args.positional) > 2:
        # gcloud copies several sources into a "directory"; lifeos never does.
        return ctx.usage_error(command, "standin-gcloud copies one source at a time")
    src, dst = args.positional
    st = Storage(ctx)
    if dst.startswith("gs://"):
        if src.startswith("gs://"):
            return ctx.usage_error(command, "standin-gcloud does not copy between buckets")
        if not os.path.isfile(src):
            raise no_match(command, [src])
        bucket, obj = split_url(dst, command)
        if not st.has_bucket(bucket):
            raise common.GcloudError(
                command,
                f"HTTPError 404: The destination bucket gs://{bucket} does not exist or the write "
                "to the destination must be restarted",
            )
        if not obj or obj.endswith("/"):
            obj = obj + os.path.basename(src)
        if os.environ.get("STANDIN_GCLOUD_STORAGE_FAIL") == "cp":
            raise common.GcloudError(command, "HTTPError 503: We encountered an internal error. Please try again.")
        if args.has("--no-clobber") or args.has("-n"):
            if st.has_object(bucket, obj):
                print(f"Skipping existing destination item (no-clobber): gs://{bucket}/{obj}", file=sys.stderr)
                return 0
        print(f"Copying file://{os.path.abspath(src)} to gs://{bucket}/{obj}", file=sys.stderr)
        st.put(src, bucket, obj)
        print("  Completed files 1/1", file=sys.stderr)
        return 0
    if src.startswith("gs://"):
        bucket, obj = split_url(src, command)
        if not st.has_bucket(bucket):
            raise common.GcloudError(command, f"gs://{bucket} not found: 404.")
        if not st.has_object(bucket, obj):
            raise no_match(command, [src])
        dest = os.path.join(dst, os.path.basename(obj)) if os.path.isdir(dst) else dst
        if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
            raise common.GcloudError(command, f"[Errno 2] No such file or directory: '{dest}'")
        print(f"Copying gs://{bucket}/{obj} to file://{os.path.abspath(dest)}", file=sys.stderr)
        tmp = dest + "_.gstmp"  # gcloud's temporary name for a download in progress
        shutil.copyfile(st.object_path(bucket, obj), tmp)
        os.replace(tmp, dest)
        print("  Completed files 1/1", file=sys.stderr)
        return 0
    return ctx.usage_error(command, "standin-gcloud copies to or from gs:// only")


def cat(argv, ctx):
    command = f"{GROUP}.cat"
    args = common.Flags(argv, ctx, command, flags={})
    ctx.require_auth(command)
    if len(args.positional) != 1:
        return ctx.usage_error(command, "standin-gcloud cats one URL")
    url = args.positional[0]
    bucket, obj = split_url(url, command)
    st = Storage(ctx)
    if not st.has_bucket(bucket):
        raise common.GcloudError(command, f"gs://{bucket} not found: 404.")
    if not st.has_object(bucket, obj):
        raise no_match(command, [url])
    out = sys.stdout.buffer
    with open(st.object_path(bucket, obj), "rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)
    out.flush()
    return 0


def ls(argv, ctx):
    command = f"{GROUP}.ls"
    args = common.Flags(argv, ctx, command, flags={"--long": False, "-l": False})
    ctx.require_auth(command)
    st = Storage(ctx)
    if not args.positional:
        for b in sorted(os.listdir(st.root)) if os.path.isdir(st.root) else []:
            print(f"gs://{b}/")
        return 0
    for url in args.positional:
        bucket, prefix = split_url(url, command)
        if not st.has_bucket(bucket):
            raise common.GcloudError(command, f"gs://{bucket} not found: 404.")
        names = st.objects(bucket, prefix)
        if not names:
            raise no_match(command, [url])
        for n in names:
            if args.has("--long") or args.has("-l"):
                d = st.describe(bucket, n)
                print(f"{d['size']:>10}  {d['creation_time'].replace('+0000', 'Z')}  gs://{bucket}/{n}")
            else:
                print(f"gs://{bucket}/{n}")
    return 0


def objects(argv, ctx):
    if not argv or argv[0] != "describe":
        return ctx.usage_error(f"{GROUP}.objects", f"Invalid choice: '{argv[0] if argv else ''}'.")
    command = f"{GROUP}.objects.describe"
    args = common.Flags(argv[1:], ctx, command, flags={"--raw": False})
    ctx.require_auth(command)
    if len(args.positional) != 1:
        return ctx.usage_error(command, "argument URL: Must be specified.")
    url = args.positional[0]
    bucket, obj = split_url(url, command)
    st = Storage(ctx)
    if not st.has_bucket(bucket):
        raise common.GcloudError(command, f"gs://{bucket} not found: 404.")
    if not st.has_object(bucket, obj):
        raise common.GcloudError(command, f"gs://{bucket}/{obj} not found: 404.")
    fmt = args.get("--format", "yaml")
    d = st.describe(bucket, obj)
    if fmt.startswith("json"):
        common.print_json(d)
    else:
        for k in sorted(d):
            print(f"{k}: {d[k]}")
    return 0


def buckets(argv, ctx):
    if not argv or argv[0] != "create":
        return ctx.usage_error(f"{GROUP}.buckets", f"Invalid choice: '{argv[0] if argv else ''}'.")
    command = f"{GROUP}.buckets.create"
    args = common.Flags(argv[1:], ctx, command, flags={"--location": True, "-l": True})
    ctx.require_auth(command)
    for url in args.positional:
        bucket, _ = split_url(url, command)
        st = Storage(ctx)
        if st.has_bucket(bucket):
            raise common.GcloudError(command, f"HTTPError 409: The requested bucket name is not available.")
        os.makedirs(st.bucket_dir(bucket))
        print(f"Creating gs://{bucket}/...", file=sys.stderr)
    return 0


def main(argv, ctx):
    if not argv:
        return ctx.usage_error(GROUP, "Command name argument expected.")
    cmd, rest = argv[0], argv[1:]
    handlers = {"cp": cp, "cat": cat, "ls": ls, "objects": objects, "buckets": buckets}
    if cmd not in handlers:
        return ctx.usage_error(GROUP, f"Invalid choice: '{cmd}'.")
    return handlers[cmd](rest, ctx)
