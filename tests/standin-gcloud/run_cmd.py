"""`gcloud run ...` for standin-gcloud: a fake Cloud Run (services, revisions, traffic, tags).

Commands: `run deploy`, `run services describe|list|update-traffic|delete`, `run revisions
list|describe`. The traffic rules are gcloud's own (lib/googlecloudsdk/api_lib/run/traffic.py,
see ../shared/notes/delivery.md §2): proportional rescaling of unspecified serving targets,
integer percentages (truncate, then +1 to the targets that lost most; ties: the smaller
percentage, then the smaller key, LATEST last), the mutually exclusive --to-* flags, tags on
separate 0% targets, and gcloud's error messages. Output shapes are the real ones: the Knative
Service for deploy/describe, a list of TrafficTargetPair for update-traffic, a list of Knative
Revisions for `revisions list`.

Test hooks (never in real gcloud):
  an image whose repository path contains `broken` makes a revision that never gets ready
  (`run deploy` fails the way Cloud Run does, traffic untouched);
  STANDIN_GCLOUD_FAIL_UPDATE_TRAFFIC=1 makes `update-traffic` fail (server error, nothing changed);
  STANDIN_GCLOUD_URL_BASE=http://127.0.0.1:PORT makes service URLs http://127.0.0.1:PORT/SERVICE
  and tag URLs http://127.0.0.1:PORT/TAG---SERVICE, so a test can answer them.
"""
import datetime
import hashlib
import json
import os
import re
import sys

import common
from common import Flags, GcloudError

LATEST = "LATEST"


# ---- traffic arithmetic (gcloud's api_lib/run/traffic.py, on plain dicts) ----
#
# A target is {"key": "LATEST" | REVISION, "percent": int or None, "tag": str or None}.


def sort_key(key):
    """Revision names first (sorted), LATEST last."""
    return (2, key) if key == LATEST else (1, key)


def normalized(targets):
    """(percent by key, tag targets): percents of one key summed, tags moved to 0% targets."""
    percents, tags = {}, []
    for t in targets:
        if t.get("tag"):
            tags.append({"key": t["key"], "percent": None, "tag": t["tag"]})
        if t.get("percent"):
            percents[t["key"]] = percents.get(t["key"], 0) + t["percent"]
    return percents, tags


def int_percentages(floats):
    """Truncate; then +1 to as many as the total lost, in gcloud's correction order."""
    rounded = {k: int(v) for k, v in floats.items()}
    loss = int(round(sum(floats.values()))) - sum(rounded.values())
    order = sorted(floats.items(), key=lambda kv: (1 - (kv[1] - int(kv[1])), kv[1], sort_key(kv[0])))
    for k, _ in order[:loss]:
        rounded[k] += 1
    return rounded


class TrafficError(Exception):
    """gcloud's InvalidTrafficSpecificationError / ValueError text."""


def update_traffic(targets, new_percentages):
    """The targets after `new_percentages` (key -> int), as gcloud's UpdateTraffic computes them."""
    existing, tag_targets = normalized(targets)
    total = sum(existing.values())
    if total != 100:
        raise TrafficError("Current traffic allocation of %s is not 100 percent" % total)
    unassigned = {k: p for k, p in existing.items() if k not in new_percentages}
    specified = sum(new_percentages.values())
    if specified > 100:
        raise TrafficError("Over 100% of traffic is specified.")
    for k, p in new_percentages.items():
        if p < 0 or p > 100:
            raise TrafficError("New traffic for target %s is %s, not between 0 and 100" % (k, p))
    if not unassigned and specified < 100:
        raise TrafficError("Every target with traffic is updated but 100% of traffic has not been specified.")
    floats = dict(new_percentages)
    to_assign = 100 - specified
    if to_assign:
        from_total = sum(unassigned.values())
        for k, p in unassigned.items():
            floats[k] = p * float(to_assign) / from_total
    ints = int_percentages(floats)
    out = []
    for k in sorted(ints, key=sort_key):
        if k in new_percentages and new_percentages[k] == 0:
            continue
        out.append({"key": k, "percent": ints[k], "tag": None})
    return out + tag_targets


