//! One image build through the Engine API: BuildKit (with a session) or the classic builder.
//! Step progress goes to the progress bar, every line to the task log. Dropping the request
//! (Ctrl-C, timeout) makes the daemon cancel the build.

use std::collections::HashMap;
use std::sync::Arc;

use bollard::models::BuildInfoAux;
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use futures_util::StreamExt;
use lifeos_engine::{ExecCx, Stream, TaskError};

use bytes::Bytes;

use super::{context, session, Builder, ImageSpec, Parsed, KEY_LABEL};
use crate::docker::classify;

/// Build `spec` and return the image ID.
pub async fn build(
    d: &bollard::Docker,
    spec: &ImageSpec,
    parsed: Arc<Parsed>,
    cx: &ExecCx<'_>,
) -> Result<String, TaskError> {
    let in_ctx = spec.dockerfile_in_context();
    let context::ContextFiles {
        mut files,
        bare_dirs,
        dirs,
    } = {
        let (snap, ctx) = (cx.snapshot.clone(), spec.context.clone());
        let buildkit = spec.builder == Builder::BuildKit;
        tokio::task::spawn_blocking(move || context::files(&snap, &ctx, &parsed.rules, buildkit))
            .await
            .map_err(|e| TaskError::Failed(e.to_string()))??
    };
    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(KEY_LABEL.into(), cx.key.to_hex());
    if spec.builder == Builder::BuildKit {
        // As `docker build` does: the context, the Dockerfile and the secrets through the
        // build session.
        if let Some(id) = with_session(d, spec, cx, &files, &dirs, &labels).await? {
            return Ok(id);
        }
    }
    // A Dockerfile outside the context travels in the tar under a name of its own. The
    // classic builder drops the files the tar's .dockerignore lists, so it is listed there
    // and `COPY . .` does not copy it: what the Docker CLI does (a .dockerignore it adds
    // lists itself too). BuildKit applies no .dockerignore to an uploaded context, so a
    // BuildKit build that cannot have its session (see `with_session`) still has it there.
    let (dockerfile_name, extra) = match in_ctx {
        Some(p) if files.iter().any(|f| f.rel == spec.dockerfile) => (p, vec![]),
        // BuildKit with a `.dockerignore` that excludes the Dockerfile: the Engine API reads
        // the Dockerfile from the context tar, so it goes in anyway (and so into a
        // `COPY . ` of the image, where Docker's own client would leave it out).
        Some(p) => {
            cx.log.line(
                Stream::Stderr,
                &format!(
                    "note: .dockerignore excludes {p}, but a build through the Engine API \
                     needs it in the context: a `COPY .` will still copy it"
                ),
            );
            let bytes = std::fs::read(cx.root.join(&spec.dockerfile))?;
            (p.clone(), vec![(p, bytes)])
        }
        None if spec.builder == Builder::BuildKit => {
            let bytes = std::fs::read(cx.root.join(&spec.dockerfile))?;
            let name = format!(".lifeos-dockerfile-{}", cx.key.short());
            cx.log.line(
                Stream::Stderr,
                &format!(
                    "note: {} lies outside the context, so it travels in the context as \
                     {name}: a `COPY .` will copy it (put the Dockerfile inside the context, \
                     or use the classic builder, to leave it out)",
                    spec.dockerfile
                ),
            );
            (name.clone(), vec![(name, bytes)])
        }
        None => {
            let bytes = std::fs::read(cx.root.join(&spec.dockerfile))?;
            let name = format!(".lifeos-dockerfile-{}", cx.key.short());
            let own = if spec.context.is_empty() {
                ".dockerignore".to_string()
            } else {
                format!("{}/.dockerignore", spec.context)
            };
            let mut ignore = match files.iter().position(|f| f.rel == own && !f.symlink) {
                Some(i) => std::fs::read(cx.root.join(&files.remove(i).rel))?,
                None => b".dockerignore".to_vec(),
            };
            ignore.extend_from_slice(format!("\n{name}\n").as_bytes());
            (
                name.clone(),
                vec![(name, bytes), (".dockerignore".to_string(), ignore)],
            )
        }
    };
    cx.log
        .progress(&format!("sending context ({} files)", files.len()));
    let body = context::stream(
        cx.root.to_path_buf(),
        spec.context.clone(),
        files,
        bare_dirs,
        extra,
    );

    if spec.builder == Builder::BuildKit && !spec.secrets.is_empty() {
        // Without a session of lifeos's own, bollard's solve serves the secrets.
        return super::solve::build(d, spec, cx, &dockerfile_name, body, &labels).await;
    }
    let session = format!("lifeos-{}-{}", cx.run_id, cx.key.short());
    let mut opts = options(spec, cx, &dockerfile_name, &labels);
    opts = match spec.builder {
        Builder::BuildKit => opts
            .version(BuilderVersion::BuilderBuildKit)
            .session(&session),
        Builder::Classic => opts.version(BuilderVersion::BuilderV1),
    };
    let creds = match spec.builder {
        // BuildKit asks the session for the credentials of each registry it pulls from.
        Builder::BuildKit => Some(cache_credentials(spec, cx).await),
        Builder::Classic => None,
    };
    let stream = d.build_image(opts.build(), creds, Some(bollard::body_try_stream(body)));
    follow(stream, cx).await
}

