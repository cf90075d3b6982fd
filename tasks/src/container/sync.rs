//! A service's `sync` rules, and how `lifeos watch` applies them to its running container:
//! the changed files of one batch go in as one tar through the Engine API
//! (`PUT /containers/{id}/archive`), each entry with an explicit numeric owner and mode (the
//! engine keeps a header's uid/gid unless `copyUIDGID` is set, which lifeos never sets: its
//! user lookup has been buggy across engine versions). Deletions go through one exec of
//! `rm -rf` as root: the archive endpoint cannot delete, and the image's files are usually
//! root's while the service runs as another user.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, RestartContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use lifeos_engine::TaskError;
use serde::{Deserialize, Serialize};

use crate::docker::classify;

/// `sync = [{ from = "web", to = "/srv/www", ignore = ["dist"], run = "...", restart = true }]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncRule {
    /// Project-relative directory on the host.
    pub from: String,
    /// Absolute directory in the container.
    pub to: String,
    /// Globs relative to `from` that are never copied; a pattern without `/` matches a name
    /// at any depth (`dist`, `*.swp`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
    /// Restart the container after files of this rule were copied.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
    /// A shell command run in the container (as its user, in its workdir) after the copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// `UID:GID` of the copied files; default: the container's user (numeric, or looked up
    /// in the container's /etc/passwd), else 0:0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A rule with its ignore globs compiled.
#[derive(Debug, Clone)]
pub struct SyncMatcher {
    pub rule: SyncRule,
    /// Patterns without `/`: matched against each name of the path.
    names: GlobSet,
    /// Patterns with `/`: matched against the path and each of its parent directories.
    paths: GlobSet,
}

/// A bad ignore glob (checked when the config loads).
pub fn check_glob(p: &str) -> Result<(), String> {
    GlobBuilder::new(p.trim_matches('/'))
        .literal_separator(true)
        .build()
        .map(drop)
        .map_err(|e| e.kind().to_string())
}

impl SyncRule {
    pub fn matcher(&self) -> SyncMatcher {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in &self.ignore {
            let p = p.trim_matches('/');
            let Ok(g) = GlobBuilder::new(p).literal_separator(true).build() else {
                continue;
            };
            if p.contains('/') {
                paths.add(g);
            } else {
                names.add(g);
            }
        }
        SyncMatcher {
            rule: self.clone(),
            names: names.build().unwrap_or_else(|_| GlobSet::empty()),
            paths: paths.build().unwrap_or_else(|_| GlobSet::empty()),
        }
    }

    /// The numeric owner this rule sets, if it names one (`UID:GID` or `UID`).
    pub fn numeric_owner(&self) -> Option<(u64, u64)> {
        self.owner.as_deref().and_then(parse_numeric_user)
    }
}

/// `1000:1000` → (1000, 1000); `1000` → (1000, 1000). Names are not numeric.
pub fn parse_numeric_user(s: &str) -> Option<(u64, u64)> {
    match s.split_once(':') {
        Some((u, g)) => Some((u.parse().ok()?, g.parse().ok()?)),
        None => {
            let u = s.parse().ok()?;
            Some((u, u))
        }
    }
}

impl SyncMatcher {
    /// The path below `from` of a project-relative path this rule copies (None: outside
    /// `from`, or ignored).
    pub fn sub<'a>(&self, rel: &'a str) -> Option<&'a str> {
        let from = self.rule.from.as_str();
        let sub = if from.is_empty() {
            rel
        } else {
            rel.strip_prefix(from)?.strip_prefix('/')?
        };
        (!sub.is_empty() && !self.ignored(sub)).then_some(sub)
    }

    /// Is this path (relative to `from`, a file or a directory) ignored?
    pub fn ignored(&self, sub: &str) -> bool {
        if sub.split('/').any(|name| self.names.is_match(name)) {
            return true;
        }
        if self.paths.is_empty() {
            return false;
        }
        sub.match_indices('/')
            .map(|(i, _)| i)
            .chain(std::iter::once(sub.len()))
            .any(|i| self.paths.is_match(&sub[..i]))
    }

    /// The container path of a path below `from`.
    pub fn target(&self, sub: &str) -> String {
        format!("{}/{sub}", self.rule.to.trim_end_matches('/'))
    }
}