def update_tags(targets, to_update, to_remove, clear_others):
    """gcloud's UpdateTags: tags removed/cleared, then each new tag on its own 0% target."""
    if not targets:
        targets = [{"key": LATEST, "percent": 100, "tag": None}]
    out = []
    for t in targets:
        t = dict(t)
        if clear_others or t.get("tag") in to_remove or t.get("tag") in to_update:
            t["tag"] = None
        if t.get("percent") or t.get("tag"):
            out.append(t)
    for tag, key in sorted(to_update.items()):
        out.append({"key": key, "percent": None, "tag": tag})
    return out


def zero_latest(targets, latest_ready):
    """`--no-traffic`: what LATEST had goes to the revision that is latest now."""
    percents, tags = normalized(targets)
    if LATEST in percents:
        p = percents.pop(LATEST)
        percents[latest_ready] = percents.get(latest_ready, 0) + p
        return [{"key": k, "percent": percents[k], "tag": None} for k in sorted(percents, key=sort_key)] + tags
    return targets


def parse_percent(flag, text):
    try:
        v = int(text)
    except ValueError:
        raise GcloudError(UPDATE, f"argument {flag}: Traffic percentage value {text} is not an integer.", code=2)
    if v < 0 or v > 100:
        raise GcloudError(UPDATE, f"argument {flag}: Traffic percentage value {text} is not between 0 and 100.", code=2)
    return v


def key_values(flag, command, text):
    """`A=1,B=2` (or gcloud's `^DELIM^A=1DELIMB=2`) into an ordered dict."""
    delim = ","
    m = re.match(r"^\^([^^]+)\^(.*)$", text, re.S)
    if m:
        delim, text = m.group(1), m.group(2)
    out = {}
    for part in text.split(delim) if text else []:
        if "=" not in part:
            raise GcloudError(command, f"argument {flag}: Bad syntax for dict arg: [{part}].", code=2)
        k, v = part.split("=", 1)
        out[k] = v
    return out


# ---- the fake service ----

DEPLOY = "gcloud.run.deploy"
DESCRIBE = "gcloud.run.services.describe"
UPDATE = "gcloud.run.services.update-traffic"
LIST = "gcloud.run.services.list"
DELETE = "gcloud.run.services.delete"
REVISIONS = "gcloud.run.revisions.list"
REVISION = "gcloud.run.revisions.describe"

SCOPE = {"--region": True, "--platform": True}


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def project_number(project):
    return str(int(hashlib.sha256(project.encode()).hexdigest()[:10], 16) % 10**12)


def urls(project, region, service, tag=None):
    base = os.environ.get("STANDIN_GCLOUD_URL_BASE")
    name = f"{tag}---{service}" if tag else service
    if base:
        return f"{base.rstrip('/')}/{name}"
    h = hashlib.sha256(f"{project}/{region}".encode()).hexdigest()[:10]
    return f"https://{name}-{h}-uc.a.run.app"


def scope(args, ctx, command):
    project = args.get("--project") or ctx.load().get("project")
    if not project:
        raise GcloudError(command, "The required property [project] is not currently set.\n"
                          "It can be set on a per-command basis by re-running your command with the [--project] flag.")
    region = args.get("--region")
    if not region:
        raise GcloudError(command, "Missing required argument [--region]: You must specify a region. "
                          "Either use the `--region` flag or set the run/region property.", code=2)
    return project, region


def one_positional(args, command, what):
    if len(args.positional) != 1:
        raise GcloudError(command, f"argument {what}: Must be specified.", code=2)
    return args.positional[0]


def services(state):
    return state.setdefault("run", {}).setdefault("services", {})


def find(state, project, region, name):
    return services(state).get(f"{project}/{region}/{name}")


def condition(kind, ok, reason=None, message=None):
    c = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": now()}
    if not ok:
        c["reason"] = reason
        c["message"] = message
        c["severity"] = "Error"
    return c


def serving_keys(svc):
    """Revision name -> percent, LATEST resolved."""
    out = {}
    for t in svc["traffic"]:
        if t.get("percent"):
            name = svc["latestReady"] if t["key"] == LATEST else t["key"]
            out[name] = out.get(name, 0) + t["percent"]
    return out


