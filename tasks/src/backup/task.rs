//! The backup node: dump, verify, rename, prune, upload. Its result is proven restorable
//! (read back in full, row counts matching the snapshot's) before the `.dump` name exists.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use lifeos_engine::{
    ExecCx, Executed, KeyCx, LogSink, Probe, ProbeCx, Stream, Task, TaskError, TaskInputs,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::conn::Conn;
use super::oneshot::{Client, Ended};
use super::retention::{self, Keep};
use super::sidecar::{self, Sha256, Sidecar};
use super::{gcs, http, scripts};
use crate::container::{ops, ContainerSpec, ServiceResult};
use crate::docker::Docker;

/// Where the database is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Database {
    /// A service task of the graph that runs Postgres (a dependency).
    Service(String),
    /// A connection URL: the value of this secret (a host environment variable).
    UrlSecret(String),
}

/// The compiled `backup` task: everything the node and the backup commands need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub project: String,
    pub task: String,
    pub database: Database,
    /// The database's name in the server (a service's; a URL names its own).
    pub dbname: String,
    pub user: String,
    /// The server's port on the project network.
    pub port: u16,
    /// Client image; none: the database service's own (client and server versions match).
    pub image: Option<String>,
    /// Project-relative, or absolute.
    pub dir: String,
    pub keep: Keep,
    pub upload: Option<String>,
}

pub struct BackupTask {
    pub s: Settings,
    /// The database service's spec (network, image, labels); for a URL, the task's own.
    pub db: ContainerSpec,
    docker: Docker,
    /// What `writes` answers: the backup directory when it is in the project.
    writes: Vec<String>,
}

/// What a finished backup leaves in its record (and gives its dependants).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupResult {
    pub file: String,
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<String>,
}

