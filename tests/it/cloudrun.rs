//! Platform `cloudrun` through tests/standin-gcloud (there is no Google Cloud here): a
//! stand-in `gcloud` that keeps Cloud Run's services, revisions, traffic and tags in a JSON
//! file, applies gcloud's traffic rules and logs every call. The images are fixed digest
//! references: these tests are about Cloud Run, not the push. The check's requests go to a
//! small HTTP server of the test's, which the stand-in's URLs point at.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;

use crate::support::{Project, Run};

const PROJECT: &str = "lifeos-production";
const REGION: &str = "us-central1";
const SERVICE: &str = "lifeos-api";

fn standin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin-gcloud/standin-gcloud")
}

fn image(c: char) -> String {
    format!(
        "us-central1-docker.pkg.dev/lifeos-production/lifeos/lifeos-api@sha256:{}",
        c.to_string().repeat(64)
    )
}

/// Answers every GET with 200, or 500 under `/canary---` while `bad` is set.
struct App {
    port: u16,
    bad: Arc<AtomicBool>,
}

impl App {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let bad = Arc::new(AtomicBool::new(false));
        let b = bad.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    let _ = r.read_line(&mut line);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/");
                    let fail = b.load(Ordering::SeqCst) && path.starts_with("/canary---");
                    let status = if fail {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = write!(
                        &s,
                        "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    );
                });
            }
        });
        App { port, bad }
    }
}

struct Cloud {
    p: Project,
    home: PathBuf,
    app: App,
}

impl Cloud {
    fn new(extra: &str) -> Self {
        let p = Project::new();
        let home = p.p("gcloud-home");
        p.config(&format!(
            r#"
[project]
name = "cloudrun-it"

[vars]
image = "{img}"

[tasks.deploy-api]
kind = "deploy"
platform = "cloudrun"
project = "{PROJECT}"
region = "{REGION}"
service = "{SERVICE}"
image = "${{vars.image}}"
traffic = 0
env = ["NODE_ENV=production"]
secrets = ["DEPLOY_TOKEN"]
secret_refs = {{ JWT_SECRET = "jwt-secret:latest" }}
min_instances = 1
max_instances = 10
cpu = "1"
memory = "512Mi"
concurrency = 80
request_timeout = "300s"
service_account = "lifeos-api@lifeos-production.iam.gserviceaccount.com"
allow_unauthenticated = true

[tasks.canary-api]
kind = "canary"
deploy = "deploy-api"
percent = 10

[tasks.check-canary]
kind = "check"
target = "canary-api"
window = "2s"
interval = "1s"
probe = {{ path = "/health", rate = 20 }}
success_rate = 0.95
min_requests = 5
on_failure = "rollback"

[tasks.promote-api]
kind = "promote"
deploy = "deploy-api"
deps = ["check-canary"]
{extra}
"#,
            img = image('a'),
        ));
        Cloud {
            p,
            home,
            app: App::start(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LIFEOS_GCLOUD".into(), standin().display().to_string()),
            (
                "STANDIN_GCLOUD_HOME".into(),
                self.home.display().to_string(),
            ),
            ("STANDIN_GCLOUD_ACCOUNT".into(), "ci@lifeos.example".into()),
            (
                "STANDIN_GCLOUD_URL_BASE".into(),
                format!("http://127.0.0.1:{}", self.app.port),
            ),
            ("DEPLOY_TOKEN".into(), "tok-3f9a-secret-value".into()),
            ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
        ]
    }

    fn lifeos_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all: Vec<(String, String)> = self.env();
        for (k, v) in env {
            all.retain(|(n, _)| n != k);
            all.push((k.to_string(), v.to_string()));
        }
        let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.p.json_env(args, &pairs)
    }

    fn lifeos(&self, args: &[&str]) -> Run {
        self.lifeos_with(args, &[])
    }

    /// Without `--json` (rollback, status).
    fn plain(&self, args: &[&str]) -> Run {
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.p.run_env(args, &pairs)
    }

    /// `gcloud run services describe` through the stand-in, as a test would look.
    fn describe(&self) -> Value {
        let mut c = Command::new(standin());
        c.args([
            "run",
            "services",
            "describe",
            SERVICE,
            "--region",
            REGION,
            "--project",
            PROJECT,
            "--format",
            "json",
        ]);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// Every call lifeos made, as argv lists.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.home.join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["argv"].clone())
            .map(|v| serde_json::from_value(v).unwrap())
            .collect()
    }

    fn deploys(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.len() > 1 && c[0] == "run" && c[1] == "deploy")
            .count()
    }

    /// (revision → percent) and the revision tagged `canary`, from status.traffic.
    fn split(&self) -> (Vec<(String, u64)>, Option<String>) {
        let v = self.describe();
        let mut split = vec![];
        let mut canary = None;
        for t in v["status"]["traffic"].as_array().unwrap() {
            let rev = t["revisionName"].as_str().unwrap().to_string();
            if let Some(p) = t["percent"].as_u64() {
                split.push((rev.clone(), p));
            }
            if t["tag"] == "canary" {
                canary = Some(rev);
            }
        }
        split.sort();
        (split, canary)
    }
}