def status_traffic(svc):
    out = []
    for t in svc["traffic"]:
        e = {}
        if t["key"] == LATEST:
            e["latestRevision"] = True
            e["revisionName"] = svc["latestReady"]
        else:
            e["revisionName"] = t["key"]
        if t.get("percent"):
            e["percent"] = t["percent"]
        if t.get("tag"):
            e["tag"] = t["tag"]
            e["url"] = urls(svc["project"], svc["region"], svc["name"], t["tag"])
        out.append(e)
    return out


def spec_traffic(svc):
    out = []
    for t in svc["traffic"]:
        e = {"latestRevision": True} if t["key"] == LATEST else {"revisionName": t["key"]}
        if t.get("percent"):
            e["percent"] = t["percent"]
        if t.get("tag"):
            e["tag"] = t["tag"]
        out.append(e)
    return out


def container_json(tpl):
    env = [{"name": k, "value": v} for k, v in tpl["env"].items()]
    for k, ref in tpl["secrets"].items():
        name, _, version = ref.partition(":")
        env.append({"name": k, "valueFrom": {"secretKeyRef": {"key": version or "latest", "name": name}}})
    c = {"image": tpl["image"], "ports": [{"containerPort": tpl["port"], "name": "http1"}],
         "resources": {"limits": {"cpu": tpl["cpu"], "memory": tpl["memory"]}}}
    if env:
        c["env"] = env
    return c


def template_spec(tpl):
    s = {"containerConcurrency": tpl["concurrency"], "timeoutSeconds": tpl["timeout"],
         "containers": [container_json(tpl)]}
    if tpl.get("serviceAccount"):
        s["serviceAccountName"] = tpl["serviceAccount"]
    return s


def template_annotations(tpl):
    a = {"run.googleapis.com/client-name": "gcloud", "run.googleapis.com/startup-cpu-boost": "true"}
    if tpl.get("minScale") is not None:
        a["autoscaling.knative.dev/minScale"] = str(tpl["minScale"])
    if tpl.get("maxScale") is not None:
        a["autoscaling.knative.dev/maxScale"] = str(tpl["maxScale"])
    return a


def service_json(svc):
    rev = svc["revisions"][svc["latestCreated"]]
    url = urls(svc["project"], svc["region"], svc["name"])
    tags = [urls(svc["project"], svc["region"], svc["name"], t["tag"]) for t in svc["traffic"] if t.get("tag")]
    ready = svc["latestCreated"] == svc["latestReady"]
    failed = None if ready else rev["failure"]
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": svc["name"],
            "namespace": project_number(svc["project"]),
            "generation": svc["generation"],
            "creationTimestamp": svc["created"],
            "labels": dict(svc["labels"], **{"cloud.googleapis.com/location": svc["region"]}),
            "annotations": {
                "run.googleapis.com/client-name": "gcloud",
                "run.googleapis.com/ingress": "all",
                "run.googleapis.com/ingress-status": "all",
                "run.googleapis.com/urls": json.dumps([url] + tags),
            },
        },
        "spec": {
            "template": {
                "metadata": {"name": rev["name"], "labels": dict(rev["labels"]),
                             "annotations": template_annotations(rev["template"])},
                "spec": template_spec(rev["template"]),
            },
            "traffic": spec_traffic(svc),
        },
        "status": {
            "address": {"url": url},
            "conditions": [
                condition("Ready", ready, "RevisionFailed", failed),
                condition("ConfigurationsReady", ready, "ContainerMissing", failed),
                condition("RoutesReady", True),
            ],
            "latestCreatedRevisionName": svc["latestCreated"],
            "latestReadyRevisionName": svc["latestReady"],
            "observedGeneration": svc["generation"],
            "traffic": status_traffic(svc),
            "url": url,
        },
    }


