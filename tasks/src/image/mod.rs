//! `image`: a Dockerfile target built through the Engine API.
//!
//! Key: the Dockerfile, the build args, labels, target, builder, platform, the image ID of
//! every external base, and only the context files the target's own stages can read.
//! Proof of a result: an image labelled `lifeos.key=<key>` in the engine.

pub mod build;
pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod go_path;
pub mod ignore_walk;
mod kind;
#[cfg(test)]
mod robustness;
pub mod session;
pub mod solve;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::query_parameters::{ListImagesOptionsBuilder, TagImageOptionsBuilder};
use lifeos_engine::{ExecCx, Executed, KeyCx, Probe, ProbeCx, Task, TaskError, TaskInputs};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::docker::{classify, Docker, ImageFacts};
pub use kind::{ImageKind, ImageResult};

pub use crate::docker::KEY_LABEL;

/// Below this many files in the stat cache, context keying stays on the runtime's thread.
const INLINE_FILES: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Builder {
    BuildKit,
    Classic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageSpec {
    /// Project-relative; "" is the project root.
    pub context: String,
    /// Project-relative; may lie outside the context.
    pub dockerfile: String,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Full references (`name:tag`). Not part of the key: retagging needs no build.
    pub tags: Vec<String>,
    pub platform: Option<String>,
    pub builder: Builder,
    /// The task's declared secrets: BuildKit secret ids (`RUN --mount=type=secret,id=NAME`).
    /// Not part of the key's config: the engine keys secrets (by a hash of their values).
    pub secrets: Vec<String>,
    /// A repository whose key tags (`key-<key prefix>`, what a push leaves) are pulled
    /// rather than built when the image is missing here. Not part of the key: where an
    /// image comes from does not change it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_cache: Option<String>,
    /// Push a built image to `registry_cache` under its key tag (`[cache] images`; a
    /// per-image `registry_cache` is filled by the image's push task).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fill_registry_cache: bool,
    /// BuildKit: images whose inline cache the build may reuse (`--cache-from`). The build
    /// then exports its own inline cache (`BUILDKIT_INLINE_CACHE=1`) for the next one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
}

/// What an image's key covers of its spec: not the tags (retagging needs no build) nor the
/// secret names (the engine keys secrets by their values).
#[derive(Serialize)]
pub struct ImageKey<'a> {
    context: &'a str,
    dockerfile: &'a str,
    target: &'a Option<String>,
    build_args: &'a BTreeMap<String, String>,
    labels: &'a BTreeMap<String, String>,
    platform: &'a Option<String>,
    builder: Builder,
    /// The image config carries BuildKit's inline cache (not where it may come from: a
    /// cache source changes no layer).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    inline_cache: bool,
}

impl ImageSpec {
    pub fn key(&self) -> ImageKey<'_> {
        ImageKey {
            context: &self.context,
            dockerfile: &self.dockerfile,
            target: &self.target,
            build_args: &self.build_args,
            labels: &self.labels,
            platform: &self.platform,
            builder: self.builder,
            inline_cache: self.inline_cache(),
        }
    }

    /// Does the build export BuildKit's inline cache (with `cache_from`)?
    pub fn inline_cache(&self) -> bool {
        self.builder == Builder::BuildKit && !self.cache_from.is_empty()
    }

    /// The Dockerfile's path inside the context, when it is inside.
    pub fn dockerfile_in_context(&self) -> Option<String> {
        if self.context.is_empty() {
            return Some(self.dockerfile.clone());
        }
        self.dockerfile
            .strip_prefix(&self.context)
            .and_then(|r| r.strip_prefix('/'))
            .map(str::to_owned)
    }
}

type Inspected = Result<Option<ImageFacts>, TaskError>;

/// The Dockerfile planned for the target, and the context's `.dockerignore` rules.
pub struct Parsed {
    pub plan: dockerfile::TargetPlan,
    pub rules: dockerignore::DockerIgnore,
}

/// [`Parsed`] (or why not) and the bytes it was made from: `check` and `inputs` (and the
/// build) read the two files each time, but parse and plan them once while they stay the same
/// (an earlier task may rewrite them between `check` and `inputs`).
struct ParseMemo {
    dockerfile: Vec<u8>,
    ignore: Result<(std::path::PathBuf, Option<Vec<u8>>), String>,
    parsed: Result<Arc<Parsed>, String>,
}

pub struct ImageTask {
    pub spec: ImageSpec,
    docker: Docker,
    /// The last record's image, inspected by `inputs` for `probe`: (image ID, answer).
    prefetched: Mutex<Option<(String, Inspected)>>,
    parsed: Mutex<Option<ParseMemo>>,
    cache: Option<crate::registry::cache::ImageCache>,
}

