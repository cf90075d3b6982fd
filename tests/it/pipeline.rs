//! The whole release graph of the root lifeos.toml on the bundled example, on the real engine:
//! test → images → push (a real registry) → Postgres + Redis → migrate → deploy web/api behind
//! the nginx router → e2e → canary → check → promote → backup. The config below is the root
//! one with this test's tags, ports, labels (`lifeos.test=<id>`, removed on drop) and short
//! check windows; the revision comes from `${vars.sha}` (the root file: `${git.sha}`).
//! Also the example api's `/ready` and `/health` against real services.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::deploy::get;
use crate::support::{docker, free_port, DockerFx, Run, TestRegistry};

const PASSWORD: &str = "it-pg-password";

struct Pipe {
    fx: DockerFx,
    reg: TestRegistry,
    web: u16,
    api: u16,
    api_dev: u16,
}

/// Copy the example (no build outputs, no root filesystems: those come hard-linked from the
/// tests' own once-per-target-dir builds) with its base image (example/base, built by the
/// graph) under this test's tag.
fn copy_example(from: &Path, to: &Path, base: &str) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let name = e.file_name();
        let name = name.to_str().unwrap();
        if matches!(name, "rootfs.tar" | "busybox" | "dist") {
            continue;
        }
        let (src, dst) = (e.path(), to.join(name));
        if e.file_type().unwrap().is_dir() {
            copy_example(&src, &dst, base);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
    let df = to.join("Dockerfile");
    if df.exists() && from.ends_with("example") {
        let text = fs::read_to_string(&df).unwrap();
        fs::write(
            &df,
            text.replace("FROM lifeos-base:latest", &format!("FROM {base}")),
        )
        .unwrap();
    }
}

fn link(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).unwrap();
    }
}