def revision_json(svc, rev):
    routed = rev["name"] in serving_keys(svc)
    labels = {
        "serving.knative.dev/service": svc["name"],
        "serving.knative.dev/configuration": svc["name"],
        "serving.knative.dev/configurationGeneration": str(rev["generation"]),
        "serving.knative.dev/serviceUid": svc["uid"],
        "cloud.googleapis.com/location": svc["region"],
    }
    if routed:
        labels["serving.knative.dev/route"] = svc["name"]
    labels.update(rev["labels"])
    ok = rev["failure"] is None
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {
            "name": rev["name"],
            "namespace": project_number(svc["project"]),
            "generation": 1,
            "creationTimestamp": rev["created"],
            "labels": labels,
            "annotations": template_annotations(rev["template"]),
        },
        "spec": template_spec(rev["template"]),
        "status": {
            "conditions": [
                condition("Ready", ok, "HealthCheckContainerError", rev["failure"]),
                {"type": "Active", "status": "True" if routed and ok else "False", "lastTransitionTime": now()}
                if routed and ok else {"type": "Active", "status": "False", "reason": "Reserve",
                                       "severity": "Info", "lastTransitionTime": now()},
                condition("ContainerHealthy", ok, "HealthCheckContainerError", rev["failure"]),
                condition("ResourcesAvailable", True),
            ],
            "imageDigest": rev["digest"],
            "logUrl": f"https://console.cloud.google.com/logs/viewer?project={svc['project']}&resource=cloud_run_revision/service_name/{svc['name']}/revision_name/{rev['name']}",
            "observedGeneration": 1,
        },
    }


def digest_of(image):
    """`REPO@sha256:...` keeps its digest; a tag resolves to a made-up but stable one."""
    if "@sha256:" in image:
        repo, d = image.split("@", 1)
        return f"{repo}@{d}"
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{repo}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def suffix(name, n):
    h = hashlib.sha256(f"{name}-{n}".encode()).hexdigest()
    letters = "".join(chr(ord("a") + int(c, 16) % 26) for c in h[:3])
    return f"{n:05d}-{letters}"


def parse_int(command, flag, text, low=0):
    try:
        v = int(text)
    except ValueError:
        raise GcloudError(command, f"argument {flag}: Value must be an integer; received: {text}", code=2)
    if v < low:
        raise GcloudError(command, f"argument {flag}: Value must be greater than or equal to {low}; received: {text}", code=2)
    return v


def parse_timeout(text):
    m = re.fullmatch(r"(\d+)([smh]?)", text)
    if not m:
        raise GcloudError(DEPLOY, f"argument --timeout: Failed to parse duration: {text}", code=2)
    n, unit = int(m.group(1)), m.group(2) or "s"
    return n * {"s": 1, "m": 60, "h": 3600}[unit]


DEPLOY_FLAGS = dict(SCOPE, **{
    "--image": True, "--tag": True, "--no-traffic": False, "--revision-suffix": True,
    "--set-env-vars": True, "--update-env-vars": True, "--set-secrets": True, "--update-secrets": True,
    "--min-instances": True, "--max-instances": True, "--cpu": True, "--memory": True,
    "--concurrency": True, "--timeout": True, "--service-account": True,
    "--allow-unauthenticated": False, "--no-allow-unauthenticated": False, "--port": True,
    "--labels": True, "--update-labels": True, "--async": False,
})