impl BackupTask {
    pub fn new(s: Settings, db: ContainerSpec, docker: Docker) -> Self {
        let writes = if Path::new(&s.dir).is_absolute() {
            Vec::new()
        } else {
            vec![s.dir.clone()]
        };
        Self {
            s,
            db,
            docker,
            writes,
        }
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    pub fn dir(&self, root: &Path) -> PathBuf {
        root.join(&self.s.dir)
    }

    pub fn image(&self) -> String {
        self.s
            .image
            .clone()
            .unwrap_or_else(|| self.db.image.reference().to_string())
    }

    /// The database server's container name, which is its host name on the project network.
    pub fn host(&self) -> String {
        match &self.s.database {
            Database::Service(name) => format!("{}-{name}", self.s.project),
            Database::UrlSecret(_) => String::new(),
        }
    }

    /// For a database given by URL, its connection from `env` (the task's secrets).
    pub fn url_conn(&self, env: &[(String, String)]) -> Result<Option<Conn>, TaskError> {
        let Database::UrlSecret(name) = &self.s.database else {
            return Ok(None);
        };
        match env.iter().find(|(k, _)| k == name) {
            Some((_, v)) => Conn::parse(name, v).map(Some).map_err(TaskError::Failed),
            None => Err(TaskError::Environment(format!(
                "the secret {name} (the database's URL) is not set: export {name}=postgres://USER:PASSWORD@HOST:5432/DBNAME"
            ))),
        }
    }

    /// The database's name: the service's `dbname`, or the URL's.
    pub fn dbname(&self, env: &[(String, String)]) -> Result<String, TaskError> {
        Ok(match self.url_conn(env)? {
            Some(c) => c.dbname,
            None => self.s.dbname.clone(),
        })
    }

    /// Where the database is, for messages: the service task, or `host:port/db` (never the
    /// URL: it holds the password).
    pub fn location(&self, conn: Option<&Conn>) -> String {
        match (&self.s.database, conn) {
            (Database::UrlSecret(name), Some(c)) => format!("{} (the URL in {name})", c.display()),
            (Database::UrlSecret(name), None) => format!("the URL in {name}"),
            (Database::Service(name), _) => name.clone(),
        }
    }

    /// A client for `run_id`, with the task's env and secrets (`PGPASSWORD`, or the
    /// service's `POSTGRES_PASSWORD`) after lifeos's own `PG*` settings, so they may override.
    /// A database given by URL: the URL's parts as `PG*` (the URL itself is not passed).
    pub fn client(
        &self,
        run_id: &str,
        host: &str,
        env: &[(String, String)],
        conn: Option<&Conn>,
    ) -> Client {
        if let (Some(c), Database::UrlSecret(secret)) = (conn, &self.s.database) {
            let mut e = vec![
                ("PGCONNECT_TIMEOUT".to_string(), "10".to_string()),
                ("PGAPPNAME".to_string(), "lifeos-backup".to_string()),
            ];
            e.extend(c.env());
            e.extend(env.iter().filter(|(k, _)| k != secret).cloned());
            return Client {
                db: self.db.clone(),
                task: self.s.task.clone(),
                image: self.image(),
                env: e,
                run_id: run_id.to_string(),
                host_network: true,
            };
        }
        let mut e = vec![
            ("PGHOST".to_string(), host.to_string()),
            ("PGPORT".to_string(), self.s.port.to_string()),
            ("PGUSER".to_string(), self.s.user.clone()),
            ("PGDATABASE".to_string(), self.s.dbname.clone()),
            ("PGCONNECT_TIMEOUT".to_string(), "10".to_string()),
            ("PGAPPNAME".to_string(), "lifeos-backup".to_string()),
        ];
        if !env.iter().any(|(k, _)| k == "PGPASSWORD") {
            if let Some((_, v)) = env.iter().find(|(k, _)| k == "POSTGRES_PASSWORD") {
                e.push(("PGPASSWORD".into(), v.clone()));
            }
        }
        e.extend(env.iter().cloned());
        Client {
            db: self.db.clone(),
            task: self.s.task.clone(),
            image: self.image(),
            env: e,
            run_id: run_id.to_string(),
            host_network: false,
        }
    }

    /// For the backup commands: the engine and a client for the database, which must be
    /// running (an Environment error says how to start it).
    pub async fn connect(
        &self,
        env: &[(String, String)],
    ) -> Result<(bollard::Docker, Client), TaskError> {
        let conn = self.url_conn(env)?;
        let d = self.docker.get().await?;
        if let Database::Service(name) = &self.s.database {
            let running = ops::find(&d, &self.s.project, Some(name))
                .await?
                .iter()
                .any(|c| c.state.as_ref().is_some_and(|s| s.to_string() == "running"));
            if !running {
                return Err(TaskError::Environment(format!(
                    "the database service `{name}` is not running: start it with `lifeos up {name}`"
                )));
            }
        }
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let run_id = format!("{:x}{:04x}", t.as_millis(), std::process::id() & 0xffff);
        Ok((d, self.client(&run_id, &self.host(), env, conn.as_ref())))
    }

    /// `.partial` files of this database left by a run that was killed.
    fn remove_stale(&self, dir: &Path, dbname: &str, log: &LogSink) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let prefix = format!("{dbname}-");
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix)
                && name.ends_with(".partial")
                && std::fs::remove_file(e.path()).is_ok()
            {
                log.line(
                    Stream::Stderr,
                    &format!("removed {name}, left by an interrupted backup"),
                );
            }
        }
    }

    async fn backup(
        &self,
        cx: &ExecCx<'_>,
        d: &bollard::Docker,
        conn: Option<Conn>,
    ) -> Result<BackupResult, String> {
        let dir = self.dir(cx.root);
        let dbname = conn
            .as_ref()
            .map_or_else(|| self.s.dbname.clone(), |c| c.dbname.clone());
        self.remove_stale(&dir, &dbname, &cx.log);
        let host = match &self.s.database {
            Database::Service(name) => cx
                .deps
                .typed::<ServiceResult>(name)
                .map(|r| r.container)
                .unwrap_or_else(|| self.host()),
            Database::UrlSecret(_) => String::new(),
        };
        let client = self.client(cx.run_id, &host, &cx.env, conn.as_ref());
        let target = Target {
            dbname: dbname.clone(),
            location: self.location(conn.as_ref()),
        };
        let now = chrono::Utc::now();
        let name = format!("{dbname}-{}.dump", retention::stamp(now));
        let path = dir.join(&name);
        let partial = sidecar::partial(&path);
        let result = self
            .dump_and_verify(cx, d, &client, &target, &path, &partial, now)
            .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
            let _ = std::fs::remove_file(sidecar::partial(&sidecar::path_of(&path)));
        }
        let side = result?;
        cx.log.line(
            Stream::Stderr,
            &format!(
                "{name}: {} bytes, sha256 {}, {} tables, read back in full",
                side.size,
                side.sha256,
                side.tables.len()
            ),
        );
        if !self.s.keep.is_empty() {
            self.prune(&dir, &dbname, &cx.log).map_err(|e| {
                format!(
                    "the backup is good, but pruning {} failed: {e}",
                    dir.display()
                )
            })?;
        }
        let mut uploaded = None;
        if let Some(base) = &self.s.upload {
            let url = http::join(base, &name);
            uploaded = Some(
                self.upload(&url, &path, &side, &cx.log)
                    .await
                    .map_err(|e| {
                        format!(
                            "upload failed: {e}; the verified backup is kept at {}",
                            path.display()
                        )
                    })?,
            );
        }
        Ok(BackupResult {
            file: if Path::new(&self.s.dir).is_absolute() {
                path.display().to_string()
            } else {
                Path::new(&self.s.dir).join(&name).display().to_string()
            },
            sha256: side.sha256,
            size: side.size,
            uploaded,
        })
    }

    /// Send the verified dump and its sidecar to `url`: HTTP PUT or `gcloud storage cp`, then
    /// the size and sha256 read back.
    async fn upload(
        &self,
        url: &str,
        path: &Path,
        side: &Sidecar,
        log: &LogSink,
    ) -> Result<String, String> {
        let side_path = sidecar::path_of(path);
        if url.starts_with("gs://") {
            log.progress(&format!(
                "uploading to {} with {} storage cp",
                gcs::bucket_of(url),
                gcs::program()
            ));
            gcs::upload(url, path, &side.sha256, side.size).await?;
            gcs::upload_small(&format!("{url}.json"), &side_path)
                .await
                .map_err(|e| format!("the sidecar: {e}"))?;
        } else {
            log.progress(&format!("uploading to {}", http::server_of(url)));
            http::upload(url, path, &side.sha256, side.size).await?;
            let side_bytes = std::fs::read(&side_path).unwrap_or_default();
            http::upload_small(&format!("{url}.json"), side_bytes)
                .await
                .map_err(|e| format!("the sidecar: {e}"))?;
        }
        log.line(
            Stream::Stderr,
            &format!("uploaded to {url} (size and sha256 read back)"),
        );
        Ok(url.to_string())
    }

    #[allow(clippy::too_many_arguments)] // where from, where to, and when
    async fn dump_and_verify(
        &self,
        cx: &ExecCx<'_>,
        d: &bollard::Docker,
        client: &Client,
        target: &Target,
        path: &Path,
        partial: &Path,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Sidecar, String> {
        let dir = path.parent().expect("a file in a directory").to_path_buf();
        let started = std::time::Instant::now();
        // The file is made on the first byte: a dump that cannot even connect writes nothing.
        let mut out: Option<(std::io::BufWriter<std::fs::File>, Sha256)> = None;
        let mut meta = Meta::default();
        let log = cx.log.clone();
        cx.log.progress(&format!(
            "pg_dump {} from {}",
            target.dbname, target.location
        ));
        let ended = client
            .run(
                d,
                "dump",
                &scripts::dump(),
                None,
                &mut |bytes: &[u8]| {
                    if out.is_none() {
                        std::fs::create_dir_all(&dir)?;
                        let f = std::fs::File::create(partial)?;
                        out = Some((std::io::BufWriter::with_capacity(1 << 20, f), Sha256::new()));
                    }
                    let (f, h) = out.as_mut().expect("just made");
                    h.update(bytes);
                    f.write_all(bytes)
                },
                &mut |line: &str| meta.line(line, &log),
                &cx.cancel,
            )
            .await
            .map_err(interrupted_or)?;
        if ended.code != 0 {
            return Err(format!(
                "pg_dump of database {} on {} failed: {}",
                target.dbname,
                target.location,
                ended.why()
            ));
        }
        let Some((f, h)) = out else {
            return Err("pg_dump wrote nothing".into());
        };
        let f = f
            .into_inner()
            .map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
        let dumped = started.elapsed();
        let (sha256, size) = h.finish();
        let Some(server_version) = meta.server_version else {
            return Err("the dump script reported no server version".into());
        };

        // The fsync runs alongside the read back (which reads the page cache either way):
        // both must succeed before the rename.
        let t = std::time::Instant::now();
        let sync = tokio::task::spawn_blocking(move || {
            let t = std::time::Instant::now();
            f.sync_all().map(|()| t.elapsed())
        });
        cx.log
            .progress("reading the dump back (pg_restore, full read)");
        let read = read_back(client, d, partial, &cx.cancel, Some(&cx.log))
            .await
            .map_err(interrupted_or)?;
        let synced = sync
            .await
            .map_err(|e| format!("the fsync of {} panicked: {e}", partial.display()))?
            .map_err(|e| format!("cannot sync {}: {e}", partial.display()))?;
        let found = read.map_err(|why| format!("the new dump does not read back: {why}"))?;
        cx.log.line(
            Stream::Stderr,
            &format!(
                "times: pg_dump with row counts {:.1}s, full read {:.1}s (fsync alongside: {:.1}s)",
                dumped.as_secs_f64(),
                t.elapsed().as_secs_f64(),
                synced.as_secs_f64()
            ),
        );
        let diff = sidecar::count_differences(&meta.tables, &found);
        if !diff.is_empty() {
            return Err(format!(
                "the dump's rows differ from the database's snapshot: {}",
                diff.join("; ")
            ));
        }
        let side = Sidecar {
            file: path.file_name().unwrap().to_string_lossy().into_owned(),
            sha256,
            size,
            database: target.dbname.clone(),
            server_version,
            created: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            format: "custom".into(),
            tables: meta.tables,
            verified: "pg_restore full read; per-table row counts match the dump's snapshot".into(),
        };
        let side_partial = side
            .write_partial(path)
            .map_err(|e| format!("cannot write the sidecar: {e}"))?;
        // The sidecar first: a `.dump` is never without its proof.
        std::fs::rename(&side_partial, sidecar::path_of(path))
            .and_then(|()| std::fs::rename(partial, path))
            .and_then(|()| sidecar::sync_dir(&dir))
            .map_err(|e| format!("cannot rename the backup into place: {e}"))?;
        Ok(side)
    }

    fn prune(&self, dir: &Path, dbname: &str, log: &LogSink) -> std::io::Result<()> {
        let list = retention::list(dir, dbname)?;
        let plan = retention::plan(&list, &self.s.keep);
        for p in retention::apply(&plan)? {
            log.line(
                Stream::Stderr,
                &format!(
                    "pruned {} (no keep rule holds it)",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ),
            );
        }
        Ok(())
    }
}