/// A BuildKit build whose context and Dockerfile lifeos serves over its own build session
/// (`session/`), as `docker build` does: the image ID, or None when this engine or context
/// cannot have one (then the context is uploaded as a tar, and a Dockerfile that
/// `.dockerignore` excludes still lands in `COPY .`): an engine reached over TLS (bollard's
/// own client, which lifeos cannot dial), or a file name that is not UTF-8 (the session
/// protocol's paths are strings).
async fn with_session(
    d: &bollard::Docker,
    spec: &ImageSpec,
    cx: &ExecCx<'_>,
    files: &[lifeos_cache::FileMeta],
    dirs: &[String],
    labels: &HashMap<String, String>,
) -> Result<Option<String>, TaskError> {
    let root = cx.root.to_path_buf();
    let ctx_dir = root.join(&spec.context);
    let dockerfile = root.join(&spec.dockerfile);
    let dockerfile_name = dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let context = {
        let (root, ctx, files, dirs) = (
            root.clone(),
            spec.context.clone(),
            files.to_vec(),
            dirs.to_vec(),
        );
        tokio::task::spawn_blocking(move || session::Source::context(&root, &ctx, &files, &dirs))
            .await
            .map_err(|e| TaskError::Failed(e.to_string()))??
    };
    let Some(context) = context else {
        cx.log.line(
            Stream::Stderr,
            "note: a context file name is not UTF-8, which a BuildKit session cannot send: \
             the context goes as a tar upload (a `COPY .` then also copies the Dockerfile)",
        );
        return Ok(None);
    };
    let served = session::Served {
        context,
        dockerfile: session::Source::file(&dockerfile, &dockerfile_name)?,
        creds: cache_credentials(spec, cx).await,
        secrets: spec.secrets.clone(),
    };
    let id = format!("lifeos-{}-{}", cx.run_id, cx.key.short());
    let name = ctx_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The engine keeps a session's context under this key and asks the next build with the
    // same one only for the files whose metadata changed. The task's key is part of it: a
    // file whose bytes changed but whose size and times did not (package managers write
    // fixed times) must never come from an older copy. The Docker CLI keys by directory only.
    let shared_key = {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("lifeos:{}:{}", ctx_dir.display(), cx.key.to_hex()).as_bytes(),
        );
        digest
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let start = session::BuildSession::start(&id, &name, &shared_key, served);
    // The engine answers an upgrade at once when it is well (as for the key's inspects).
    let started = tokio::select! {
        r = tokio::time::timeout(crate::docker::QUICK, start) => r,
        _ = cx.cancel.cancelled() => return Err(TaskError::Interrupted),
    };
    let opened = match started {
        Ok(r) => r.map_err(TaskError::Failed)?,
        Err(_) => {
            return Err(TaskError::Environment(crate::docker::connect_error(
                "no answer to the build session within 15 s",
            )))
        }
    };
    let Some(open) = opened else {
        cx.log.line(
            Stream::Stderr,
            "note: lifeos cannot open a BuildKit session to this engine (TLS): the context \
             goes as a tar upload (a `COPY .` then also copies the Dockerfile)",
        );
        return Ok(None);
    };
    cx.log
        .progress(&format!("serving the context ({} files)", files.len()));
    // bollard starts a session of its own for every BuildKit request; this one is sent as a
    // classic build and turned into a BuildKit one naming lifeos's session on its way out.
    let opts = options(spec, cx, &dockerfile_name, labels)
        .remote("client-session")
        .version(BuilderVersion::BuilderV1);
    let client = d
        .clone()
        .with_request_modifier(move |req| with_session_query(req, &id));
    let stream = client.build_image(opts.build(), None, Some(bollard::body_full(Bytes::new())));
    let image = follow(stream, cx).await;
    drop(open);
    image.map(Some)
}