impl ImageTask {
    pub fn new(spec: ImageSpec, docker: Docker) -> Self {
        Self {
            cache: spec
                .registry_cache
                .as_deref()
                .map(crate::registry::cache::ImageCache::new),
            spec,
            docker,
            prefetched: Default::default(),
            parsed: Default::default(),
        }
    }

    /// The Dockerfile parsed and planned for the target (Docker reads it as bytes: invalid
    /// UTF-8 is no error), and the context's `.dockerignore` rules.
    fn parsed(&self, root: &std::path::Path) -> Result<Arc<Parsed>, String> {
        let spec = &self.spec;
        let dockerfile = std::fs::read(root.join(&spec.dockerfile))
            .map_err(|e| format!("cannot read {}: {e}", spec.dockerfile))?;
        let ignore = context::read_ignore_file(root, spec);
        let mut memo = self.parsed.lock().unwrap();
        if let Some(m) = memo.as_ref() {
            if m.dockerfile == dockerfile && m.ignore == ignore {
                return m.parsed.clone();
            }
        }
        let parsed = (|| -> Result<Arc<Parsed>, String> {
            let text = String::from_utf8_lossy(&dockerfile);
            let df = dockerfile::parse(&text).map_err(|e| format!("{}: {e}", spec.dockerfile))?;
            let buildkit = spec.builder == Builder::BuildKit;
            let opts = dockerfile::PlanOptions {
                arg_beats_image_env: buildkit,
                target_platform: spec
                    .platform
                    .as_deref()
                    .filter(|_| buildkit)
                    .and_then(dockerfile::KnownPlatform::parse),
            };
            let plan = df
                .plan_with(spec.target.as_deref(), &spec.build_args, opts)
                .map_err(|e| format!("{}: {e}", spec.dockerfile))?;
            let (path, bytes) = ignore.clone()?;
            let rules = context::parse_ignore_rules(&path, bytes.as_deref(), spec)?;
            Ok(Arc::new(Parsed { plan, rules }))
        })();
        *memo = Some(ParseMemo {
            dockerfile,
            ignore,
            parsed: parsed.clone(),
        });
        parsed
    }