/// The database of one run, for names and messages.
struct Target {
    dbname: String,
    /// The service task, or `host:port/db (the URL in NAME)`.
    location: String,
}

fn interrupted_or(e: TaskError) -> String {
    match e {
        TaskError::Interrupted => "interrupted".into(),
        other => other.to_string(),
    }
}

/// What the dump script reports on stderr besides its log.
#[derive(Default)]
struct Meta {
    server_version: Option<String>,
    tables: BTreeMap<String, u64>,
}

impl Meta {
    fn line(&mut self, line: &str, log: &LogSink) {
        let Some(json) = line.strip_prefix("lifeos-meta ") else {
            log.line(Stream::Stderr, line);
            return;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
            return;
        };
        if let Some(s) = v["server_version"].as_str() {
            self.server_version = Some(s.to_string());
        }
        if let (Some(t), Some(n)) = (v["table"].as_str(), v["rows"].as_u64()) {
            self.tables.insert(t.to_string(), n);
        }
    }
}

/// Read a dump back in full in a client container: the rows of each table, or why it does
/// not read (pg_restore's own words). The outer error is the engine's or an interruption.
pub async fn read_back(
    client: &Client,
    d: &bollard::Docker,
    file: &Path,
    cancel: &CancellationToken,
    log: Option<&LogSink>,
) -> Result<Result<BTreeMap<String, u64>, String>, TaskError> {
    let mut out = Vec::new();
    let ended: Ended = client
        .run(
            d,
            "verify",
            &scripts::read_back(),
            Some(file.to_path_buf()),
            &mut |b: &[u8]| {
                out.extend_from_slice(b);
                Ok(())
            },
            &mut |line: &str| {
                if let Some(l) = log {
                    l.line(Stream::Stderr, line);
                }
            },
            cancel,
        )
        .await?;
    if ended.code != 0 {
        return Ok(Err(ended.why()));
    }
    let mut rows = BTreeMap::new();
    for line in String::from_utf8_lossy(&out).lines() {
        if let Some((n, t)) = line
            .strip_prefix("lifeos-rows ")
            .and_then(|r| r.split_once(' '))
        {
            if let Ok(n) = n.parse::<u64>() {
                rows.insert(t.to_string(), n);
            }
        }
    }
    Ok(Ok(rows))
}

