//! Pushing to a real registry (Debian's `docker-registry`, htpasswd auth, a random loopback
//! port) through the real engine. Images are built by the lifeos binary; everything is
//! labelled `lifeos.test=<id>` and removed, and the registry dies with its temp dir.

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use lifeos_engine::{Key, LogSink, Probe, Redactor, TaskError};
use lifeos_tasks::registry::cache::ImageCache;
use lifeos_tasks::registry::{PushSpec, PushTask};
use lifeos_tasks::Docker;
use tokio_util::sync::CancellationToken;

use crate::support::{all_bytes, contains, DockerFx, TestRegistry};

/// A password with the characters that break standard-base64 X-Registry-Auth headers.
const PASSWORD: &str = "p?+/w0rd~>?x";

impl DockerFx {
    /// Two image tasks (the seed's web and api shape) from this test's base.
    fn images_toml(&self) -> String {
        self.p
            .file("app/web.txt", &format!("web {}", self.id))
            .file("app/api.txt", &format!("api {}", self.id))
            .file(
                "app/Dockerfile",
                &format!(
                    "FROM {base} AS web\nCOPY web.txt /srv/web.txt\nFROM {base} AS api\nCOPY api.txt /srv/api.txt\n",
                    base = self.base()
                ),
            );
        format!(
            r#"
[tasks.web]
kind = "image"
context = "app"
target = "web"
tag = "{web}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.api]
kind = "image"
context = "app"
target = "api"
tag = "{api}"
labels = {{ "lifeos.test" = "{id}" }}
"#,
            web = self.tag("web"),
            api = self.tag("api"),
            id = self.id
        )
    }

    /// The two images, built by lifeos.
    fn two_images(&self) {
        let toml = self.images_toml();
        self.p.config(&toml);
        let r = self.p.run(&["build"]);
        assert_eq!(r.code, 0, "{}", r.all());
    }

    /// This test's repository for `name` in `reg`, and its path after the host.
    fn repo(&self, reg: &TestRegistry, name: &str) -> (String, String) {
        let path = format!("lifeos-it/{}-{name}", self.id);
        (format!("{}/{path}", reg.host()), path)
    }
}

/// Credential variables for the push (a map: tests share one process environment).
fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn env_creds(reg: &TestRegistry) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    vars(&[
        ("LIFEOS_REGISTRY_USER", &reg.user),
        ("LIFEOS_REGISTRY_PASSWORD", &reg.password),
    ])
}

struct Pusher {
    rt: tokio::runtime::Runtime,
}