/// `req` (the build request) as a BuildKit build of session `id`: `version=2&session=<id>`.
fn with_session_query(mut req: bollard::BollardRequest, id: &str) -> bollard::BollardRequest {
    let uri = req.uri();
    if !uri.path().ends_with("/build") {
        return req;
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        if k != "version" && k != "session" {
            query.append_pair(&k, &v);
        }
    }
    query.append_pair("version", "2").append_pair("session", id);
    let mut parts = uri.clone().into_parts();
    let path = format!("{}?{}", uri.path(), query.finish());
    if let Ok(pq) = path.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(u) = http::Uri::from_parts(parts) {
            *req.uri_mut() = u;
        }
    }
    req
}

/// The build request's options shared by every way of building.
fn options(
    spec: &ImageSpec,
    cx: &ExecCx<'_>,
    dockerfile: &str,
    labels: &HashMap<String, String>,
) -> BuildImageOptionsBuilder {
    let mut build_args: HashMap<String, String> = spec.build_args.clone().into_iter().collect();
    if spec.inline_cache() {
        // The image carries its cache, so a later build's `cache_from` can use it.
        build_args.insert("BUILDKIT_INLINE_CACHE".into(), "1".into());
        opts_note(cx, spec);
    }
    let mut opts = BuildImageOptionsBuilder::default()
        .dockerfile(dockerfile)
        .labels(labels)
        .buildargs(&build_args)
        .rm(true)
        .forcerm(true);
    if let Some(t) = spec.tags.first() {
        opts = opts.t(t);
    }
    if let Some(t) = &spec.target {
        opts = opts.target(t);
    }
    if let Some(p) = &spec.platform {
        opts = opts.platform(p);
    }
    if spec.inline_cache() {
        opts = opts.cachefrom(&spec.cache_from);
    }
    opts
}

/// Follow a build's progress into the task log; the image ID.
/// The error FramedRead gives when the body ends with bytes the decoder did not take.
fn cut_at_the_end(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::IOError { .. })
        && e.to_string() == "bytes remaining on stream"
}

async fn follow(
    stream: impl futures_util::Stream<Item = Result<bollard::models::BuildInfo, bollard::errors::Error>>,
    cx: &ExecCx<'_>,
) -> Result<String, TaskError> {
    let mut stream = std::pin::pin!(stream);
    let mut image_id = None;
    let mut vertex_names: HashMap<String, String> = HashMap::new();
    // BuildKit repeats completed vertices in later status messages; report each once.
    let mut done: std::collections::HashSet<String> = Default::default();
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = cx.cancel.cancelled() => return Err(TaskError::Interrupted),
        };
        let Some(item) = item else { break };
        let info = match item {
            Ok(info) => info,
            // bollard 0.21.1's JSON-lines decoder: when a read ends between a line's "\r" and
            // "\n", the next decode sees the "\n" alone and returns nothing, and at the end of
            // the body FramedRead then reports the complete lines still buffered as "bytes
            // remaining on stream" (seen in CI after "Successfully tagged"). It can only
            // happen at the end, after the engine has named the image: the build is done.
            Err(e) if image_id.is_some() && cut_at_the_end(&e) => break,
            Err(e) => {
                let err = classify(e, "build");
                if let TaskError::Failed(m) = &err {
                    cx.log.line(Stream::Stderr, m);
                }
                return Err(match err {
                    TaskError::Failed(m) => TaskError::Failed(failure_message(&m)),
                    other => other,
                });
            }
        };
        if let Some(s) = &info.stream {
            let s = s.trim_end();
            if !s.is_empty() {
                if s.starts_with("Step ") {
                    cx.log.progress(s);
                }
                cx.log.text(Stream::Stdout, s);
            }
        }
        if let Some(s) = &info.status {
            cx.log.progress(s);
        }
        match info.aux {
            Some(BuildInfoAux::Default(id)) => image_id = id.id.or(image_id),
            Some(BuildInfoAux::BuildKit(status)) => {
                for v in status.vertexes {
                    vertex_names.insert(v.digest.clone(), v.name.clone());
                    if v.started.is_some() && v.completed.is_none() {
                        cx.log.progress(&v.name);
                    }
                    if v.completed.is_some() && done.insert(v.digest.clone()) {
                        let state = if !v.error.is_empty() {
                            format!("ERROR {}", v.error)
                        } else if v.cached {
                            "CACHED".into()
                        } else {
                            "DONE".into()
                        };
                        cx.log.line(Stream::Stdout, &format!("{} {state}", v.name));
                    }
                }
                for l in status.logs {
                    let name = vertex_names
                        .get(&l.vertex)
                        .map(String::as_str)
                        .unwrap_or("");
                    let text = String::from_utf8_lossy(&l.msg);
                    for line in text.lines() {
                        cx.log
                            .line(Stream::Stdout, &format!("{} | {line}", short_step(name)));
                    }
                }
            }
            None => {}
        }
    }
    image_id
        .ok_or_else(|| TaskError::Failed("the engine reported no image ID for the build".into()))
}