/// One file to write into the container.
#[derive(Debug, Clone)]
pub struct Upsert {
    /// Absolute path in the container.
    pub path: String,
    /// Where its content is on the host.
    pub host: PathBuf,
    pub mode: u32,
}

/// What one batch does to one container: deletions first (a directory may become a file),
/// then one archive with the new directories and files.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub deletes: Vec<String>,
    pub dirs: Vec<String>,
    pub files: Vec<Upsert>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.dirs.is_empty() && self.files.is_empty()
    }
}

/// Apply one batch to a container, with every copied entry owned by `owner` (uid, gid).
pub async fn apply(
    d: &bollard::Docker,
    id: &str,
    owner: (u64, u64),
    changes: &Changes,
) -> Result<(), TaskError> {
    delete(d, id, &changes.deletes).await?;
    if changes.dirs.is_empty() && changes.files.is_empty() {
        return Ok(());
    }
    let packed = pack(owner, changes).await?;
    upload(d, id, packed.tar).await
}

/// `rm -rf` the paths through one exec as root (the archive endpoint cannot delete).
pub async fn delete(d: &bollard::Docker, id: &str, paths: &[String]) -> Result<(), TaskError> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut argv = vec!["rm".to_string(), "-rf".into(), "--".into()];
    argv.extend(paths.iter().cloned());
    let (code, out) = exec(d, id, argv, Some("0:0"), None).await?;
    if code != 0 {
        return Err(TaskError::Failed(format!(
            "deleting {} path(s) in the container failed (exit {code}): {}",
            paths.len(),
            out.trim()
        )));
    }
    Ok(())
}

/// `PUT /containers/{id}/archive` of a batch's tar at `/`.
pub async fn upload(d: &bollard::Docker, id: &str, tar: Vec<u8>) -> Result<(), TaskError> {
    d.upload_to_container(
        id,
        Some(UploadToContainerOptionsBuilder::default().path("/").build()),
        bollard::body_full(tar.into()),
    )
    .await
    .map_err(|e| classify(e, "copy synced files into the container"))
}

/// The tar of one batch, and the container paths of the symlinks in it.
pub struct Packed {
    pub tar: Vec<u8>,
    pub links: Vec<String>,
}

/// The tar of a batch's directories and files (read from the host off the async threads).
pub async fn pack(owner: (u64, u64), changes: &Changes) -> Result<Packed, TaskError> {
    let (dirs, files) = (changes.dirs.clone(), changes.files.clone());
    let packed = tokio::task::spawn_blocking(move || archive(owner, &dirs, &files))
        .await
        .map_err(|e| TaskError::Failed(format!("making the sync archive panicked: {e}")))??;
    Ok(packed)
}

/// The tar of one batch: paths relative to `/`, mtime now (tools in the container that
/// watch mtimes see the change), explicit uid/gid and mode.
fn archive(owner: (u64, u64), dirs: &[String], files: &[Upsert]) -> std::io::Result<Packed> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut b = tar::Builder::new(Vec::new());
    let mut links = Vec::new();
    for dir in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o755);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(now);
        b.append_data(
            &mut h,
            format!("{}/", dir.trim_start_matches('/')),
            std::io::empty(),
        )?;
    }
    for f in files {
        let meta = std::fs::symlink_metadata(&f.host)?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(f.mode & 0o7777);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(now);
        let path = f.path.trim_start_matches('/');
        if meta.file_type().is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, path, std::fs::read_link(&f.host)?)?;
            links.push(f.path.clone());
        } else {
            let data = std::fs::read(&f.host)?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, path, &data[..])?;
        }
    }
    Ok(Packed {
        tar: b.into_inner()?,
        links,
    })
}

/// Run `argv` in the container (as `user`, default the container's; in `workdir`, default
/// the container's): exit code and output.
pub async fn exec(
    d: &bollard::Docker,
    id: &str,
    argv: Vec<String>,
    user: Option<&str>,
    workdir: Option<&str>,
) -> Result<(i64, String), TaskError> {
    super::ops::exec_in(d, id, argv, user, workdir, "exec in the container").await
}