    /// The image pulled from the registry cache and tagged, when the cache has this key.
    /// A registry that refuses or fails costs only the shortcut: the image is built.
    async fn pull_from_cache(
        &self,
        d: &bollard::Docker,
        cx: &ExecCx<'_>,
    ) -> Result<Option<String>, TaskError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        if cx.forced {
            // `--force` asks for a build: a pull would hand back the very image it distrusts.
            cx.log.line(
                lifeos_engine::Stream::Stdout,
                &format!(
                    "forced: building (registry cache {} not asked)",
                    cache.repository()
                ),
            );
            return Ok(None);
        }
        let key = cx.key.to_hex();
        match cache.fetch(&self.docker, &key, &cx.log, &cx.cancel).await {
            Ok(Some((id, reference))) => {
                self.ensure_tags(d, &id, &[]).await?;
                if !self.spec.tags.contains(&reference) {
                    crate::registry::cache::untag(d, &reference).await;
                    self.docker.forget(&reference, &id);
                }
                Ok(Some(id))
            }
            Ok(None) => Ok(None),
            Err(TaskError::Interrupted) => Err(TaskError::Interrupted),
            Err(e) => {
                cx.log.line(
                    lifeos_engine::Stream::Stderr,
                    &format!("registry cache {}: {e}; building", cache.repository()),
                );
                Ok(None)
            }
        }
    }

    /// `[cache] images`: the built image goes to the registry under its key tag. A registry
    /// that refuses or fails costs only the sharing: the build stands.
    async fn fill_cache(&self, id: &str, cx: &ExecCx<'_>) -> Result<(), TaskError> {
        let Some(cache) = self
            .cache
            .as_ref()
            .filter(|_| self.spec.fill_registry_cache)
        else {
            return Ok(());
        };
        match cache
            .store(&self.docker, id, &cx.key.to_hex(), &cx.log, &cx.cancel)
            .await
        {
            Err(TaskError::Interrupted) => Err(TaskError::Interrupted),
            Err(e) => {
                cx.log.line(
                    lifeos_engine::Stream::Stderr,
                    &format!(
                        "registry cache {}: not stored ({e}); the build stands",
                        cache.repository()
                    ),
                );
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// Make every configured tag point at `id`.
    async fn ensure_tags(
        &self,
        d: &bollard::Docker,
        id: &str,
        have: &[String],
    ) -> Result<(), TaskError> {
        for tag in &self.spec.tags {
            if have.contains(tag) {
                continue;
            }
            let (repo, t) = split_tag(tag);
            d.tag_image(
                id,
                Some(TagImageOptionsBuilder::default().repo(repo).tag(t).build()),
            )
            .await
            .map_err(|e| classify(e, &format!("tag {tag}")))?;
            self.docker.forget(tag, id);
        }
        Ok(())
    }
}

/// The image a record names (what `execute` wrote into its data).
fn image_id(record: &lifeos_cache::ActionRecord) -> Option<&str> {
    record.data.get("image_id").and_then(|v| v.as_str())
}

/// The context files the target's stages read, plus the Dockerfile, with their digests (and
/// mode: a `COPY` keeps it), from the stat cache where it can. A narrowing that needs
/// something of the base images is not applied here (see [`narrow_after_check`]); the second
/// value says whether it may be: no file read is a symlink.
fn context_digests(
    snap: &lifeos_cache::Snapshot,
    spec: &ImageSpec,
    parsed: &Parsed,
) -> Result<(BTreeMap<String, String>, bool), TaskError> {
    let plan = &parsed.plan;
    let buildkit = spec.builder == Builder::BuildKit;
    let sent = context::files(snap, &spec.context, &parsed.rules, buildkit)?;
    let mut read: Vec<_> = sent
        .files
        .into_iter()
        .filter(|f| plan.context.reads(context::ctx_rel(&spec.context, &f.rel)))
        .collect();
    // Fewer reads where the target copies only some paths of a stage, unless a link may
    // alias one path to another.
    let any_symlink = read.iter().any(|f| f.symlink);
    let reads = plan.key_context(any_symlink, false);
    read.retain(|f| reads.reads(context::ctx_rel(&spec.context, &f.rel)));
    // The Dockerfile is always an input, inside the context or not.
    if !read.iter().any(|f| f.rel == spec.dockerfile) {
        read.extend(snap.walk(&spec.dockerfile)?.iter().cloned());
    }
    // A directory without files still lands in the image where the target copies it.
    let bare_dirs: Vec<String> = sent
        .bare_dirs
        .into_iter()
        .filter(|d| reads.reads(context::ctx_rel(&spec.context, d)))
        .collect();
    let digests = snap.digests(&read)?;
    let files = read
        .into_iter()
        .zip(digests)
        .map(|(f, d)| {
            let v = if f.symlink {
                format!("{d}@")
            } else {
                format!("{d}:{:o}", f.mode & 0o777)
            };
            (f.rel, v)
        })
        .chain(
            bare_dirs
                .into_iter()
                .map(|d| (format!("{d}/"), "dir".to_string())),
        )
        .collect();
    Ok((files, !any_symlink))
}

/// The narrowing that needed the base images checked, once they were found to meet it:
/// the Dockerfile, and what the narrowed reads cover (as [`context_digests`] would keep).
fn narrow_after_check(files: &mut BTreeMap<String, String>, spec: &ImageSpec, parsed: &Parsed) {
    let reads = parsed.plan.key_context(false, true);
    files.retain(|rel, _| {
        let path = rel.strip_suffix('/').unwrap_or(rel);
        rel == &spec.dockerfile || reads.reads(context::ctx_rel(&spec.context, path))
    });
}

/// `host:5000/a/b:tag` → (`host:5000/a/b`, `tag`).
pub fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    }
}