impl Pusher {
    fn new() -> Self {
        Self {
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    fn task(
        &self,
        repo: &str,
        tags: &[&str],
        vars: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> PushTask {
        PushTask::new(
            PushSpec {
                image: "web".into(),
                repository: repo.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
            },
            Docker::new(),
        )
        .with_vars(vars)
    }

    fn probe(
        &self,
        t: &PushTask,
        source: &str,
        recorded: Option<&str>,
    ) -> Result<Probe, TaskError> {
        self.rt
            .block_on(t.probe_source(source, &Key([7; 32]), recorded))
    }

    /// Push; the data and the task's log.
    fn push(&self, t: &PushTask, source: &str) -> (Result<serde_json::Value, TaskError>, String) {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let log = LogSink::new("push", tx, Arc::new(Redactor::new(Vec::<String>::new())));
        let r =
            self.rt
                .block_on(t.push_source(source, &Key([7; 32]), &log, &CancellationToken::new()));
        (r, String::from_utf8_lossy(&log.contents()).into_owned())
    }
}

fn digest_of(data: &serde_json::Value) -> String {
    data["digest"].as_str().unwrap().to_string()
}

#[test]
fn push_lib_both_images_every_tag_then_fresh_then_a_new_tag_without_layer_upload() {
    let fx = DockerFx::new();
    fx.two_images();
    let reg = TestRegistry::start("lifeos", PASSWORD);
    let px = Pusher::new();
    for name in ["web", "api"] {
        let (repo, path) = fx.repo(&reg, name);
        let t = px.task(&repo, &["v1", "latest"], env_creds(&reg));
        let probe = px.probe(&t, &fx.tag(name), None).unwrap();
        assert!(
            matches!(&probe, Probe::Missing(why) if why.contains("not in the registry")),
            "{probe:?}"
        );
        let (data, log) = px.push(&t, &fx.tag(name));
        let data = data.unwrap_or_else(|e| panic!("{e}\n{log}"));
        let digest = digest_of(&data);
        assert_eq!(data["reference"], format!("{repo}@{digest}"));
        let key_tag = data["key_tag"].as_str().unwrap().to_string();
        assert!(key_tag.starts_with("key-"), "{data}");
        // The registry's own API: every tag, each with the digest lifeos reported.
        let mut want = vec![key_tag.clone(), "latest".into(), "v1".into()];
        want.sort();
        assert_eq!(reg.tags(&path), want);
        for tag in &want {
            assert_eq!(
                reg.digest(&path, tag).as_deref(),
                Some(digest.as_str()),
                "{tag}"
            );
        }
        // The key tag names the image task's key (its label), so any machine finds it.
        let label = crate::support::docker(&[
            "inspect",
            "-f",
            "{{index .Config.Labels \"lifeos.key\"}}",
            &fx.tag(name),
        ]);
        assert_eq!(key_tag, format!("key-{}", &label[..16]));

        // Next run: the registry has it all with the recorded digest.
        let uploads = reg.blob_uploads();
        let t = px.task(&repo, &["v1", "latest"], env_creds(&reg));
        let probe = px.probe(&t, &fx.tag(name), Some(&digest)).unwrap();
        assert!(
            matches!(&probe, Probe::Fresh(at) if at.starts_with(&repo)),
            "{probe:?}"
        );
        // Another machine (no record) finds the same push by its key tag.
        let t = px.task(&repo, &["v1", "latest"], env_creds(&reg));
        let probe = px.probe(&t, &fx.tag(name), None).unwrap();
        assert!(
            matches!(&probe, Probe::FreshAt { data, .. } if data["digest"] == digest.as_str()),
            "{probe:?}"
        );

        // A new user tag: a manifest put, no blob upload.
        let puts = reg.manifest_puts();
        let t = px.task(&repo, &["v1", "latest", "v2"], env_creds(&reg));
        let probe = px.probe(&t, &fx.tag(name), Some(&digest)).unwrap();
        assert!(
            matches!(&probe, Probe::Missing(why) if why.contains("v2")),
            "{probe:?}"
        );
        let (data, log) = px.push(&t, &fx.tag(name));
        let data = data.unwrap_or_else(|e| panic!("{e}\n{log}"));
        assert_eq!(digest_of(&data), digest);
        assert!(log.contains("no layer upload"), "{log}");
        assert_eq!(reg.digest(&path, "v2").as_deref(), Some(digest.as_str()));
        assert_eq!(reg.blob_uploads(), uploads, "{}", reg.log());
        assert_eq!(reg.manifest_puts(), puts + 1, "{}", reg.log());
    }
}

#[test]
fn push_lib_credentials_from_cred_helpers_and_auths_and_a_refusal_names_the_registry() {
    let fx = DockerFx::new();
    fx.two_images();
    let reg = TestRegistry::start("ci", PASSWORD);
    let px = Pusher::new();
    let (repo, path) = fx.repo(&reg, "web");
    let home = tempfile::tempdir().unwrap();
    let path_env = format!(
        "{}:{}",
        home.path().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // credHelpers: a helper program that answers for this registry only.
    fs::create_dir_all(home.path().join("bin")).unwrap();
    let helper = home.path().join("bin/docker-credential-lifeostest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\n[ \"$host\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"ci\",\"Secret\":\"%s\"}}\\n' \"$host\" '{PASSWORD}'\n",
            host = reg.host()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = home.path().join("helper");
    fs::create_dir_all(&cfg).unwrap();
    fs::write(
        cfg.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"lifeostest"}}}}"#, reg.host()),
    )
    .unwrap();
    let t = px.task(
        &repo,
        &["helper"],
        vars(&[
            ("DOCKER_CONFIG", cfg.to_str().unwrap()),
            ("PATH", &path_env),
        ]),
    );
    let (data, log) = px.push(&t, &fx.tag("web"));
    let data = data.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(reg.digest(&path, "helper"), Some(digest_of(&data)));

    // auths: base64 of user:password, as `docker login` writes it.
    let cfg = home.path().join("auths");
    fs::create_dir_all(&cfg).unwrap();
    let auth = crate::support::base64_std(&format!("ci:{PASSWORD}"));
    fs::write(
        cfg.join("config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{auth}"}}}}}}"#,
            reg.host()
        ),
    )
    .unwrap();
    let t = px.task(
        &repo,
        &["auths"],
        vars(&[("DOCKER_CONFIG", cfg.to_str().unwrap())]),
    );
    let (data, log) = px.push(&t, &fx.tag("web"));
    let data = data.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(reg.digest(&path, "auths"), Some(digest_of(&data)));

    // A wrong password: an environment error naming the registry and where lifeos looked;
    // the password is in neither the message nor the log.
    let wrong = "Wr0ng?+/pass";
    let t = px.task(
        &repo,
        &["wrong"],
        vars(&[
            ("LIFEOS_REGISTRY_USER", "ci"),
            ("LIFEOS_REGISTRY_PASSWORD", wrong),
        ]),
    );
    let err = px.probe(&t, &fx.tag("web"), None).unwrap_err();
    let TaskError::Environment(msg) = &err else {
        panic!("not an environment error: {err:?}")
    };
    assert!(
        msg.contains(&reg.host()) && msg.contains("LIFEOS_REGISTRY_USER"),
        "{msg}"
    );
    assert!(!msg.contains(wrong) && !msg.contains(PASSWORD), "{msg}");
    // No credentials at all: the same, naming the Docker config it read.
    let t = px.task(
        &repo,
        &["none"],
        vars(&[(
            "DOCKER_CONFIG",
            cfg.parent().unwrap().join("nowhere").to_str().unwrap(),
        )]),
    );
    let (r, log) = px.push(&t, &fx.tag("web"));
    let Err(TaskError::Environment(msg)) = r else {
        panic!("{r:?}\n{log}")
    };
    assert!(
        msg.contains("nowhere/config.json") && msg.contains(&reg.host()),
        "{msg}"
    );
    for (p, bytes) in all_bytes(fx.p.path()) {
        assert!(
            !contains(&bytes, wrong) && !contains(&bytes, PASSWORD),
            "{p:?}"
        );
    }
}