def deploy(argv, ctx):
    args = Flags(argv, ctx, DEPLOY, DEPLOY_FLAGS)
    ctx.require_auth(DEPLOY)
    name = one_positional(args, DEPLOY, "SERVICE")
    project, region = scope(args, ctx, DEPLOY)
    image = args.get("--image")
    if not image:
        raise GcloudError(DEPLOY, "Requires a container image to deploy (e.g. `gcr.io/cloudrun/hello:latest`) "
                          "if no build source is provided.", code=2)
    if args.has("--allow-unauthenticated") and args.has("--no-allow-unauthenticated"):
        raise GcloudError(DEPLOY, "argument --allow-unauthenticated: At most one of --allow-unauthenticated | "
                          "--no-allow-unauthenticated can be specified.", code=2)
    for a, b in (("--set-env-vars", "--update-env-vars"), ("--set-secrets", "--update-secrets"),
                 ("--labels", "--update-labels")):
        if args.has(a) and args.has(b):
            raise GcloudError(DEPLOY, f"argument {a}: At most one of {a} | {b} can be specified.", code=2)
    with ctx.locked():
        state = ctx.load()
        svc = find(state, project, region, name)
        if svc is None and args.has("--no-traffic"):
            raise GcloudError(DEPLOY, "--no-traffic not supported when creating a new service.")
        print(f"Deploying container to Cloud Run service [{name}] in project [{project}] region [{region}]",
              file=sys.stderr)
        if svc is None:
            svc = {"name": name, "project": project, "region": region, "generation": 0, "created": now(),
                   "uid": hashlib.sha256(f"{project}/{region}/{name}".encode()).hexdigest()[:32],
                   "labels": {}, "revisions": {}, "order": [], "traffic": [], "latestCreated": None,
                   "latestReady": None, "public": False}
            tpl = {"env": {}, "secrets": {}, "cpu": "1000m", "memory": "512Mi", "concurrency": 80,
                   "timeout": 300, "port": 8080, "minScale": None, "maxScale": 100, "serviceAccount": None}
            labels = {}
            print("Deploying new service...", file=sys.stderr)
        else:
            prev = svc["revisions"][svc["latestCreated"]]
            tpl = json.loads(json.dumps(prev["template"]))
            labels = dict(prev["labels"])
            print("Deploying...", file=sys.stderr)
        tpl["image"] = image
        if args.has("--set-env-vars"):
            tpl["env"] = key_values("--set-env-vars", DEPLOY, args.get("--set-env-vars"))
        if args.has("--update-env-vars"):
            tpl["env"].update(key_values("--update-env-vars", DEPLOY, args.get("--update-env-vars")))
        if args.has("--set-secrets"):
            tpl["secrets"] = key_values("--set-secrets", DEPLOY, args.get("--set-secrets"))
        if args.has("--update-secrets"):
            tpl["secrets"].update(key_values("--update-secrets", DEPLOY, args.get("--update-secrets")))
        for k, ref in tpl["secrets"].items():
            if not re.fullmatch(r"[a-zA-Z0-9_-]+:(latest|\d+)", ref):
                raise GcloudError(DEPLOY, f"argument --set-secrets: Secrets must be of the form "
                                  f"SECRET_NAME:VERSION (got {k}={ref}).", code=2)
        both = set(tpl["env"]) & set(tpl["secrets"])
        if both:
            raise GcloudError(DEPLOY, f"Cannot update environment variable [{sorted(both)[0]}] to the given type "
                              "because it has already been set with a different type.")
        if args.has("--min-instances"):
            tpl["minScale"] = parse_int(DEPLOY, "--min-instances", args.get("--min-instances"))
        if args.has("--max-instances"):
            tpl["maxScale"] = parse_int(DEPLOY, "--max-instances", args.get("--max-instances"))
        if args.has("--concurrency"):
            tpl["concurrency"] = parse_int(DEPLOY, "--concurrency", args.get("--concurrency"), 1)
        if args.has("--port"):
            tpl["port"] = parse_int(DEPLOY, "--port", args.get("--port"), 1)
        if args.has("--timeout"):
            tpl["timeout"] = parse_timeout(args.get("--timeout"))
        if args.has("--cpu"):
            cpu = args.get("--cpu")
            tpl["cpu"] = f"{int(float(cpu) * 1000)}m" if re.fullmatch(r"\d+(\.\d+)?", cpu) else cpu
        if args.has("--memory"):
            if not re.fullmatch(r"\d+(Mi|Gi|M|G)", args.get("--memory")):
                raise GcloudError(DEPLOY, f"argument --memory: Invalid memory value [{args.get('--memory')}].", code=2)
            tpl["memory"] = args.get("--memory")
        if args.has("--service-account"):
            tpl["serviceAccount"] = args.get("--service-account")
        if args.has("--labels"):
            labels = key_values("--labels", DEPLOY, args.get("--labels"))
        if args.has("--update-labels"):
            labels.update(key_values("--update-labels", DEPLOY, args.get("--update-labels")))
        for k, v in labels.items():
            if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", k) or not re.fullmatch(r"[a-z0-9_-]{0,63}", v):
                raise GcloudError(DEPLOY, f"argument --update-labels: Invalid label [{k}={v}]: keys start with "
                                  "a lowercase letter; keys and values have at most 63 lowercase letters, "
                                  "digits, `_` or `-`.", code=2)
        n = len(svc["order"]) + 1
        rev_name = f"{name}-{args.get('--revision-suffix')}" if args.has("--revision-suffix") else f"{name}-{suffix(name, n)}"
        if rev_name in svc["revisions"]:
            raise GcloudError(DEPLOY, f"Revision named '{rev_name}' already exists.")
        failure = None
        if "broken" in image.split("@")[0]:
            failure = (f"The user-provided container failed to start and listen on the port defined provided by "
                       f"the PORT={tpl['port']} environment variable within the allocated timeout. "
                       f"Logs for this revision might contain more information.")
        svc["generation"] += 1
        svc["revisions"][rev_name] = {"name": rev_name, "created": now(), "template": tpl, "labels": labels,
                                      "digest": digest_of(image), "generation": svc["generation"],
                                      "failure": failure}
        svc["order"].append(rev_name)
        svc["latestCreated"] = rev_name
        services(state)[f"{project}/{region}/{name}"] = svc
        print("Creating Revision...", file=sys.stderr)
        if failure:
            if svc["latestReady"] is None:
                # A service whose first revision failed has nothing to serve.
                svc["traffic"] = [{"key": LATEST, "percent": 100, "tag": None}]
            ctx.save(state)
            raise GcloudError(DEPLOY, f"Revision '{rev_name}' is not ready and cannot serve traffic. {failure}")
        if not svc["traffic"]:
            svc["traffic"] = [{"key": LATEST, "percent": 100, "tag": None}]
        elif args.has("--no-traffic"):
            svc["traffic"] = zero_latest(svc["traffic"], svc["latestReady"])
        if args.has("--tag"):
            svc["traffic"] = update_tags(svc["traffic"], {args.get("--tag"): rev_name}, [], False)
        svc["latestReady"] = rev_name
        if args.has("--allow-unauthenticated"):
            svc["public"] = True
        if args.has("--no-allow-unauthenticated"):
            svc["public"] = False
        ctx.save(state)
    share = serving_keys(svc).get(rev_name, 0)
    print("Routing traffic...", file=sys.stderr)
    print("Done.", file=sys.stderr)
    print(f"Service [{name}] revision [{rev_name}] has been deployed and is serving {share} percent of traffic.",
          file=sys.stderr)
    if args.has("--tag"):
        print(f"The revision can be reached directly at {urls(project, region, name, args.get('--tag'))}",
              file=sys.stderr)
    else:
        print(f"Service URL: {urls(project, region, name)}", file=sys.stderr)
    common.print_json(service_json(svc))
    return 0