#[async_trait]
impl Task for BackupTask {
    fn kind(&self) -> &'static str {
        "backup"
    }

    /// What makes a different result: not `keep`, which only decides what happens to older
    /// backups. A new `upload` target is a new result (a backup that is there too).
    fn config(&self) -> serde_json::Value {
        let database = match &self.s.database {
            // As before URLs existed: a service backup keeps its key.
            Database::Service(name) => json!(name),
            Database::UrlSecret(secret) => json!({ "url_secret": secret }),
        };
        json!({
            "database": database,
            "dbname": self.s.dbname,
            "user": self.s.user,
            "port": self.s.port,
            "image": self.s.image,
            "dir": self.s.dir,
            "upload": self.s.upload,
            "format": "custom",
        })
    }

    fn delivered(&self, r: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
        let r: BackupResult = serde_json::from_value(serde_json::Value::Object(r.clone())).ok()?;
        let mut line = format!("{} ({})", r.file, human_size(r.size));
        if let Some(url) = r.uploaded {
            line.push_str(&format!(", uploaded to {url}"));
        }
        Some(line)
    }

    fn describe(&self) -> String {
        match &self.s.database {
            Database::Service(name) => {
                format!("backup {} of {name} to {}", self.s.dbname, self.s.dir)
            }
            Database::UrlSecret(secret) => {
                format!("backup the database at ${secret} to {}", self.s.dir)
            }
        }
    }

    fn writes(&self) -> &[String] {
        &self.writes
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }

    /// The database's identity: a recreated database is backed up again at once. A URL's
    /// is its secret's keyed hash (the engine keys every secret), so a new URL is a new key.
    async fn inputs(&self, _cx: &KeyCx) -> Result<TaskInputs, TaskError> {
        let d = self.docker.get().await?;
        let mut inputs = TaskInputs::default();
        if let Database::Service(name) = &self.s.database {
            inputs.extras.insert(
                format!("identity of {name}"),
                ops::identity(&d, &self.db).await?,
            );
        }
        if self.s.image.is_some() || matches!(self.s.database, Database::UrlSecret(_)) {
            let img = self.image();
            let id = ops::image_id(&d, &img, None).await?;
            inputs.extras.insert(format!("image {img}"), id);
        }
        Ok(inputs)
    }

    /// Still there: the recorded file, at its recorded size.
    async fn probe(&self, cx: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        let Some(r) = cx.record else {
            return Ok(Probe::Missing("no record".into()));
        };
        let Ok(res) = serde_json::from_value::<BackupResult>(r.data.clone()) else {
            return Ok(Probe::Missing("the record names no backup file".into()));
        };
        let path = cx.root.join(&res.file);
        Ok(match std::fs::metadata(&path) {
            Ok(m) if m.len() == res.size => Probe::Fresh(format!("backup {}", res.file)),
            Ok(_) => Probe::Missing(format!("{} changed size", res.file)),
            Err(_) => Probe::Missing(format!("{} is gone", res.file)),
        })
    }

    async fn execute(&self, cx: &ExecCx<'_>) -> Result<Executed, TaskError> {
        let conn = self.url_conn(&cx.env)?;
        let d = self.docker.get().await?;
        match self.backup(cx, &d, conn).await {
            Ok(r) => Ok(Executed {
                data: serde_json::to_value(r).expect("serializes"),
                ..Default::default()
            }),
            Err(e) if e == "interrupted" => Err(TaskError::Interrupted),
            Err(e) => Err(TaskError::Failed(e)),
        }
    }
}

/// 2_100_000 → "2.1 MB" (decimal units, as `ls -h --si` and cloud consoles show them).
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod human_size_tests {
    #[test]
    fn sizes_read_like_a_console() {
        assert_eq!(super::human_size(512), "512 B");
        assert_eq!(super::human_size(2_100_000), "2.1 MB");
        assert_eq!(super::human_size(445_000_000_000), "445.0 GB");
    }
}