#[test]
fn push_lib_registry_down_is_retried_then_fails_and_a_restarted_registry_gets_the_push() {
    let fx = DockerFx::new();
    fx.two_images();
    let mut reg = TestRegistry::start("ci", PASSWORD);
    let px = Pusher::new();
    let (repo, path) = fx.repo(&reg, "api");
    reg.stop();
    let t = px.task(&repo, &["v1"], env_creds(&reg));
    let (r, log) = px.push(&t, &fx.tag("api"));
    let Err(TaskError::Failed(msg)) = &r else {
        panic!("{r:?}\n{log}")
    };
    assert!(
        msg.contains(&reg.host()) && msg.contains("gave up after 4 attempts"),
        "{msg}"
    );
    // Each look-up (key tag and v1, at once) tried 4 times: 3 retries each, then no more.
    let retries = |tag: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("-api:{tag}")) && l.contains("retrying in"))
            .count()
    };
    assert_eq!((retries("key-"), retries("v1: ")), (3, 3), "{log}");
    assert_eq!(log.matches("retrying in").count(), 6, "{log}");
    reg.restart();
    assert!(reg.tags(&path).is_empty());
    let t = px.task(&repo, &["v1"], env_creds(&reg));
    let (data, log) = px.push(&t, &fx.tag("api"));
    let data = data.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(reg.digest(&path, "v1"), Some(digest_of(&data)));
}

#[test]
fn image_cache_lib_pulls_an_image_by_its_key_tag_and_checks_its_key_label() {
    let fx = DockerFx::new();
    fx.two_images();
    let reg = TestRegistry::start("ci", PASSWORD);
    let px = Pusher::new();
    let (repo, _) = fx.repo(&reg, "web");
    let t = px.task(&repo, &["v1"], env_creds(&reg));
    let (data, log) = px.push(&t, &fx.tag("web"));
    data.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let key = crate::support::docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"lifeos.key\"}}",
        &fx.tag("web"),
    ]);
    let id = crate::support::docker(&["inspect", "-f", "{{.Id}}", &fx.tag("web")]);
    // Gone from this engine (as on another machine): every local tag of it removed.
    crate::support::docker(&["rmi", "-f", &id]);
    let cache = ImageCache::new(&repo).with_vars(env_creds(&reg));
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let log = LogSink::new("web", tx, Arc::new(Redactor::new(Vec::<String>::new())));
    let docker = Docker::new();
    let got = px
        .rt
        .block_on(cache.fetch(&docker, &key, &log, &CancellationToken::new()))
        .unwrap();
    let text = String::from_utf8_lossy(&log.contents()).into_owned();
    let (pulled, reference) = got.unwrap_or_else(|| panic!("not pulled:\n{text}"));
    assert_eq!(pulled, id, "the same image ID comes back");
    assert!(text.contains(&format!("pulled from {repo}")), "{text}");
    crate::support::docker(&["tag", &reference, &fx.tag("web")]);
    // Another key: not in the registry, nothing pulled.
    let other = "0".repeat(64);
    let got = px
        .rt
        .block_on(cache.fetch(&docker, &other, &log, &CancellationToken::new()))
        .unwrap();
    assert!(got.is_none());
}

// ---- through the lifeos binary: `kind = "push"` ----