def describe(argv, ctx):
    args = Flags(argv, ctx, DESCRIBE, SCOPE)
    ctx.require_auth(DESCRIBE)
    name = one_positional(args, DESCRIBE, "SERVICE")
    project, region = scope(args, ctx, DESCRIBE)
    svc = find(ctx.load(), project, region, name)
    if svc is None:
        raise GcloudError(DESCRIBE, f"Cannot find service [{name}]")
    common.print_json(service_json(svc))
    return 0


def list_services(argv, ctx):
    args = Flags(argv, ctx, LIST, dict(SCOPE, **{"--filter": True, "--limit": True}))
    ctx.require_auth(LIST)
    project = args.get("--project") or ctx.load().get("project")
    if not project:
        raise GcloudError(LIST, "The required property [project] is not currently set.")
    region = args.get("--region")
    rows = [service_json(s) for k, s in sorted(services(ctx.load()).items())
            if s["project"] == project and (region is None or s["region"] == region)]
    common.print_json(rows)
    return 0


def delete(argv, ctx):
    args = Flags(argv, ctx, DELETE, dict(SCOPE, **{"--async": False}))
    ctx.require_auth(DELETE)
    name = one_positional(args, DELETE, "SERVICE")
    project, region = scope(args, ctx, DELETE)
    with ctx.locked():
        state = ctx.load()
        if services(state).pop(f"{project}/{region}/{name}", None) is None:
            raise GcloudError(DELETE, f"Cannot find service [{name}]")
        ctx.save(state)
    print(f"Deleted service [{name}].", file=sys.stderr)
    return 0