/// Restart the container (its writable layer, with the synced files, stays).
pub async fn restart(d: &bollard::Docker, id: &str) -> Result<(), TaskError> {
    d.restart_container(
        id,
        Some(RestartContainerOptionsBuilder::default().t(5).build()),
    )
    .await
    .map_err(|e| classify(e, "restart the container"))
}

/// The owner synced files get in this container: its `User` as numbers, a name looked up in
/// its own /etc/passwd (read through the archive endpoint: no exec, no tools needed), else
/// root.
pub async fn container_owner(d: &bollard::Docker, id: &str) -> Result<(u64, u64), TaskError> {
    let info = d
        .inspect_container(id, None)
        .await
        .map_err(|e| classify(e, "inspect container"))?;
    let user = info.config.and_then(|c| c.user).unwrap_or_default();
    if user.is_empty() {
        return Ok((0, 0));
    }
    if let Some(n) = parse_numeric_user(&user) {
        // `USER 1000` alone: the group is the user's primary group, else 0.
        if !user.contains(':') {
            let gid = passwd_entry(d, id, &user).await.map(|(_, g)| g);
            return Ok((n.0, gid.unwrap_or(0)));
        }
        return Ok(n);
    }
    let (name, group) = match user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (user.clone(), None),
    };
    let Some((uid, gid)) = passwd_entry(d, id, &name).await else {
        return Err(TaskError::Failed(format!(
            "the container's user `{name}` is not in its /etc/passwd; set `owner = \"UID:GID\"` in the sync rule"
        )));
    };
    let gid = match group {
        Some(g) => g.parse().unwrap_or(gid),
        None => gid,
    };
    Ok((uid, gid))
}

/// (uid, gid) of a user (by name or uid) in the container's /etc/passwd.
async fn passwd_entry(d: &bollard::Docker, id: &str, user: &str) -> Option<(u64, u64)> {
    let files = read_tree(d, id, "/etc/passwd").await.ok()?;
    let (_, content) = files.into_iter().next()?;
    let text = String::from_utf8_lossy(&content.data).into_owned();
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && (f[0] == user || f[2] == user))
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

/// A file read back from a container.
#[derive(Debug, Clone)]
pub struct Read {
    pub data: Vec<u8>,
    pub mode: u32,
    pub symlink: bool,
}

/// Every file under `dir` in the container (paths relative to `dir`; a file `dir` is keyed
/// by its own name), or an empty map when `dir` does not exist.
pub async fn read_tree(
    d: &bollard::Docker,
    id: &str,
    dir: &str,
) -> Result<BTreeMap<String, Read>, TaskError> {
    let mut s = d.download_from_container(
        id,
        Some(
            DownloadFromContainerOptionsBuilder::default()
                .path(dir)
                .build(),
        ),
    );
    let mut bytes = Vec::new();
    while let Some(chunk) = s.next().await {
        match chunk {
            Ok(b) => bytes.extend_from_slice(&b),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(BTreeMap::new()),
            Err(e) => return Err(classify(e, &format!("read {dir} in the container"))),
        }
    }
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(&bytes[..]);
    for entry in a.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if !kind.is_file() && !kind.is_symlink() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().into_owned();
        // The archive's first component is `dir`'s own name.
        let rel = match path.split_once('/') {
            Some((_, rest)) => rest.to_string(),
            None => path.clone(),
        };
        let mode = entry.header().mode().unwrap_or(0);
        let mut data = Vec::new();
        let symlink = kind.is_symlink();
        if symlink {
            if let Ok(Some(t)) = entry.link_name() {
                data = t.to_string_lossy().into_owned().into_bytes();
            }
        } else {
            std::io::Read::read_to_end(&mut entry, &mut data)?;
        }
        out.insert(
            rel,
            Read {
                data,
                mode,
                symlink,
            },
        );
    }
    Ok(out)
}

/// What a container did, as `lifeos watch` needs it.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A container of the project started, died or was removed: re-inspect it.
    Container { task: String, action: String },
    /// The event stream broke (engine restart, socket closed); events may have been lost.
    Lost(String),
    /// The stream is back after a [`EngineEvent::Lost`].
    Reconnected,
}