fn opts_note(cx: &ExecCx<'_>, spec: &ImageSpec) {
    cx.log.line(
        Stream::Stdout,
        &format!(
            "cache from {} (BuildKit inline cache; this build exports its own)",
            spec.cache_from.join(", ")
        ),
    );
}

/// The credentials of each `cache_from` registry, for the build session (keyed as BuildKit
/// asks: Docker Hub as `registry-1.docker.io`). A registry without any is asked anonymously;
/// a lookup that fails only costs the cache (the log says why).
async fn cache_credentials(
    spec: &ImageSpec,
    cx: &ExecCx<'_>,
) -> HashMap<String, bollard::auth::DockerCredentials> {
    let mut creds = HashMap::new();
    for r in &spec.cache_from {
        let access = crate::registry::access::Access::new(r);
        let host = access.host().to_string();
        let key = if host == "docker.io" {
            "registry-1.docker.io".to_string()
        } else {
            host.clone()
        };
        if creds.contains_key(&key) {
            continue;
        }
        match access.found().await {
            Ok(found) => {
                if let Some(c) = access.engine_creds(found) {
                    creds.insert(key, c);
                }
            }
            Err(e) => cx.log.line(
                Stream::Stderr,
                &format!("cache from {r}: no credentials for {host} ({e}); asking anonymously"),
            ),
        }
    }
    creds
}

/// `[api-builder 2/3] RUN make` → `[api-builder 2/3]`, to prefix RUN output.
fn short_step(name: &str) -> &str {
    match name.find(']') {
        Some(i) if name.starts_with('[') => &name[..=i],
        _ => name,
    }
}

/// Name the failing step first: the engine's message for BuildKit is
/// "executor failed running [/bin/sh -c …]: exit code: 3".
fn failure_message(m: &str) -> String {
    format!("image build failed: {m}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_request_becomes_a_buildkit_build_of_the_session() {
        let req = |uri: &str| {
            http::Request::post(uri)
                .body(bollard::body_full(Bytes::new()))
                .unwrap()
        };
        let out = with_session_query(
            req("/v1.41/build?dockerfile=Dockerfile&labels=%7B%22a%20b%22%3A%22c%22%7D&version=1&remote=client-session"),
            "lifeos-r-k",
        );
        let q: Vec<(String, String)> =
            url::form_urlencoded::parse(out.uri().query().unwrap().as_bytes())
                .into_owned()
                .collect();
        let get = |k: &str| {
            q.iter()
                .filter(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("version"), ["2"]);
        assert_eq!(get("session"), ["lifeos-r-k"]);
        assert_eq!(get("remote"), ["client-session"]);
        assert_eq!(get("labels"), [r#"{"a b":"c"}"#]);
        assert_eq!(out.uri().path(), "/v1.41/build");
        // Any other request passes unchanged.
        let other = with_session_query(req("/v1.41/images/x/json?version=1"), "s");
        assert_eq!(other.uri().query(), Some("version=1"));
    }

    #[test]
    fn only_a_body_cut_after_its_last_line_counts_as_the_end() {
        let cut = bollard::errors::Error::from(std::io::Error::other("bytes remaining on stream"));
        assert!(cut_at_the_end(&cut));
        let reset =
            bollard::errors::Error::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(!cut_at_the_end(&reset));
    }
}