fn pipe() -> Pipe {
    let fx = DockerFx::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_example(&repo.join("example"), &fx.p.p("example"), &fx.tag("base"));
    fs::copy("/bin/busybox", fx.p.p("example/base/busybox")).expect("busybox-static is installed");
    link(
        crate::postgres::debian_rootfs(),
        &fx.p.p("example/debian/rootfs.tar"),
    );
    link(
        crate::deploy::router_rootfs(),
        &fx.p.p("example/router/rootfs.tar"),
    );
    let reg = TestRegistry::start("ci", PASSWORD);
    let (web, api, api_dev) = (free_port(), free_port(), free_port());
    fx.p.config(&format!(
        r#"
[project]
name = "{id}"

[vars]
sha = "aaa111"
before_e2e = ""
pg_password = "{PASSWORD}"
api_fail = "0"
registry = "{registry}/{id}"

[router]
image = "router"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.base]
kind = "image"
context = "example/base"
tag = "{base_tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.test-web]
kind = "exec"
run = "sh example/test.sh web"
inputs = ["example/web/**", "example/shared/**", "example/package.json", "example/test.sh"]

[tasks.test-api]
kind = "exec"
run = "sh example/test.sh api"
inputs = ["example/api/**", "example/shared/**", "example/package.json", "example/test.sh"]

[tasks.web]
kind = "image"
context = "example"
dockerfile = "example/Dockerfile"
target = "web-runner"
tag = "{web_tag}"
labels = {{ "lifeos.test" = "{id}" }}
deps = ["base", "test-web"]

[tasks.api]
kind = "image"
context = "example"
dockerfile = "example/Dockerfile"
target = "api-runner"
tag = "{api_tag}"
build_args = {{ GIT_SHA = "${{vars.sha}}" }}
labels = {{ "lifeos.test" = "{id}" }}
deps = ["base", "test-api"]

[tasks.push-web]
kind = "push"
image = "web"
repository = "${{vars.registry}}/lifeos-web"
tags = ["dev", "latest"]

[tasks.push-api]
kind = "push"
image = "api"
repository = "${{vars.registry}}/lifeos-api"
tags = ["dev", "latest"]

[tasks.debian]
kind = "image"
context = "example/debian"
tag = "{debian_tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.postgres]
kind = "service"
image = "debian"
cmd = ["pg-entrypoint.sh"]
env = ["POSTGRES_DB=lifeos", "POSTGRES_PASSWORD=${{vars.pg_password}}"]
volumes = ["pgdata:/var/lib/postgresql/data"]
health = {{ cmd = ["pg_isready", "-U", "postgres", "-h", "127.0.0.1"], interval = "300ms", retries = 100 }}
labels = {{ "lifeos.test" = "{id}" }}

[tasks.redis]
kind = "service"
image = "debian"
cmd = ["redis-entrypoint.sh"]
volumes = ["redisdata:/data"]
health = {{ cmd = ["redis-cli", "ping"], interval = "300ms", retries = 100 }}
labels = {{ "lifeos.test" = "{id}" }}

[tasks.migrate]
kind = "container"
image = "debian"
cmd = ["sh", "/migrations/migrate.sh"]
volumes = ["./example/migrations:/migrations:ro"]
env = ["PGHOST=postgres", "PGUSER=postgres", "PGDATABASE=lifeos", "PGPASSWORD=${{vars.pg_password}}"]
deps = ["postgres"]
labels = {{ "lifeos.test" = "{id}" }}

# Not in the release graph: the api against the services before any migration.
[tasks.api-dev]
kind = "service"
image = "api"
env = ["DATABASE_HOST=postgres", "DATABASE_NAME=lifeos", "REDIS_HOST=redis", "HEALTH_PROBE_TIMEOUT=1"]
ports = ["127.0.0.1:{api_dev}:8081"]
health = {{ cmd = ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8081/health"], interval = "300ms", retries = 100 }}
deps = ["postgres", "redis"]
labels = {{ "lifeos.test" = "{id}" }}

[tasks.router]
kind = "image"
context = "example/router"
tag = "{router_tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.deploy-web]
kind = "deploy"
service = "web"
image = "web"
port = 8080
publish = "127.0.0.1:{web}"
ready = "/"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.deploy-api]
kind = "deploy"
service = "api"
image = "api"
port = 8081
publish = "127.0.0.1:{api}"
ready = "/ready"
traffic = 0
keep = 3
env = ["DATABASE_HOST=postgres", "DATABASE_PORT=5432", "DATABASE_NAME=lifeos", "REDIS_HOST=redis", "REDIS_PORT=6379", "FAIL_PERCENT=${{vars.api_fail}}", "HEALTH_PROBE_TIMEOUT=1"]
deps = ["migrate", "redis"]
labels = {{ "lifeos.test" = "{id}" }}

[tasks.e2e]
kind = "exec"
run = "${{vars.before_e2e}}sh example/e2e.sh"
inputs = ["example/e2e.sh"]
env = ["WEB_URL=${{tasks.deploy-web.url}}", "API_URL=${{tasks.deploy-api.url}}"]
cache = false

[tasks.canary-api]
kind = "canary"
deploy = "deploy-api"
percent = 10
deps = ["e2e"]

[tasks.check-canary]
kind = "check"
target = "canary-api"
window = "6s"
interval = "1s"
probe = {{ path = "/health", rate = 20 }}
success_rate = 0.95
p95 = "2s"
min_requests = 8
on_failure = "rollback"

[tasks.promote-api]
kind = "promote"
deploy = "deploy-api"
deps = ["check-canary"]

[tasks.backup]
kind = "backup"
database = "postgres"
dbname = "lifeos"
dir = "backups"
deps = ["migrate"]
keep = {{ daily = 30, weekly = 26 }}
env = ["PGPASSWORD=${{vars.pg_password}}"]
cache = {{ every = "24h" }}
"#,
        id = fx.id,
        registry = reg.host(),
        base_tag = fx.tag("base"),
        web_tag = fx.tag("web"),
        api_tag = fx.tag("api"),
        debian_tag = fx.tag("debian"),
        router_tag = fx.tag("router"),
    ));
    Pipe {
        fx,
        reg,
        web,
        api,
        api_dev,
    }
}

impl Pipe {
    /// `lifeos --json ARGS --summary FILE`: the run and its JSON summary.
    fn lifeos(&self, args: &[&str]) -> (Run, Value) {
        let summary = self.fx.p.p("summary.json");
        let _ = fs::remove_file(&summary);
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let r = self.fx.p.run_env(
            &a,
            &[
                ("LIFEOS_REGISTRY_USER", self.reg.user.as_str()),
                ("LIFEOS_REGISTRY_PASSWORD", self.reg.password.as_str()),
            ],
        );
        let s = fs::read(&summary)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        (r, s)
    }