def traffic_pairs(svc):
    """gcloud's TrafficTargetPair list (api_lib/run/traffic_pair.py), spec and status alike."""
    url = urls(svc["project"], svc["region"], svc["name"])
    percents, tag_targets = normalized(svc["traffic"])
    keys = set(percents) | {t["key"] for t in tag_targets}
    pairs = []
    for key in sorted(keys, key=sort_key):
        tags = sorted(t["tag"] for t in tag_targets if t["key"] == key)
        pct = percents.get(key, 0)
        tag_rows = [{"inSpec": True, "inStatus": True, "tag": t,
                     "url": urls(svc["project"], svc["region"], svc["name"], t)} for t in tags]
        latest = key == LATEST
        rev = svc["latestReady"] if latest else key
        pairs.append({
            "displayPercent": f"{pct}%",
            "displayRevisionId": f"LATEST (currently {rev})" if latest else rev,
            "displayTags": ", ".join(tags),
            "key": key,
            "latestRevision": latest,
            "revisionName": rev,
            "serviceUrl": url,
            "specPercent": str(pct),
            "specTags": ", ".join(tags) or "-",
            "statusPercent": str(pct),
            "statusTags": ", ".join(tags) or "-",
            "tags": tag_rows,
            "urls": [t["url"] for t in tag_rows],
        })
    return pairs


UPDATE_FLAGS = dict(SCOPE, **{
    "--to-latest": False, "--to-revisions": True, "--to-tags": True,
    "--set-tags": True, "--update-tags": True, "--remove-tags": True, "--clear-tags": False,
    "--async": False,
})


def update(argv, ctx):
    args = Flags(argv, ctx, UPDATE, UPDATE_FLAGS)
    ctx.require_auth(UPDATE)
    name = one_positional(args, UPDATE, "SERVICE")
    project, region = scope(args, ctx, UPDATE)
    to = [f for f in ("--to-latest", "--to-revisions", "--to-tags") if args.has(f)]
    if len(to) > 1:
        raise GcloudError(UPDATE, f"argument {to[0]}: At most one of --to-latest | --to-revisions | --to-tags "
                          "can be specified.", code=2)
    tag_flags = [f for f in ("--set-tags", "--update-tags", "--clear-tags") if args.has(f)]
    if len(tag_flags) > 1:
        raise GcloudError(UPDATE, f"argument {tag_flags[0]}: At most one of --clear-tags | --set-tags | "
                          "--update-tags can be specified.", code=2)
    if not to and not tag_flags and not args.has("--remove-tags"):
        raise GcloudError(UPDATE, "No traffic configuration change requested.")
    new = {}
    if args.has("--to-latest"):
        new = {LATEST: 100}
    elif args.has("--to-revisions"):
        for k, v in key_values("--to-revisions", UPDATE, args.get("--to-revisions")).items():
            new[k] = parse_percent("--to-revisions", v)
    with ctx.locked():
        state = ctx.load()
        svc = find(state, project, region, name)
        if svc is None:
            raise GcloudError(UPDATE, f"Cannot find service [{name}]")
        if os.environ.get("STANDIN_GCLOUD_FAIL_UPDATE_TRAFFIC") == "1":
            raise GcloudError(UPDATE, "Internal error (standin-gcloud: STANDIN_GCLOUD_FAIL_UPDATE_TRAFFIC=1); "
                              "the service was not changed.")
        targets = svc["traffic"]
        tag_to_key = {t["tag"]: t["key"] for t in targets if t.get("tag")}
        if args.has("--to-tags"):
            for tag, v in key_values("--to-tags", UPDATE, args.get("--to-tags")).items():
                if tag not in tag_to_key:
                    raise GcloudError(UPDATE, f"There is no revision tagged [{tag}].")
                new[tag_to_key[tag]] = parse_percent("--to-tags", v)
        for k in new:
            if k != LATEST and k not in svc["revisions"]:
                raise GcloudError(UPDATE, f"Revision [{k}] does not exist.")
            if k != LATEST and svc["revisions"][k]["failure"]:
                raise GcloudError(UPDATE, f"Revision [{k}] is not ready and cannot serve traffic.")
        update_map, remove, clear = {}, [], args.has("--clear-tags")
        for f in ("--set-tags", "--update-tags"):
            if args.has(f):
                for tag, rev in key_values(f, UPDATE, args.get(f)).items():
                    if rev != LATEST and rev not in svc["revisions"]:
                        raise GcloudError(UPDATE, f"Revision [{rev}] does not exist.")
                    update_map[tag] = rev
                clear = clear or f == "--set-tags"
        if args.has("--remove-tags"):
            remove = [t for t in args.get("--remove-tags").split(",") if t]
        try:
            if update_map or remove or clear:
                targets = update_tags(targets, update_map, remove, clear)
            if new:
                targets = update_traffic(targets, new)
        except TrafficError as e:
            raise GcloudError(UPDATE, str(e))
        svc["traffic"] = targets
        svc["generation"] += 1
        ctx.save(state)
    print("Updating traffic...", file=sys.stderr)
    print("Done.", file=sys.stderr)
    print(f"URL: {urls(project, region, name)}", file=sys.stderr)
    print("Traffic:", file=sys.stderr)
    for p in traffic_pairs(svc):
        tags = f" {p['displayTags']}" if p["displayTags"] else ""
        print(f"  {p['displayPercent']:>5} {p['displayRevisionId']}{tags}", file=sys.stderr)
    common.print_json(traffic_pairs(svc))
    return 0