#[async_trait]
impl Task for ImageTask {
    fn kind(&self) -> &'static str {
        "image"
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(self.spec.key()).expect("image spec serializes")
    }

    fn check(&self, root: &std::path::Path) -> Result<(), String> {
        self.parsed(root).map(drop)
    }

    fn watch_paths(&self) -> Vec<String> {
        vec![self.spec.context.clone(), self.spec.dockerfile.clone()]
    }

    fn watch_reads(&self, root: &std::path::Path, rel: &str) -> bool {
        let spec = &self.spec;
        if rel == spec.dockerfile {
            return true;
        }
        let ctx = &spec.context;
        if !(ctx.is_empty() || lifeos_cache::names::is_under(rel, ctx)) {
            return false;
        }
        let Ok(parsed) = self.parsed(root) else {
            return true;
        };
        let r = context::ctx_rel(ctx, rel);
        // `.dockerignore` itself decides what is sent.
        r == ".dockerignore" || (parsed.plan.context.reads(r) && !parsed.rules.is_excluded(r))
    }

    fn watch_skips(&self, root: &std::path::Path, rel_dir: &str) -> bool {
        let ctx = &self.spec.context;
        let inside = ctx.is_empty() || lifeos_cache::names::is_under(rel_dir, ctx);
        let Ok(parsed) = self.parsed(root) else {
            return false;
        };
        // An exception (`!pattern`) may bring files back from inside an excluded directory.
        inside
            && !parsed.rules.patterns().iter().any(|p| p.negated())
            && parsed.rules.is_excluded(context::ctx_rel(ctx, rel_dir))
    }

    fn result(&self, data: &serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        let r = ImageResult {
            id: data["image_id"].as_str().unwrap_or_default().to_string(),
            reference: self.spec.tags.first().cloned().unwrap_or_default(),
        };
        match serde_json::to_value(r) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => Default::default(),
        }
    }

    fn describe(&self) -> String {
        let target = self
            .spec
            .target
            .as_deref()
            .map(|t| format!(" --target {t}"))
            .unwrap_or_default();
        format!("image {}{target}", self.spec.tags.join(", "))
    }

    async fn inputs(&self, cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        // The Dockerfile first (one small file): it names the bases. Then three things at
        // once: the bases' image IDs, the image the last record names (which `probe` will
        // check), and the context's digests. A no-op pays one engine round trip, or none.
        let spec = &self.spec;
        let parsed = self.parsed(&cx.root).map_err(TaskError::Failed)?;
        let bases = parsed.plan.bases.clone();
        // A small tree the stat cache knows is keyed sooner on this thread than it takes to
        // start a blocking thread. It yields first, so that an engine call below can go out
        // (the runtime only writes it when it next turns) and be answered meanwhile.
        let inline = (1..INLINE_FILES).contains(&cx.snapshot.known_files());
        let hashing = async {
            if inline {
                tokio::task::yield_now().await;
                context_digests(&cx.snapshot, spec, &parsed)
            } else {
                let (snap, spec, parsed) = (cx.snapshot.clone(), spec.clone(), parsed.clone());
                tokio::task::spawn_blocking(move || context_digests(&snap, &spec, &parsed))
                    .await
                    .map_err(|e| TaskError::Failed(e.to_string()))?
            }
        };
        let previous = cx.previous.and_then(image_id).map(str::to_owned);
        let docker_calls = async {
            if bases.is_empty() && previous.is_none() {
                return Ok::<_, TaskError>((BTreeMap::new(), true));
            }
            let base_ids =
                futures_util::future::join_all(bases.iter().map(|b| self.docker.base_id(b)));
            let prefetch = async {
                match &previous {
                    Some(id) => Some(self.docker.image(id).await),
                    None => None,
                }
            };
            let (base_ids, prefetched) = tokio::join!(base_ids, prefetch);
            if let (Some(id), Some(result)) = (previous, prefetched) {
                *self.prefetched.lock().unwrap() = Some((id, result));
            }
            let mut extras = BTreeMap::new();
            for (base, id) in bases.iter().zip(base_ids) {
                extras.insert(format!("base image {base}"), id?);
            }
            // A narrowing that relies on base images having no symlinks where it copies:
            // asked once their IDs are known (a no-op reads one small file per such image).
            let mut checked = true;
            for (base, paths) in &parsed.plan.narrow_needs {
                let id = &extras[&format!("base image {base}")];
                if !self.docker.free_of_links(id, paths).await {
                    checked = false;
                    break;
                }
            }
            Ok((extras, checked))
        };
        let (called, files) = tokio::join!(docker_calls, hashing);
        let (extras, checked) = called?;
        let (mut files, no_symlink) = files?;
        if checked && no_symlink && !parsed.plan.narrow_needs.is_empty() {
            narrow_after_check(&mut files, spec, &parsed);
        }
        Ok(TaskInputs { files, extras })
    }

    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let key = cx.key.to_hex();
        // The recorded image first: one inspect, and it is the image lifeos built.
        let recorded = cx.record.and_then(image_id);
        let mut found = None;
        if let Some(id) = recorded {
            // Fetched while the key was computed, when the record's image is this one.
            let prefetched = self
                .prefetched
                .lock()
                .unwrap()
                .take()
                .filter(|(p, _)| p == id)
                .map(|(_, r)| r);
            let inspected = match prefetched {
                Some(r) => r,
                None => self.docker.image(id).await,
            };
            if let Some(img) = inspected? {
                if img.key.as_deref() == Some(key.as_str()) {
                    found = Some((id.to_string(), img.tags));
                }
            }
        }
        if found.is_none() {
            let d = self.docker.connected().await?;
            let filters =
                HashMap::from([("label".to_string(), vec![format!("{KEY_LABEL}={key}")])]);
            let images = d
                .list_images(Some(
                    ListImagesOptionsBuilder::default()
                        .filters(&filters)
                        .build(),
                ))
                .await
                .map_err(|e| classify(e, "list images"))?;
            // Images built FROM this one inherit its labels, and are always newer: the
            // oldest match is the one lifeos built. The list's `Created` is in whole
            // seconds, and a child built in the same second as its parent ties with it, so
            // several matches are told apart by the inspected, nanosecond `Created` (and
            // then by layer count: a child has at least its parent's layers).
            found = if images.len() <= 1 {
                images.into_iter().next().map(|i| (i.id, i.repo_tags))
            } else {
                let mut oldest = None;
                for i in images {
                    let img = match d.inspect_image(&i.id).await {
                        Ok(img) => img,
                        // Removed since the list: not a candidate.
                        Err(bollard::errors::Error::DockerResponseServerError {
                            status_code: 404,
                            ..
                        }) => continue,
                        Err(e) => return Err(classify(e, "inspect image")),
                    };
                    let layers = img
                        .root_fs
                        .as_ref()
                        .and_then(|r| r.layers.as_ref())
                        .map_or(0, Vec::len);
                    let order = (img.created, layers, i.id.clone());
                    if oldest.as_ref().is_none_or(|(o, _)| order < *o) {
                        oldest = Some((order, (i.id, i.repo_tags)));
                    }
                }
                oldest.map(|(_, found)| found)
            };
        }
        let Some((id, tags)) = found else {
            return Ok(Probe::Missing("image missing".into()));
        };
        if !cx.dry_run && self.spec.tags.iter().any(|t| !tags.contains(t)) {
            let d = self.docker.connected().await?;
            self.ensure_tags(&d, &id, &tags).await?;
        }
        let short = id
            .trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>();
        let location = format!("image {short} ({})", self.spec.tags.join(", "));
        if recorded == Some(id.as_str()) {
            return Ok(Probe::Fresh(location));
        }
        // Found by its label: the record names it from now on, so the next no-op is one
        // look-up rather than a search of every image.
        Ok(Probe::FreshAt {
            location,
            data: json!({ "image_id": id, "tags": self.spec.tags }),
        })
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let d = self.docker.get().await?;
        let parsed = self.parsed(cx.root).map_err(TaskError::Failed)?;
        if let Some(id) = self.pull_from_cache(&d, cx).await? {
            return Ok(Executed {
                outputs: vec![],
                data: json!({ "image_id": id, "tags": self.spec.tags }),
            });
        }
        let id = build::build(&d, &self.spec, parsed, cx).await?;
        self.ensure_tags(&d, &id, &[]).await?;
        self.fill_cache(&id, cx).await?;
        Ok(Executed {
            outputs: vec![],
            data: json!({ "image_id": id, "tags": self.spec.tags }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_made_once_and_again_when_its_files_change() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY a /a\n").unwrap();
        let spec = ImageSpec {
            context: String::new(),
            dockerfile: "Dockerfile".into(),
            target: None,
            build_args: Default::default(),
            labels: Default::default(),
            tags: vec![],
            platform: None,
            builder: Builder::BuildKit,
            secrets: vec![],
            registry_cache: None,
            fill_registry_cache: false,
            cache_from: vec![],
        };
        let task = ImageTask::new(spec, Docker::default());
        task.check(root).unwrap();
        let first = task.parsed(root).unwrap();
        assert!(Arc::ptr_eq(&first, &task.parsed(root).unwrap()));
        assert!(first.plan.context.reads("a") && !first.plan.context.reads("b"));
        // An earlier task may rewrite the Dockerfile or `.dockerignore`.
        std::fs::write(root.join("Dockerfile"), "FROM scratch\nCOPY b /b\n").unwrap();
        let second = task.parsed(root).unwrap();
        assert!(second.plan.context.reads("b") && !second.plan.context.reads("a"));
        std::fs::write(root.join(".dockerignore"), "b\n").unwrap();
        assert!(task.parsed(root).unwrap().rules.is_excluded("b"));
        std::fs::write(root.join("Dockerfile"), "FROM scratch\nBOGUS\n").unwrap();
        assert!(task.check(root).is_err() && task.check(root).is_err());
    }

    #[test]
    fn tags_split_at_the_last_colon_outside_the_host() {
        assert_eq!(split_tag("web:1"), ("web", "1"));
        assert_eq!(
            split_tag("127.0.0.1:5000/a/web"),
            ("127.0.0.1:5000/a/web", "latest")
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/a/web:v2"),
            ("127.0.0.1:5000/a/web", "v2")
        );
    }
}