    fn run_all(&self, extra: &[&str]) -> (Run, Value) {
        let summary = self.fx.p.p("summary.json");
        let mut a = vec!["run", "--summary", summary.to_str().unwrap()];
        a.extend_from_slice(extra);
        a.extend_from_slice(&[
            "promote-api",
            "deploy-web",
            "push-web",
            "push-api",
            "backup",
        ]);
        self.lifeos(&a)
    }

    fn image_id(&self, name: &str) -> String {
        docker(&["image", "inspect", "-f", "{{.Id}}", &self.fx.tag(name)])
    }
}

/// task → status in a run summary.
fn statuses(s: &Value) -> std::collections::BTreeMap<String, String> {
    s["tasks"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn with(s: &Value, status: &str) -> Vec<String> {
    statuses(s)
        .into_iter()
        .filter(|(_, v)| v == status)
        .map(|(k, _)| k)
        .collect()
}

/// The example api: `/ready` 503 until migrated, `/health` 503 naming the database when
/// Postgres stops, and the build's revision in both.
#[test]
fn example_api_ready_waits_for_migrations_and_health_names_the_database() {
    let p = pipe();
    let (r, _) = p.lifeos(&["run", "api-dev"]);
    assert_eq!(r.code, 0, "{}", r.all());

    let (code, body) = get(p.api_dev, "/ready").unwrap();
    assert_eq!(code, 503, "not migrated yet: {body}");
    assert!(
        body.contains(r#""settings":"ok","migrations":"pending""#),
        "{body}"
    );
    assert!(body.contains(r#""version":"1.4.0+aaa111""#), "{body}");
    let (code, body) = get(p.api_dev, "/health").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""database":"ok","redis":"ok""#), "{body}");
    assert!(body.contains(r#""version":"1.4.0+aaa111""#), "{body}");

    let (r, _) = p.lifeos(&["run", "migrate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let (code, body) = get(p.api_dev, "/ready").unwrap();
    assert_eq!(code, 200, "migrated: {body}");
    assert!(body.contains(r#""migrations":"ok"},"applied":2"#), "{body}");

    // The probe role reads schema_migrations and nothing else.
    let pg = p.fx.container("postgres");
    let psql = |sql: &str| {
        std::process::Command::new("docker")
            .args(["exec", &pg, "psql", "-h", "127.0.0.1", "-U", "lifeos_probe"])
            .args(["-d", "lifeos", "-XAtc", sql])
            .output()
            .unwrap()
    };
    let o = psql("select count(*) from schema_migrations");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "2");
    let o = psql("select count(*) from users");
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("permission denied"),
        "{o:?}"
    );

    // Postgres stops: /health says which part failed, /ready too.
    docker(&["stop", &pg]);
    let (code, body) = get(p.api_dev, "/health").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(r#""status":"degraded""#)
            && body.contains(r#""database":"down","redis":"ok","failing":["database"]"#),
        "{body}"
    );
    let (code, body) = get(p.api_dev, "/ready").unwrap();
    assert_eq!(code, 503, "{body}");

    // Another revision: a new image whose responses say so.
    let first = p.image_id("api");
    let (r, _) = p.lifeos(&["build", "api", "--set", "sha=bbb222"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_ne!(p.image_id("api"), first);
    for cgi in ["health", "ready"] {
        let out = p.fx.cli_run(
            &p.fx.tag("api"),
            &[&format!("/srv/api/public/cgi-bin/{cgi}")],
        );
        assert!(out.contains(r#""version":"1.4.0+bbb222""#), "{cgi}: {out}");
    }
}

/// The release graph from nothing, then again with nothing changed, then after one api file
/// changed: what ran each time, from `--summary`.
#[test]
fn full_pipeline_from_nothing_then_noop_then_one_api_file() {
    let p = pipe();
    let t = std::time::Instant::now();
    let (r, s) = p.run_all(&[]);
    eprintln!("full run: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(s["exit_code"], 0, "{s}");
    // The first release of the api has no stable revision to canary against: it takes all
    // traffic at once, so canary and promote have nothing to do.
    assert_eq!(
        with(&s, "cached"),
        ["canary-api", "promote-api"],
        "all else ran the first time: {s}"
    );
    assert_eq!(statuses(&s).len(), 19, "{s}");
    // What the run shipped, for CI to attach: the pushed digests, the revisions, the backup.
    let delivered: std::collections::BTreeMap<&str, &str> = s["delivered"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["task"].as_str().unwrap(), d["what"].as_str().unwrap()))
        .collect();
    for push in ["push-web", "push-api"] {
        let digest = s["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == push)
            .and_then(|t| t["result"]["digest"].as_str())
            .unwrap_or_else(|| panic!("{push} has a digest: {s}"));
        assert!(
            delivered[push].contains(&format!("@{digest} (")),
            "{delivered:?}"
        );
    }
    assert!(
        delivered["deploy-api"].starts_with("revision r"),
        "{delivered:?}"
    );
    assert!(
        delivered["backup"].starts_with("backups/") && delivered["backup"].contains(".dump ("),
        "{delivered:?}"
    );
    let e2e: Vec<String> = r
        .events()
        .iter()
        .filter(|e| e["event"] == "task_log" && e["task"] == "e2e")
        .map(|e| e["line"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        e2e.iter().any(|l| l.contains("/health")) && e2e.iter().any(|l| l.contains("/ready")),
        "{e2e:?}"
    );
    // Through the router: the published ports answer.
    let (code, body) = get(p.api, "/health").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""version":"1.4.0+aaa111""#), "{body}");
    assert_eq!(get(p.web, "/").unwrap().0, 200);
    let web_id = p.image_id("web");
    let web_rev = revision(&s, "deploy-web");
    let api_rev = revision(&s, "deploy-api");

    // Nothing changed: only the checks run.
    let t = std::time::Instant::now();
    let (r, s) = p.run_all(&[]);
    eprintln!("second run: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        with(&s, "ran"),
        ["check-canary", "e2e"],
        "only the checks: {s}"
    );
    assert_eq!(with(&s, "failed"), Vec::<String>::new(), "{s}");
    for task in [
        "test-web",
        "test-api",
        "base",
        "web",
        "api",
        "push-web",
        "push-api",
        "debian",
        "postgres",
        "redis",
        "migrate",
        "router",
        "deploy-web",
        "deploy-api",
        "canary-api",
        "promote-api",
        "backup",
    ] {
        assert_eq!(statuses(&s)[task], "cached", "{task}: {s}");
    }
    assert_eq!(revision(&s, "deploy-api"), api_rev);

    // One api file: the api's path to production, and nothing of web's.
    let f = p.fx.p.p("example/api/cgi-bin/health");
    let text = fs::read_to_string(&f).unwrap();
    fs::write(&f, format!("{text}# changed\n")).unwrap();
    let t = std::time::Instant::now();
    let (r, s) = p.run_all(&[]);
    eprintln!("api-change run: {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        with(&s, "ran"),
        [
            "api",
            "canary-api",
            "check-canary",
            "deploy-api",
            "e2e",
            "promote-api",
            "push-api",
            "test-api"
        ],
        "{s}"
    );
    assert_eq!(p.image_id("web"), web_id);
    assert_eq!(revision(&s, "deploy-web"), web_rev);
    assert_ne!(revision(&s, "deploy-api"), api_rev);
    assert_eq!(get(p.api, "/ready").unwrap().0, 200);

    // Postgres goes down after the next api release deployed, before its e2e check: /health
    // names the database, the check and the run fail, the stable revision still serves.
    fs::write(&f, format!("{text}# changed again\n")).unwrap();
    let stop = format!(
        "before_e2e=docker stop -t 2 {} >/dev/null; ",
        p.fx.container("postgres")
    );
    let (r, s) = p.run_all(&["--set", &stop]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(statuses(&s)["deploy-api"], "ran", "{s}");
    assert_eq!(statuses(&s)["e2e"], "failed", "{s}");
    for task in ["canary-api", "check-canary", "promote-api"] {
        assert_eq!(statuses(&s)[task], "skipped", "{task}: {s}");
    }
    let e2e = r.outcome("e2e").to_string();
    assert!(
        e2e.contains("HTTP 503") && e2e.contains(r#"\"failing\":[\"database\"]"#),
        "{e2e}"
    );
    let (code, body) = get(p.api, "/health").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(r#""database":"down""#), "{body}");
    assert_eq!(get(p.web, "/").unwrap().0, 200);
}

/// A deploy's revision from its summary result.
fn revision(s: &Value, task: &str) -> Value {
    let t = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == task)
        .unwrap_or_else(|| panic!("{task} not in {s}"));
    let r = &t["result"];
    r.get("revision")
        .or_else(|| r.get("container"))
        .cloned()
        .unwrap_or_else(|| panic!("{task} has no revision: {t}"))
}