def revisions(argv, ctx):
    args = Flags(argv, ctx, REVISIONS, dict(SCOPE, **{"--service": True, "--limit": True,
                                                      "--sort-by": True, "--filter": True}))
    ctx.require_auth(REVISIONS)
    project, region = scope(args, ctx, REVISIONS)
    state = ctx.load()
    rows = []
    for svc in services(state).values():
        if svc["project"] != project or svc["region"] != region:
            continue
        if args.get("--service") and svc["name"] != args.get("--service"):
            continue
        rows += [revision_json(svc, svc["revisions"][r]) for r in svc["order"]]
    sort_by = args.get("--sort-by", "~metadata.creationTimestamp")
    if sort_by.lstrip("~") != "metadata.creationTimestamp":
        raise GcloudError(REVISIONS, f"standin-gcloud sorts only by metadata.creationTimestamp, not [{sort_by}].", 2)
    rows.sort(key=lambda r: r["metadata"]["creationTimestamp"], reverse=sort_by.startswith("~"))
    if args.has("--limit"):
        rows = rows[:parse_int(REVISIONS, "--limit", args.get("--limit"), 1)]
    common.print_json(rows)
    return 0


def revision_describe(argv, ctx):
    args = Flags(argv, ctx, REVISION, SCOPE)
    ctx.require_auth(REVISION)
    name = one_positional(args, REVISION, "REVISION")
    project, region = scope(args, ctx, REVISION)
    for svc in services(ctx.load()).values():
        if svc["project"] == project and svc["region"] == region and name in svc["revisions"]:
            common.print_json(revision_json(svc, svc["revisions"][name]))
            return 0
    raise GcloudError(REVISION, f"Cannot find revision [{name}]")


def main(argv, ctx):
    if not argv:
        return ctx.usage_error("gcloud.run", "Command name argument expected.")
    cmd, rest = argv[0], argv[1:]
    if cmd == "deploy":
        return deploy(rest, ctx)
    if cmd == "services" and rest:
        sub = {"describe": describe, "list": list_services, "update-traffic": update, "delete": delete}
        if rest[0] in sub:
            return sub[rest[0]](rest[1:], ctx)
        return ctx.usage_error("gcloud.run.services", f"Invalid choice: '{rest[0]}'.")
    if cmd == "revisions" and rest:
        sub = {"list": revisions, "describe": revision_describe}
        if rest[0] in sub:
            return sub[rest[0]](rest[1:], ctx)
        return ctx.usage_error("gcloud.run.revisions", f"Invalid choice: '{rest[0]}'.")
    return ctx.usage_error("gcloud.run", f"Invalid choice: '{cmd}'.")