impl DockerFx {
    /// The images, a push of each to `${vars.registry}` under `${vars.tag}` and `latest`,
    /// and a task that prints what the pushes report.
    fn push_config(&self) {
        let toml = self.images_toml();
        self.p.config(&format!(
            r#"
[vars]
registry = "127.0.0.1:1"
tag = "v1"
{toml}
[tasks.push-web]
kind = "push"
image = "web"
repository = "${{vars.registry}}/lifeos-it/{id}-web"
tags = ["${{vars.tag}}", "latest"]

[tasks.push-api]
kind = "push"
image = "api"
repository = "${{vars.registry}}/lifeos-it/{id}-api"
tags = ["${{vars.tag}}", "latest"]

[tasks.report]
kind = "exec"
run = "echo web=${{tasks.push-web.digest}} ${{tasks.push-web.reference}}; echo api=${{tasks.push-api.digest}} ${{tasks.push-api.reference}}"
"#,
            id = self.id
        ));
    }
}

/// `lifeos --json --set registry=HOST ARGS` with `env`.
fn lifeos(
    fx: &DockerFx,
    reg: &TestRegistry,
    args: &[&str],
    env: &[(&str, &str)],
) -> crate::support::Run {
    let set = format!("registry={}", reg.host());
    let mut a = vec!["--set", set.as_str()];
    a.extend_from_slice(args);
    fx.p.json_env(&a, env)
}

fn creds_env(reg: &TestRegistry) -> Vec<(&'static str, String)> {
    vec![
        ("LIFEOS_REGISTRY_USER", reg.user.clone()),
        ("LIFEOS_REGISTRY_PASSWORD", reg.password.clone()),
    ]
}

fn env_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// What `report` printed for `name`: (digest, reference).
fn reported(r: &crate::support::Run, name: &str) -> (String, String) {
    let prefix = format!("{name}=");
    r.events()
        .iter()
        .filter(|e| e["event"] == "task_log" && e["task"] == "report")
        .filter_map(|e| e["line"].as_str())
        .find_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (d, reference) = rest.split_once(' ')?;
            Some((d.to_string(), reference.to_string()))
        })
        .unwrap_or_else(|| panic!("no report for {name}:\n{}", r.all()))
}