fn ok(r: &Run) {
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn deploy_skip_canary_promote_rollback_and_a_failed_check() {
    let c = Cloud::new("");

    // The first deploy creates the service; describe shows the digest it was given.
    let r = c.lifeos(&["run", "deploy-api"]);
    ok(&r);
    let v = c.describe();
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["image"],
        image('a')
    );
    let r1 = v["status"]["latestReadyRevisionName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c.split().0, vec![(r1.clone(), 100)]);
    // The seed's settings reached Cloud Run; the secret's value never went to gcloud's argv.
    let deploy = c
        .calls()
        .into_iter()
        .find(|a| a[..2] == ["run", "deploy"])
        .unwrap()
        .join(" ");
    for f in [
        "--set-secrets JWT_SECRET=jwt-secret:latest",
        "--min-instances 1",
        "--max-instances 10",
        "--cpu 1",
        "--memory 512Mi",
        "--concurrency 80",
        "--timeout 300s",
        "--service-account lifeos-api@lifeos-production.iam.gserviceaccount.com",
        "--allow-unauthenticated",
        "--set-env-vars NODE_ENV=production",
    ] {
        assert!(deploy.contains(f), "{f} missing: {deploy}");
    }
    assert!(!deploy.contains("--no-traffic"), "{deploy}");
    assert!(!deploy.contains("tok-3f9a"), "{deploy}");
    assert!(!r.all().contains("tok-3f9a"), "{}", r.all());
    // gcloud's stderr is the task's log.
    assert!(
        r.all()
            .contains("has been deployed and is serving 100 percent of traffic"),
        "{}",
        r.all()
    );

    // Nothing changed: cached after a `services describe`, no `run deploy`.
    let r = c.lifeos(&["run", "deploy-api"]);
    ok(&r);
    assert_eq!(r.cached(), vec!["deploy-api".to_string()], "{}", r.all());
    assert_eq!(c.deploys(), 1, "{:?}", c.calls());

    // v2, canary 10%: the old revision 90, the new one 10 with the tag canary.
    let img2 = format!("image={}", image('b'));
    let r = c.lifeos(&["run", "canary-api", "--set", &img2]);
    ok(&r);
    assert_eq!(c.deploys(), 2);
    let (split, tagged) = c.split();
    let r2 = tagged.expect("a revision tagged canary");
    assert_ne!(r2, r1);
    assert_eq!(split, vec![(r1.clone(), 90), (r2.clone(), 10)]);
    let last = c.calls().into_iter().rfind(|a| a[..2] == ["run", "deploy"]);
    let last = last.unwrap().join(" ");
    assert!(last.contains("--no-traffic --tag canary"), "{last}");
    assert!(
        c.calls().iter().any(|a| a
            .join(" ")
            .contains("update-traffic lifeos-api --to-tags canary=10")),
        "{:?}",
        c.calls()
    );

    // The check probes the tagged URL (all 200 here), then promote: LATEST takes 100.
    let r = c.lifeos(&["run", "promote-api", "--set", &img2]);
    ok(&r);
    assert!(
        r.all().contains(&format!("/canary---{SERVICE}")),
        "the check did not probe the tagged URL: {}",
        r.all()
    );
    let v = c.describe();
    assert_eq!(
        v["spec"]["traffic"][0],
        serde_json::json!({"latestRevision": true, "percent": 100})
    );
    assert_eq!(c.split().0, vec![(r2.clone(), 100)]);
    assert_eq!(c.deploys(), 2, "promote made no deploy");

    // Rollback: the previous serving revision takes 100% again.
    let r = c.plain(&["rollback", SERVICE]);
    ok(&r);
    assert!(r.stdout.contains(&format!("→ {r1} 100%")), "{}", r.all());
    assert!(
        r.stdout.contains("previous from the recorded history"),
        "{}",
        r.all()
    );
    assert_eq!(c.split().0, vec![(r1.clone(), 100)]);
    let s = c.plain(&["status"]);
    ok(&s);
    assert!(
        s.stdout.contains(&format!(
            "{SERVICE} (Cloud Run {PROJECT}/{REGION}): traffic {r1} 100%"
        )),
        "{}",
        s.all()
    );

    // v3 fails its check (the canary answers 500): exit 1, the previous revision gets 100%
    // again and the tag goes, in one update-traffic call.
    c.app.bad.store(true, Ordering::SeqCst);
    let img3 = format!("image={}", image('c'));
    let r = c.lifeos(&["run", "promote-api", "--set", &img3]);
    assert_eq!(r.code, 1, "{}", r.all());
    let out = r.all();
    assert!(
        out.contains("check of lifeos-api failed: success_rate canary 0.0000"),
        "{out}"
    );
    assert!(
        out.contains(&format!("rolled back: traffic {r1} 100%")),
        "{out}"
    );
    let (split, tagged) = c.split();
    assert_eq!(split, vec![(r1.clone(), 100)]);
    assert_eq!(tagged, None);
    assert_eq!(c.deploys(), 3);
}

#[test]
fn gcloud_missing_unauthenticated_and_a_failed_deploy() {
    let c = Cloud::new("");

    let r = c.lifeos_with(
        &["run", "deploy-api"],
        &[("LIFEOS_GCLOUD", "/nonexistent/gcloud")],
    );
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.all().contains("gcloud is not installed"), "{}", r.all());
    assert!(
        r.all().contains("install the Google Cloud CLI"),
        "{}",
        r.all()
    );

    let r = c.lifeos_with(&["run", "deploy-api"], &[("STANDIN_GCLOUD_ACCOUNT", "")]);
    assert_eq!(r.code, 3, "{}", r.all());
    let out = r.all();
    assert!(out.contains("gcloud is not authenticated"), "{out}");
    assert!(out.contains("gcloud auth login"), "{out}");
    assert!(out.contains("service account"), "{out}");

    // A revision that never gets ready: exit 1 with gcloud's message, traffic untouched.
    ok(&c.lifeos(&["run", "deploy-api"]));
    let before = c.split();
    let broken = "image=us-central1-docker.pkg.dev/lifeos-production/lifeos/broken@sha256:"
        .to_string()
        + &"d".repeat(64);
    let r = c.lifeos(&["run", "deploy-api", "--set", &broken]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all()
            .contains("ERROR: (gcloud.run.deploy) Revision 'lifeos-api-00002-"),
        "{}",
        r.all()
    );
    assert!(
        r.all().contains("is not ready and cannot serve traffic"),
        "{}",
        r.all()
    );
    assert_eq!(c.split(), before);

    // A traffic change Cloud Run refuses leaves the split as it was (no half-move).
    let img2 = format!("image={}", image('b'));
    ok(&c.lifeos(&["run", "deploy-api", "--set", &img2]));
    let before = c.split();
    let r = c.lifeos_with(
        &["run", "canary-api", "--set", &img2],
        &[("STANDIN_GCLOUD_FAIL_UPDATE_TRAFFIC", "1")],
    );
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all()
            .contains("ERROR: (gcloud.run.services.update-traffic)"),
        "{}",
        r.all()
    );
    assert_eq!(c.split(), before);
}