/// The project's container events, reconnecting (every second) when the stream breaks.
pub fn events(
    docker: crate::docker::Docker,
    project: String,
) -> tokio::sync::mpsc::UnboundedReceiver<EngineEvent> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lost = false;
        loop {
            if tx.is_closed() {
                return;
            }
            let Ok(d) = docker.connected().await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            let filters = std::collections::HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                (
                    "label".to_string(),
                    vec![format!("{}={project}", super::PROJECT_LABEL)],
                ),
                (
                    "event".to_string(),
                    vec!["start".into(), "die".into(), "destroy".into()],
                ),
            ]);
            let mut s = d.events(Some(
                bollard::query_parameters::EventsOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ));
            let mut announced = !lost;
            loop {
                let next = tokio::time::timeout(Duration::from_secs(2), s.next()).await;
                let item = match next {
                    // Quiet: is the engine still there? A ping tells a dead socket apart.
                    Err(_) => {
                        if d.ping().await.is_err() {
                            break;
                        }
                        if !announced {
                            announced = true;
                            lost = false;
                            let _ = tx.send(EngineEvent::Reconnected);
                        }
                        continue;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        // Said once per outage, not at each retry.
                        if !lost {
                            let _ = tx.send(EngineEvent::Lost(e.to_string()));
                        }
                        lost = true;
                        break;
                    }
                    Ok(Some(Ok(m))) => m,
                };
                if !announced {
                    announced = true;
                    lost = false;
                    let _ = tx.send(EngineEvent::Reconnected);
                }
                let attrs = item.actor.and_then(|a| a.attributes).unwrap_or_default();
                let Some(task) = attrs.get(super::TASK_LABEL).cloned() else {
                    continue;
                };
                let action = item.action.unwrap_or_default();
                if tx.send(EngineEvent::Container { task, action }).is_err() {
                    return;
                }
            }
            if !lost {
                let _ = tx.send(EngineEvent::Lost("the event stream ended".into()));
                lost = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(from: &str, ignore: &[&str]) -> SyncMatcher {
        SyncRule {
            from: from.into(),
            to: "/srv/www/".into(),
            ignore: ignore.iter().map(|s| s.to_string()).collect(),
            restart: false,
            run: None,
            owner: None,
        }
        .matcher()
    }

    #[test]
    fn paths_map_below_from_and_ignores_apply_at_any_depth() {
        let m = rule("web", &["dist", "*.swp", "assets/tmp"]);
        assert_eq!(m.sub("web/index.html"), Some("index.html"));
        assert_eq!(m.target("a/b.css"), "/srv/www/a/b.css");
        assert_eq!(m.sub("webx/index.html"), None);
        assert_eq!(m.sub("web"), None);
        assert_eq!(m.sub("web/dist/app.js"), None);
        assert_eq!(m.sub("web/x/dist/app.js"), None);
        assert_eq!(m.sub("web/.index.html.swp"), None);
        assert_eq!(m.sub("web/assets/tmp/a"), None);
        assert_eq!(m.sub("web/assets/tmpx/a"), Some("assets/tmpx/a"));
        assert!(rule("", &[]).sub("x/y").is_some());
    }

    #[test]
    fn owners_parse_as_numbers_only() {
        assert_eq!(parse_numeric_user("65534:65534"), Some((65534, 65534)));
        assert_eq!(parse_numeric_user("1000"), Some((1000, 1000)));
        assert_eq!(parse_numeric_user("node"), None);
        assert_eq!(parse_numeric_user("1000:staff"), None);
    }

    #[test]
    fn the_archive_carries_owner_and_mode() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("run.sh");
        std::fs::write(&f, "echo hi").unwrap();
        let tar = archive(
            (65534, 65533),
            &["/srv/www/new".into()],
            &[Upsert {
                path: "/srv/www/new/run.sh".into(),
                host: f,
                mode: 0o755,
            }],
        )
        .unwrap()
        .tar;
        let mut a = tar::Archive::new(&tar[..]);
        let got: Vec<(String, u64, u64, u32)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("srv/www/new/".to_string(), 65534, 65533, 0o755),
                ("srv/www/new/run.sh".to_string(), 65534, 65533, 0o755)
            ]
        );
    }
}