/// The log lines of `task` in a `--json` run.
fn task_log(r: &crate::support::Run, task: &str) -> String {
    r.events()
        .iter()
        .filter(|e| e["event"] == "task_log" && e["task"] == task)
        .filter_map(|e| e["line"].as_str().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn push_both_images_then_cached_without_blob_uploads_then_a_new_tag_without_layer_upload() {
    let fx = DockerFx::new();
    fx.push_config();
    let reg = TestRegistry::start("lifeos", PASSWORD);
    let env = creds_env(&reg);
    let env = env_refs(&env);

    let r = lifeos(&fx, &reg, &["run"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    for t in ["web", "api", "push-web", "push-api", "report"] {
        assert!(r.ran().contains(&t.to_string()), "{t}: {}", r.all());
    }
    let mut digests = BTreeMap::new();
    for name in ["web", "api"] {
        let (digest, reference) = reported(&r, name);
        let (repo, path) = fx.repo(&reg, name);
        assert_eq!(reference, format!("{repo}@{digest}"));
        let tags = reg.tags(&path);
        assert_eq!(tags.len(), 3, "{tags:?}");
        assert!(
            tags[0].starts_with("key-") && tags[1] == "latest" && tags[2] == "v1",
            "{tags:?}"
        );
        for tag in &tags {
            assert_eq!(
                reg.digest(&path, tag).as_deref(),
                Some(digest.as_str()),
                "{name}:{tag}"
            );
        }
        let log = task_log(&r, &format!("push-{name}"));
        assert!(log.contains("layers uploaded"), "{log}");
        // Byte progress of the layer upload.
        let progress: Vec<String> = r
            .events()
            .iter()
            .filter(|e| e["event"] == "task_progress" && e["task"] == format!("push-{name}"))
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .collect();
        assert!(
            progress
                .iter()
                .any(|m| m.starts_with("pushing :key-") && m.contains(" MB / ")),
            "{progress:?}"
        );
        digests.insert(name, digest);
    }
    let uploads = reg.blob_uploads();
    let puts = reg.manifest_puts();
    assert!(uploads >= 2, "{}", reg.log());

    // Second run: both pushes cached, the registry saw no upload and no manifest put.
    let r = lifeos(&fx, &reg, &["run"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.ran().is_empty(), "{}", r.all());
    assert_eq!(
        (reg.blob_uploads(), reg.manifest_puts()),
        (uploads, puts),
        "{}",
        reg.log()
    );

    // A new user tag: the push runs, says why, and puts one manifest per image, no blob.
    let r = lifeos(
        &fx,
        &reg,
        &["--set", "tag=v2", "run", "push-web", "push-api"],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.ran(),
        vec!["push-api".to_string(), "push-web".to_string()],
        "{}",
        r.all()
    );
    assert!(r.stdout.contains("tag v2 not in"), "{}", r.all());
    assert_eq!(reg.blob_uploads(), uploads, "{}", reg.log());
    assert_eq!(reg.manifest_puts(), puts + 2, "{}", reg.log());
    for name in ["web", "api"] {
        let (_, path) = fx.repo(&reg, name);
        assert_eq!(reg.digest(&path, "v2").as_ref(), Some(&digests[name]));
        assert!(task_log(&r, &format!("push-{name}")).contains("no layer upload"));
    }
    for (p, bytes) in all_bytes(fx.p.path()) {
        assert!(!contains(&bytes, PASSWORD), "the password is in {p:?}");
    }
}

#[test]
fn push_credentials_from_cred_helpers_and_auths_and_a_wrong_password_exits_3() {
    let fx = DockerFx::new();
    fx.push_config();
    let reg = TestRegistry::start("ci", PASSWORD);
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-lifeostest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread host\n[ \"$host\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"ci\",\"Secret\":\"%s\"}}\\n' \"$host\" '{PASSWORD}'\n",
            host = reg.host()
        ),
    )
    .unwrap();
    fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path_env = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let helper_cfg = home.path().join("helper");
    fs::create_dir_all(&helper_cfg).unwrap();
    fs::write(
        helper_cfg.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"lifeostest"}}}}"#, reg.host()),
    )
    .unwrap();
    let r = lifeos(
        &fx,
        &reg,
        &["run", "push-web"],
        &[
            ("DOCKER_CONFIG", helper_cfg.to_str().unwrap()),
            ("PATH", &path_env),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    let (_, path) = fx.repo(&reg, "web");
    assert!(reg.digest(&path, "v1").is_some());

    // auths, as `docker login` writes them; a new tag makes the push ask the registry.
    let auths_cfg = home.path().join("auths");
    fs::create_dir_all(&auths_cfg).unwrap();
    let auth = crate::support::base64_std(&format!("ci:{PASSWORD}"));
    fs::write(
        auths_cfg.join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let r = lifeos(
        &fx,
        &reg,
        &["--set", "tag=auths", "run", "push-web"],
        &[("DOCKER_CONFIG", auths_cfg.to_str().unwrap())],
    );
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(reg.digest(&path, "auths").is_some());

    // A wrong password: exit 3, the registry named, the password in no output or file.
    let wrong = "Wr0ng?+/pass";
    let r = lifeos(
        &fx,
        &reg,
        &["--set", "tag=wrong", "run", "push-web"],
        &[
            ("LIFEOS_REGISTRY_USER", "ci"),
            ("LIFEOS_REGISTRY_PASSWORD", wrong),
        ],
    );
    assert_eq!(r.code, 3, "{}", r.all());
    let all = r.all();
    assert!(
        all.contains(&format!("registry {} refused", reg.host())),
        "{all}"
    );
    assert!(all.contains("LIFEOS_REGISTRY_USER"), "{all}");
    assert!(!all.contains(wrong) && !all.contains(PASSWORD), "{all}");
    assert!(reg.digest(&path, "wrong").is_none());
    for (p, bytes) in all_bytes(fx.p.path()) {
        assert!(
            !contains(&bytes, wrong) && !contains(&bytes, PASSWORD),
            "{p:?}"
        );
    }
}

#[test]
fn push_registry_stopped_during_the_push_fails_after_bounded_retries_and_the_next_run_pushes() {
    let fx = DockerFx::new();
    // A layer big enough that the push is still uploading when the registry goes.
    let big: String = (0..6_000_000u32)
        .map(|i| format!("{:08x}", i.wrapping_mul(2654435761)))
        .collect();
    fx.push_config();
    fx.p.file("app/web.txt", &big);
    let mut reg = TestRegistry::start("ci", PASSWORD);
    let env = creds_env(&reg);
    let env = env_refs(&env);
    let set = format!("registry={}", reg.host());
    let mut cmd = fx.p.cmd(&["--json", "--set", &set, "run", "push-web"]);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the registry as soon as the first blob upload begins.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while reg.blob_uploads() == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(reg.blob_uploads() > 0, "no upload began:\n{}", reg.log());
    reg.stop();
    let out = child.wait_with_output().unwrap();
    let r = crate::support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(r.code, 1, "{}", r.all());
    let all = r.all();
    assert!(all.contains("gave up after 4 attempts"), "{all}");
    // Three retries after the failed upload, then no more.
    assert!(
        all.contains("attempt 3 of 4") && !all.contains("attempt 4 of 4"),
        "{all}"
    );
    assert!(
        all.contains(&format!("registry {} is unreachable", reg.host())),
        "{all}"
    );

    // Restarted: the next run pushes (nothing was recorded) and the registry has it.
    reg.restart();
    let r = lifeos(&fx, &reg, &["run", "push-web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.ran().contains(&"push-web".to_string()), "{}", r.all());
    let (_, path) = fx.repo(&reg, "web");
    assert!(reg.digest(&path, "v1").is_some());
}

#[test]
fn registry_cache_a_second_checkout_pulls_instead_of_building_and_so_does_a_build_after_rmi() {
    let fx = DockerFx::new();
    fx.push_config();
    let toml = fx.p.read("lifeos.toml").replace(
        "target = \"web\"\n",
        &format!(
            "target = \"web\"\nregistry_cache = \"${{vars.registry}}/lifeos-it/{}-web\"\n",
            fx.id
        ),
    );
    fx.p.config(&toml);
    let reg = TestRegistry::start("ci", PASSWORD);
    let env = creds_env(&reg);
    let env = env_refs(&env);
    // First checkout: not in the registry yet, so built; then pushed.
    let r = lifeos(&fx, &reg, &["run", "push-web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let log = task_log(&r, "web");
    assert!(
        log.contains("building") && log.contains("COPY web.txt"),
        "{log}"
    );
    let id = crate::support::docker(&["inspect", "-f", "{{.Id}}", &fx.tag("web")]);

    // Second checkout of the same sources, its own cache dir, on an engine without the image.
    let second = crate::support::Project::new();
    second
        .file("app/web.txt", &fx.p.read("app/web.txt"))
        .file("app/api.txt", &fx.p.read("app/api.txt"))
        .file("app/Dockerfile", &fx.p.read("app/Dockerfile"))
        .config(&toml);
    crate::support::docker(&["rmi", "-f", &id]);
    let set = format!("registry={}", reg.host());
    let r = second.json_env(&["--set", &set, "build", "web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), vec!["web".to_string()], "{}", r.all());
    let log = task_log(&r, "web");
    let repo = fx.repo(&reg, "web").0;
    assert!(log.contains(&format!("pulled from {repo}")), "{log}");
    assert!(
        !log.contains("COPY") && !log.contains("exporting"),
        "a build step ran:\n{log}"
    );
    assert_eq!(
        crate::support::docker(&["inspect", "-f", "{{.Id}}", &fx.tag("web")]),
        id,
        "the pulled image is the one built"
    );
    // The key tag is not left behind locally; the image's own tag is there.
    let local = crate::support::docker(&["inspect", "-f", "{{json .RepoTags}}", &id]);
    assert!(!local.contains(":key-"), "{local}");

    // The first checkout, after `docker rmi`: pulled again, not built.
    crate::support::docker(&["rmi", "-f", &id]);
    let r = lifeos(&fx, &reg, &["build", "web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let log = task_log(&r, "web");
    assert!(
        log.contains("pulled from") && !log.contains("COPY"),
        "{log}"
    );
    // And the push after it is cached.
    let r = lifeos(&fx, &reg, &["run", "push-web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.ran().is_empty(), "{}", r.all());
}

// ---- `[cache] images`: the project's image cache, filled by builds ----

#[test]
fn cache_images_a_second_checkout_pulls_instead_of_building_and_so_does_a_build_after_rmi() {
    let fx = DockerFx::new();
    let toml = format!(
        "[vars]\nregistry = \"127.0.0.1:1\"\n\n[cache]\nimages = \"${{vars.registry}}/lifeos-it/{}-cache\"\n{}",
        fx.id,
        fx.images_toml()
    );
    fx.p.config(&toml);
    let reg = TestRegistry::start("ci", PASSWORD);
    let env = creds_env(&reg);
    let env = env_refs(&env);
    let (repo, path) = fx.repo(&reg, "cache");

    // First checkout: nothing in the registry, so both are built, then stored by key tag.
    let r = lifeos(&fx, &reg, &["build"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let mut ids = BTreeMap::new();
    for name in ["web", "api"] {
        let log = task_log(&r, name);
        assert!(
            log.contains(&format!("not in {repo}")) && log.contains("COPY"),
            "{log}"
        );
        assert!(log.contains(&format!("stored in {repo} as key-")), "{log}");
        ids.insert(
            name,
            crate::support::docker(&["inspect", "-f", "{{.Id}}", &fx.tag(name)]),
        );
    }
    let tags = reg.tags(&path);
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert!(tags.iter().all(|t| t.starts_with("key-")), "{tags:?}");

    // Second checkout of the same sources, its own cache dir, on an engine without them.
    let second = crate::support::Project::new();
    second
        .file("app/web.txt", &fx.p.read("app/web.txt"))
        .file("app/api.txt", &fx.p.read("app/api.txt"))
        .file("app/Dockerfile", &fx.p.read("app/Dockerfile"))
        .config(&toml);
    for id in ids.values() {
        crate::support::docker(&["rmi", "-f", id]);
    }
    let set = format!("registry={}", reg.host());
    let uploads = reg.blob_uploads();
    let r = second.json_env(&["--set", &set, "build"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(
        r.ran(),
        vec!["api".to_string(), "web".to_string()],
        "{}",
        r.all()
    );
    for name in ["web", "api"] {
        let log = task_log(&r, name);
        assert!(log.contains(&format!("pulled from {repo}")), "{log}");
        assert!(
            !log.contains("COPY") && !log.contains("stored in"),
            "a build step ran:\n{log}"
        );
        assert_eq!(
            crate::support::docker(&["inspect", "-f", "{{.Id}}", &fx.tag(name)]),
            ids[name],
            "the pulled image is the one built"
        );
    }
    assert_eq!(reg.blob_uploads(), uploads, "{}", reg.log());

    // The first checkout, after `docker rmi`: pulled again, not built.
    crate::support::docker(&["rmi", "-f", &ids["web"]]);
    let r = lifeos(&fx, &reg, &["build", "web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let log = task_log(&r, "web");
    assert!(
        log.contains(&format!("pulled from {repo}")) && !log.contains("COPY"),
        "{log}"
    );
}

/// `--force` on an image task with `[cache] images` builds: the registry has the key tag,
/// and without the flag the task would pull it (a regression: force used to pull).
#[test]
fn cache_images_force_builds_instead_of_pulling_the_key_tag() {
    let fx = DockerFx::new();
    let toml = format!(
        "[vars]\nregistry = \"127.0.0.1:1\"\n\n[cache]\nimages = \"${{vars.registry}}/lifeos-it/{}-cache\"\n{}",
        fx.id,
        fx.images_toml()
    );
    fx.p.config(&toml);
    let reg = TestRegistry::start("ci", PASSWORD);
    let env = creds_env(&reg);
    let env = env_refs(&env);
    let (repo, path) = fx.repo(&reg, "cache");

    let r = lifeos(&fx, &reg, &["build", "web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(task_log(&r, "web").contains(&format!("stored in {repo} as key-")));
    let tags = reg.tags(&path);
    assert_eq!(tags.len(), 1, "{tags:?}");

    // The image is gone locally, so only the registry could serve it without a build.
    let id = crate::support::docker(&["inspect", "-f", "{{.Id}}", &fx.tag("web")]);
    crate::support::docker(&["rmi", "-f", &id]);
    let r = lifeos(&fx, &reg, &["build", "--force", "web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), vec!["web".to_string()], "{}", r.all());
    let log = task_log(&r, "web");
    assert!(
        log.contains(&format!(
            "forced: building (registry cache {repo} not asked)"
        )),
        "{log}"
    );
    assert!(
        log.contains("COPY") && !log.contains("pulled from"),
        "no build step, or a pull:\n{log}"
    );
    assert!(
        log.contains(&format!("stored in {repo} as {}", tags[0])),
        "{log}"
    );

    // Without the flag the same state pulls (what the flag must not do).
    let id = crate::support::docker(&["inspect", "-f", "{{.Id}}", &fx.tag("web")]);
    crate::support::docker(&["rmi", "-f", &id]);
    let r = lifeos(&fx, &reg, &["build", "web"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let log = task_log(&r, "web");
    assert!(
        log.contains(&format!("pulled from {repo}")) && !log.contains("COPY"),
        "{log}"
    );
}

#[test]
fn cache_images_and_cache_from_config_errors_point_at_the_value() {
    let p = crate::support::Project::new();
    p.file("app/Dockerfile", "FROM scratch\n");
    let image = "[tasks.app]\nkind = \"image\"\ncontext = \"app\"\n";
    for (toml, place, needle) in [
        (
            format!("[cache]\nimages = \"127.0.0.1:5000/Cache\"\n\n{image}"),
            "lifeos.toml:2:10",
            "invalid `images` cache",
        ),
        (
            format!("[cache]\nimages = \"127.0.0.1:5000/cache:v1\"\n\n{image}"),
            "lifeos.toml:2:10",
            "has a tag in it",
        ),
        (
            format!("{image}cache_from = [\"127.0.0.1:5000/app:latest\", \"Bad Ref\"]\n"),
            "lifeos.toml:4:44",
            "invalid `cache_from` `Bad Ref`",
        ),
        (
            format!("{image}builder = \"classic\"\ncache_from = [\"127.0.0.1:5000/app:latest\"]\n"),
            "lifeos.toml:5:15",
            "set builder = \"buildkit\"",
        ),
        (
            format!(
                "{image}secrets = [\"NPM_TOKEN\"]\ncache_from = [\"127.0.0.1:5000/app:latest\"]\n"
            ),
            "lifeos.toml:5:15",
            "cannot use `cache_from` yet",
        ),
    ] {
        p.config(&toml);
        let r = p.run(&["plan"]);
        assert_eq!(r.code, 2, "{toml}: {}", r.all());
        assert!(r.stderr.contains(place), "{toml}: {place}: {}", r.all());
        assert!(r.stderr.contains(needle), "{toml}: {needle}: {}", r.all());
    }
}

// ---- BuildKit `cache_from` with inline cache ----

#[test]
fn cache_from_reuses_the_registrys_inline_cache_after_local_images_and_build_cache_are_gone() {
    let fx = DockerFx::new();
    // The expensive step writes a random value: reused, the new image has the same one.
    fx.p.file("app/late.txt", "late 1").file(
        "app/Dockerfile",
        &format!(
            "FROM {base}\nRUN cat /proc/sys/kernel/random/uuid > /expensive-{id}\nCOPY late.txt /late.txt\n",
            base = fx.base(),
            id = fx.id
        ),
    );
    fx.p.config(&format!(
        r#"
[vars]
registry = "127.0.0.1:1"

[tasks.app]
kind = "image"
context = "app"
tag = "{tag}"
labels = {{ "lifeos.test" = "{id}" }}
cache_from = ["${{vars.registry}}/lifeos-it/{id}-app:latest"]

[tasks.push-app]
kind = "push"
image = "app"
repository = "${{vars.registry}}/lifeos-it/{id}-app"
tags = ["latest"]
"#,
        tag = fx.tag("app"),
        id = fx.id
    ));
    let reg = TestRegistry::start("ci", PASSWORD);
    let env = creds_env(&reg);
    let env = env_refs(&env);
    let expensive = format!(
        "RUN cat /proc/sys/kernel/random/uuid > /expensive-{}",
        fx.id
    );

    // First build: nothing to reuse; it runs the step and exports its inline cache.
    let r = lifeos(&fx, &reg, &["run", "push-app"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let log = task_log(&r, "app");
    assert!(log.contains(&format!("{expensive} DONE")), "{log}");
    let stamp =
        |fx: &DockerFx| fx.cli_run(&fx.tag("app"), &["cat", &format!("/expensive-{}", fx.id)]);
    let first = stamp(&fx);

    // Gone from this engine: the image, and BuildKit's cache of the step and what was built
    // on it (only this test's records: other builds share the engine).
    let id = crate::support::docker(&["inspect", "-f", "{{.Id}}", &fx.tag("app")]);
    crate::support::docker(&["rmi", "-f", &id]);
    let needle = format!("/expensive-{}", fx.id);
    assert!(
        prune_build_cache(&needle) >= 2,
        "no build cache of the step"
    );
    assert!(
        build_cache(&needle).is_empty(),
        "{:?}",
        build_cache(&needle)
    );

    // A late layer changes: the expensive step comes from the registry's inline cache.
    fx.p.file("app/late.txt", "late 2");
    let r = lifeos(&fx, &reg, &["build", "app"], &env);
    assert_eq!(r.code, 0, "{}", r.all());
    let log = task_log(&r, "app");
    assert!(log.contains(&format!("{expensive} CACHED")), "{log}");
    assert!(log.contains("COPY late.txt /late.txt DONE"), "{log}");
    assert_eq!(stamp(&fx), first, "the step's output is the cached one");
    assert_eq!(fx.cli_run(&fx.tag("app"), &["cat", "/late.txt"]), "late 2");
}

/// BuildKit's cache records (`docker system df -v`) whose description contains `needle`.
fn build_cache(needle: &str) -> Vec<serde_json::Value> {
    let all: Vec<serde_json::Value> = serde_json::from_str(&crate::support::docker(&[
        "system",
        "df",
        "-v",
        "--format",
        "{{json .BuildCache}}",
    ]))
    .unwrap_or_default();
    all.into_iter()
        .filter(|r| r["Description"].as_str().unwrap_or("").contains(needle))
        .collect()
}

/// Remove the build cache records whose description contains `needle` and every record built
/// on them, children first (a record with children is kept by a prune); how many.
fn prune_build_cache(needle: &str) -> usize {
    let all: Vec<serde_json::Value> = serde_json::from_str(&crate::support::docker(&[
        "system",
        "df",
        "-v",
        "--format",
        "{{json .BuildCache}}",
    ]))
    .unwrap();
    let id = |r: &serde_json::Value| r["ID"].as_str().unwrap_or("").to_string();
    let mut doomed: Vec<String> = all
        .iter()
        .filter(|r| r["Description"].as_str().unwrap_or("").contains(needle))
        .map(id)
        .collect();
    let mut i = 0;
    while i < doomed.len() {
        for r in &all {
            if r["Parent"].as_str() == Some(doomed[i].as_str()) && !doomed.contains(&id(r)) {
                doomed.push(id(r));
            }
        }
        i += 1;
    }
    for d in doomed.iter().rev() {
        crate::support::docker(&["builder", "prune", "-f", "--filter", &format!("id={d}")]);
    }
    doomed.len()
}