#[test]
fn config_errors_name_their_place() {
    let p = Project::new();
    p.config(
        r#"
[tasks.app]
kind = "image"
context = "."

[tasks.deploy-api]
kind = "deploy"
platform = "cloudrun"
region = "us-central1"
service = "Lifeos_API"
image = "app"
secret_refs = { JWT_SECRET = "jwt-secret" }
"#,
    );
    let r = p.run(&["plan"]);
    assert_eq!(r.code, 2, "{}", r.all());
    let e = &r.stderr;
    assert!(e.contains("needs `project`"), "{e}");
    assert!(
        e.contains("invalid Cloud Run service name `Lifeos_API`"),
        "{e}"
    );
    assert!(e.contains("push it first"), "{e}");
    assert!(e.contains("invalid secret reference"), "{e}");
    assert!(e.contains("lifeos.toml:"), "{e}");
}

/// The stand-in's own unit tests: gcloud's traffic arithmetic and its CLI errors.
#[test]
fn the_standin_applies_gclouds_traffic_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standin-gcloud");
    let o = Command::new("python3")
        .args(["-m", "unittest", "-v", "test_run_cmd"])
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("Ran 9 tests"), "{err}");
}

/// The root lifeos.toml's prod environment: every step of the release and what it runs.
#[test]
fn plan_env_prod_shows_each_step_on_cloud_run() {
    let c = Cloud::new("");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cache = c.p.p("repo-cache");
    let mut cmd = Command::new(crate::support::lifeos_bin());
    cmd.arg("-C")
        .arg(repo)
        .arg("--cache-dir")
        .arg(&cache)
        // The images as if changed: else images an earlier build left in the engine make the
        // pushes probe Artifact Registry, which this machine cannot reach.
        .args(["--force=web", "--force=api"])
        .args(["--env", "prod", "plan", "promote-api", "deploy-web"])
        .env("NO_COLOR", "1")
        .env_remove("LIFEOS_CACHE_DIR");
    for (k, v) in c.env() {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "runs: push us-central1-docker.pkg.dev/lifeos-production/lifeos/lifeos-api:prod",
        "runs: gcloud run deploy lifeos-api --image <digest pushed by push-api> --no-traffic --tag canary --region us-central1 --project lifeos-production",
        "runs: gcloud run deploy lifeos-web --image <digest pushed by push-web> --region us-central1 --project lifeos-production",
        "runs: exec: sh example/e2e.sh",
        "runs: gcloud run services update-traffic lifeos-api --to-tags canary=10",
        "runs: probe the `canary` URL of lifeos-api (/health) for 600s",
        "runs: gcloud run services update-traffic lifeos-api --to-latest",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    for task in [
        "migrate",
        "deploy-api",
        "e2e",
        "canary-api",
        "check-canary",
        "promote-api",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(task) && l.contains("will run")),
            "{task}:\n{out}"
        );
    }
}
