//! `kind = "backup"`, `lifeos backup verify|prune` and `lifeos restore` against a real
//! Postgres 15 (the example's Debian image) and a real nginx WebDAV server. psql and
//! sha256sum on the host are the independent clients.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::postgres::{copy_dir, debian_rootfs};
use crate::support::{free_port, DockerFx, Run};

const PASSWORD: &str = "it-backup-password";

struct Pg {
    fx: DockerFx,
    port: u16,
}

/// The example's Debian image and a Postgres service, plus a backup task with `backup`
/// (extra TOML lines); Postgres is up when this returns.
fn setup(backup: &str) -> Pg {
    let fx = DockerFx::new();
    let port = free_port();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("example/debian"),
        &fx.p.p("debian"),
    );
    let tar = fx.p.p("debian/rootfs.tar");
    if fs::hard_link(debian_rootfs(), &tar).is_err() {
        fs::copy(debian_rootfs(), &tar).unwrap();
    }
    let pg = Pg { fx, port };
    pg.config(backup);
    let r = pg.lifeos(&["build", "debian"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = pg.lifeos(&["up", "postgres"]);
    assert_eq!(r.code, 0, "{}", r.all());
    pg
}

impl Pg {
    fn config(&self, backup: &str) {
        let fx = &self.fx;
        fx.p.config(&format!(
            r#"
[project]
name = "{id}"

[tasks.debian]
kind = "image"
context = "debian"
tag = "{tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.postgres]
kind = "service"
image = "{tag}"
cmd = ["pg-entrypoint.sh"]
env = ["POSTGRES_DB=lifeos"]
secrets = ["POSTGRES_PASSWORD"]
ports = ["127.0.0.1:{pg}:5432"]
volumes = ["pgdata:/var/lib/postgresql/data"]
health = {{ cmd = ["pg_isready", "-U", "postgres", "-h", "127.0.0.1"], interval = "300ms", retries = 100 }}
labels = {{ "lifeos.test" = "{id}" }}

[tasks.backup]
kind = "backup"
database = "postgres"
dbname = "lifeos"
dir = "backups"
secrets = ["PGPASSWORD"]
cache = {{ every = "24h" }}
{backup}
"#,
            id = fx.id,
            tag = fx.tag("debian"),
            pg = self.port,
        ));
    }

    fn lifeos_pw(&self, args: &[&str], pgpassword: &str) -> Run {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        self.fx.p.run_env(
            &a,
            &[("POSTGRES_PASSWORD", PASSWORD), ("PGPASSWORD", pgpassword)],
        )
    }

    fn lifeos(&self, args: &[&str]) -> Run {
        self.lifeos_pw(args, PASSWORD)
    }

    /// Plain output (not --json), for the commands' own text.
    fn text(&self, args: &[&str]) -> Run {
        self.fx.p.run_env(
            args,
            &[("POSTGRES_PASSWORD", PASSWORD), ("PGPASSWORD", PASSWORD)],
        )
    }

    fn psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        let o = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .expect("psql is installed (postgresql-client)");
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }

    fn psql(&self, sql: &str) -> String {
        self.psql_db("lifeos", sql).unwrap()
    }

    /// Files in the backup directory, sorted.
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.fx.p.p("backups"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn dumps(&self) -> Vec<PathBuf> {
        self.files()
            .into_iter()
            .filter(|f| f.ends_with(".dump"))
            .map(|f| self.fx.p.p("backups").join(f))
            .collect()
    }

    /// Per-table row counts and a checksum of every row, as psql sees them.
    fn fingerprint(&self) -> String {
        self.psql(
            "select (select count(*) from users) || ' ' || (select count(*) from notes) || ' ' \
             || (select count(*) from \"Odd Name\") || ' ' \
             || (select md5(string_agg(u::text, ',' order by id)) from users u) || ' ' \
             || (select md5(string_agg(n::text, ',' order by id)) from notes n)",
        )
    }

    fn seed(&self) {
        self.psql(
            "create table users (id serial primary key, email text not null, bio text); \
             insert into users (email, bio) select 'u' || g || '@x.test', repeat('b', g % 50) from generate_series(1, 1200) g; \
             create table notes (id serial primary key, user_id int references users(id), body text); \
             insert into notes (user_id, body) select 1 + g % 1200, 'note ' || g || E'\\nline two\\ttab' from generate_series(1, 700) g; \
             create table \"Odd Name\" (x int); insert into \"Odd Name\" values (1), (2), (3)",
        );
    }
}

fn sha256sum(p: &Path) -> String {
    let o = Command::new("sha256sum").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn sidecar(dump: &Path) -> serde_json::Value {
    let mut s = dump.as_os_str().to_owned();
    s.push(".json");
    serde_json::from_slice(&fs::read(PathBuf::from(s)).unwrap()).unwrap()
}

fn log_of(r: &Run, task: &str) -> String {
    r.events()
        .iter()
        .filter(|e| e["event"] == "task_log" && e["task"] == task)
        .map(|e| e["line"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn backup_drop_a_table_restore_same_rows_and_damaged_dumps_are_refused() {
    let pg = setup("");
    pg.seed();
    let before = pg.fingerprint();
    assert!(before.starts_with("1200 700 3 "), "{before}");

    let r = pg.lifeos(&["run", "backup"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["backup"], "{}", r.all());
    let dumps = pg.dumps();
    assert_eq!(dumps.len(), 1, "{:?}", pg.files());
    let dump = dumps[0].clone();
    let name = dump.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("lifeos-") && name.len() == "lifeos-20261202T035012Z.dump".len(),
        "{name}"
    );
    assert_eq!(
        pg.files(),
        [name.clone(), format!("{name}.json")],
        "no .partial left"
    );
    // The sidecar: the file's real sha256 and size, and the snapshot's counts.
    let side = sidecar(&dump);
    assert_eq!(side["sha256"], sha256sum(&dump));
    assert_eq!(side["size"], fs::metadata(&dump).unwrap().len());
    assert_eq!(side["tables"]["public.users"], 1200);
    assert_eq!(side["tables"]["public.notes"], 700);
    assert_eq!(side["tables"]["public.\"Odd Name\""], 3);
    assert!(side["server_version"].as_str().unwrap().starts_with("15."));
    assert!(
        log_of(&r, "backup").contains("read back in full"),
        "{}",
        r.all()
    );

    // Inside `every`: cached, nothing new.
    let r = pg.lifeos(&["run", "backup"]);
    assert_eq!(r.cached(), ["backup", "postgres"], "{}", r.all());
    assert_eq!(pg.dumps().len(), 1);
    assert_eq!(pg.dumps()[0], dump);

    let r = pg.text(&["backup", "verify"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("verdict: restorable"), "{}", r.all());
    assert!(
        r.stdout.contains("restore into a scratch database"),
        "{}",
        r.all()
    );

    // Lose data, restore: the same rows, the damaged database kept under a dated name.
    pg.psql("drop table notes; insert into users (email) values ('late@x.test')");
    let r = pg.text(&["restore", dump.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(pg.fingerprint(), before);
    let old = pg
        .psql_db(
            "postgres",
            "select datname from pg_database where datname like 'lifeos\\_old\\_%'",
        )
        .unwrap();
    assert!(
        r.stderr.contains(&old) && !old.is_empty(),
        "{old} {}",
        r.all()
    );
    assert_eq!(
        pg.psql_db(&old, "select count(*) from users").unwrap(),
        "1201",
        "the replaced database is kept as it was"
    );
    assert_eq!(
        pg.psql_db(
            &old,
            "select count(*) from pg_tables where tablename = 'notes'"
        )
        .unwrap(),
        "0"
    );

    // Damaged copies: refused before any database is touched, with the reason.
    pg.psql("insert into users (email) values ('after-restore@x.test')");
    let live = pg.fingerprint();
    let bytes = fs::read(&dump).unwrap();
    let side_text = fs::read(format!("{}.json", dump.display())).unwrap();
    let damaged = |tag: &str, content: &[u8], side: &[u8]| -> PathBuf {
        let p = pg.fx.p.p(&format!("damaged/{tag}/{name}"));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::write(format!("{}.json", p.display()), side).unwrap();
        p
    };
    let truncated = damaged("truncated", &bytes[..bytes.len() / 2], &side_text);
    let mut flipped_bytes = bytes.clone();
    let mid = bytes.len() / 2;
    for b in &mut flipped_bytes[mid..mid + 4] {
        *b ^= 0xff;
    }
    let flipped = damaged("flipped", &flipped_bytes, &side_text);
    for (f, reason) in [(&truncated, "size"), (&flipped, "sha256")] {
        let r = pg.text(&["backup", "verify", f.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{}", r.all());
        assert!(r.stdout.contains("NOT restorable"), "{}", r.all());
        assert!(r.stdout.contains(reason), "{reason}: {}", r.all());
        let r = pg.text(&["restore", f.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{}", r.all());
        assert!(
            r.stderr.contains("refused") && r.stderr.contains(reason),
            "{reason}: {}",
            r.all()
        );
    }
    // Flipped bytes whose sidecar was rewritten to match: the full read still finds it
    // (zlib's check), which `pg_restore --list` would not.
    let mut forged: serde_json::Value = serde_json::from_slice(&side_text).unwrap();
    forged["sha256"] = sha256sum(&flipped).into();
    let forged_dump = damaged(
        "forged",
        &flipped_bytes,
        serde_json::to_string(&forged).unwrap().as_bytes(),
    );
    let r = pg.text(&["backup", "verify", forged_dump.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stdout.contains("FAIL  full read (pg_restore)")
            && r.stdout.contains("pg_restore: error:"),
        "{}",
        r.all()
    );
    let r = pg.text(&["restore", forged_dump.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert_eq!(pg.fingerprint(), live, "the live database is untouched");
    let scratch = pg
        .psql_db(
            "postgres",
            "select count(*) from pg_database where datname like '%\\_lifeos\\_%'",
        )
        .unwrap();
    assert_eq!(scratch, "0", "no scratch database is left behind");

    // Retention, dry run: the one verified backup stays, and says why.
    pg.config("keep = { daily = 7, weekly = 4 }");
    let r = pg.text(&["backup", "prune", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stdout.contains(&format!("keep         {name}"))
            && r.stdout.contains("newest verified")
            && r.stdout.contains("daily "),
        "{}",
        r.all()
    );

    // Older verified backups (copies under older stamps, with sidecars) and one lifeos never
    // verified. `keep = { last = 3 }`: the dry run names what would go and deletes nothing;
    // the next backup prunes for real, and the unverified file stays.
    pg.config("keep = { last = 3 }");
    let dir = pg.fx.p.p("backups");
    for d in 1..=5 {
        let old = dir.join(format!("lifeos-202601{d:02}T023000Z.dump"));
        fs::copy(&dump, &old).unwrap();
        fs::copy(
            format!("{}.json", dump.display()),
            format!("{}.json", old.display()),
        )
        .unwrap();
    }
    fs::write(dir.join("lifeos-20250101T000000Z.dump"), b"not ours").unwrap();
    let r = pg.text(&["backup", "prune", "--dry-run"]);
    assert_eq!(r.code, 0, "{}", r.all());
    for d in 1..=3 {
        assert!(
            r.stdout
                .contains(&format!("would delete lifeos-202601{d:02}T023000Z.dump")),
            "{}",
            r.all()
        );
    }
    assert!(
        r.stdout
            .contains("keep         lifeos-20260105T023000Z.dump  last 2"),
        "{}",
        r.all()
    );
    assert!(
        r.stdout
            .contains("leave        lifeos-20250101T000000Z.dump"),
        "{}",
        r.all()
    );
    assert_eq!(pg.dumps().len(), 7, "a dry run deletes nothing");
    let r = pg.lifeos(&["run", "backup", "--force"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        log_of(&r, "backup").contains("pruned lifeos-20260104T023000Z.dump"),
        "{}",
        r.all()
    );
    let left: Vec<String> = pg
        .dumps()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 4, "{left:?}");
    assert_eq!(left[0], "lifeos-20250101T000000Z.dump");
    assert_eq!(left[1], "lifeos-20260105T023000Z.dump");
    assert_eq!(left[2], name);
    assert!(pg
        .files()
        .iter()
        .all(|f| !f.contains("202601") || f.contains("20260105")));
}

#[test]
fn a_killed_backup_leaves_no_dump_and_a_wrong_password_writes_nothing() {
    let pg = setup("");
    // A wrong password: a clear error, and not a byte written.
    let r = pg.lifeos_pw(&["run", "backup"], "not-the-password");
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains("password authentication failed"),
        "{}",
        r.all()
    );
    assert!(
        !r.all().contains("not-the-password"),
        "the secret is masked"
    );
    assert!(pg.files().is_empty(), "{:?}", pg.files());

    // A large table, so pg_dump runs long enough to be killed in the middle.
    pg.psql(
        "create table big (id int, a text, b text); \
         insert into big select g, md5(g::text), md5((g * 7)::text) from generate_series(1, 2000000) g",
    );
    let mut child: Child = pg
        .fx
        .p
        .cmd(&["--json", "run", "backup"])
        .env("POSTGRES_PASSWORD", PASSWORD)
        .env("PGPASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let partial = loop {
        let found = pg
            .files()
            .into_iter()
            .find(|f| f.ends_with(".dump.partial"))
            .map(|f| pg.fx.p.p("backups").join(f));
        if let Some(p) = found.filter(|p| fs::metadata(p).is_ok_and(|m| m.len() > 0)) {
            break p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed: {:?}",
            pg.files()
        );
        assert!(Instant::now() < deadline, "no .partial appeared");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    assert!(pg.dumps().is_empty(), "{:?}", pg.files());
    assert!(partial.exists());

    let r = pg.lifeos(&["run", "backup"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!partial.exists(), "the stale .partial is removed");
    assert!(
        log_of(&r, "backup").contains("left by an interrupted backup"),
        "{}",
        r.all()
    );
    let dumps = pg.dumps();
    assert_eq!(dumps.len(), 1, "{:?}", pg.files());
    assert!(pg.files().iter().all(|f| !f.ends_with(".partial")));
    assert_eq!(sidecar(&dumps[0])["tables"]["public.big"], 2_000_000);
    assert_eq!(sidecar(&dumps[0])["sha256"], sha256sum(&dumps[0]));

    // A restore interrupted (SIGINT) while the scratch database fills: exit 130, the scratch
    // database dropped, the live one as it was.
    pg.psql("delete from big where id <= 10");
    let mut child: Child = pg
        .fx
        .p
        .cmd(&["restore", dumps[0].to_str().unwrap()])
        .env("POSTGRES_PASSWORD", PASSWORD)
        .env("PGPASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scratch_sql =
        "select count(*) from pg_database where datname like '%\\_lifeos\\_restore\\_%'";
    let deadline = Instant::now() + Duration::from_secs(300);
    while pg.psql_db("postgres", scratch_sql).unwrap() != "1" {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "no scratch database appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(
        pg.psql_db("postgres", scratch_sql).unwrap(),
        "0",
        "{stderr}"
    );
    assert_eq!(
        pg.psql("select count(*) from big"),
        "1999990",
        "the live database is untouched"
    );
    assert_eq!(
        pg.psql_db(
            "postgres",
            "select count(*) from pg_database where datname like 'lifeos\\_old\\_%'"
        )
        .unwrap(),
        "0"
    );
}

/// A real nginx WebDAV server on a loopback port (Debian's nginx has the dav module), one
/// process (`master_process off`), killed on drop.
struct Nginx {
    child: Child,
    root: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    fn start() -> Nginx {
        let root = tempfile::Builder::new()
            .prefix("lifeos-it-dav-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let r = root.path();
        fs::create_dir_all(r.join("www/backups")).unwrap();
        fs::create_dir_all(r.join("tmp")).unwrap();
        let conf = r.join("nginx.conf");
        fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nuser root;\npid {r}/nginx.pid;\nerror_log {r}/error.log;\n\
                 events {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {r}/tmp/body;\n  proxy_temp_path {r}/tmp/proxy;\n  fastcgi_temp_path {r}/tmp/fastcgi;\n  uwsgi_temp_path {r}/tmp/uwsgi;\n  scgi_temp_path {r}/tmp/scgi;\n\
                 server {{\n    listen 127.0.0.1:{port};\n    root {r}/www;\n    client_max_body_size 0;\n    location /backups/ {{ dav_methods PUT DELETE; create_full_put_path on; dav_access user:rw; }}\n  }}\n}}\n",
                r = r.display()
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .args([
                "-c",
                conf.to_str().unwrap(),
                "-e",
                &format!("{}/error.log", r.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (scripts/setup.sh)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                fs::read_to_string(r.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, root, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/backups/", self.port)
    }

    fn stored(&self, name: &str) -> PathBuf {
        self.root.path().join("www/backups").join(name)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn upload_is_read_back_a_down_server_fails_the_node_and_restore_fetches_by_etag() {
    let dav = Nginx::start();
    let pg = setup(&format!("upload = \"{}\"", dav.url()));
    pg.seed();
    let r = pg.lifeos(&["run", "backup"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let dump = pg.dumps().pop().unwrap();
    let name = dump.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(sha256sum(&dav.stored(&name)), sha256sum(&dump));
    assert!(dav.stored(&format!("{name}.json")).is_file());
    assert!(log_of(&r, "backup").contains("read back"), "{}", r.all());

    // Restore from the URL: fetched once, then revalidated by ETag.
    let url = format!("{}{name}", dav.url());
    pg.psql("drop table \"Odd Name\"");
    let r = pg.text(&["restore", &url, "--drop-old"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains(&format!("fetched {url}")), "{}", r.all());
    assert!(
        r.stderr.contains("dropped the previous database"),
        "{}",
        r.all()
    );
    assert_eq!(pg.psql("select count(*) from \"Odd Name\""), "3");
    let r = pg.text(&["restore", &url, "--drop-old"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("not modified (ETag)"), "{}", r.all());
    // A changed file on the server has a new ETag: fetched again.
    let f = fs::File::options()
        .write(true)
        .open(dav.stored(&name))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    drop(f);
    let r = pg.text(&["restore", &url, "--drop-old"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains(&format!("fetched {url}")), "{}", r.all());

    // The server down: the node fails (exit 1), names the server, keeps the local backup.
    let down = free_port();
    pg.config(&format!("upload = \"http://127.0.0.1:{down}/backups/\""));
    let r = pg.lifeos(&["run", "backup"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains(&format!("127.0.0.1:{down}")),
        "{}",
        r.all()
    );
    assert!(
        r.all().contains("the verified backup is kept at"),
        "{}",
        r.all()
    );
    let dumps = pg.dumps();
    assert_eq!(dumps.len(), 2, "{:?}", pg.files());
    for d in &dumps {
        assert_eq!(sidecar(d)["sha256"], sha256sum(d));
    }
}

#[test]
fn backup_config_errors_point_at_the_field() {
    let p = crate::support::Project::new();
    let base = "[tasks.db]\nkind = \"service\"\nimage = \"postgres:15\"\n\n[tasks.job]\nkind = \"exec\"\nrun = \"true\"\n\n[tasks.backup]\nkind = \"backup\"\n";
    for (extra, place, needle) in [
        (
            "database = \"job\"\n",
            "lifeos.toml:11:12",
            "task `job` is of kind `exec`",
        ),
        ("", "lifeos.toml:9:8", "needs `database`"),
        (
            "database = \"db\"\nformat = \"plain\"\n",
            "lifeos.toml:12:10",
            "only \"custom\"",
        ),
        (
            "database = \"db\"\nupload = \"gs://Bucket/backups\"\n",
            "lifeos.toml:12:10",
            "not a Cloud Storage bucket name",
        ),
        (
            "database = { url_secret = \"DB URL\" }\n",
            "lifeos.toml:11:12",
            "not an environment variable name",
        ),
        (
            "database = { url = \"postgres://x\" }\n",
            "lifeos.toml:11:12",
            "unknown key `url`; expected `url_secret`",
        ),
        (
            "database = { url_secret = \"DB_URL\" }\ndbname = \"x\"\n",
            "lifeos.toml:12:10",
            "`dbname` with a database URL",
        ),
        (
            "database = \"db\"\nkeep = { daily = 7, yearly = 2 }\n",
            "lifeos.toml:12:",
            "yearly",
        ),
    ] {
        p.config(&format!("{base}{extra}"));
        let r = p.run(&["plan", "backup"]);
        assert_eq!(r.code, 2, "{extra}: {}", r.all());
        assert!(r.stderr.contains(place), "{extra}: {place}: {}", r.all());
        assert!(r.stderr.contains(needle), "{extra}: {needle}: {}", r.all());
    }
}

/// A Postgres started by the Docker CLI (not a task of the graph), reached only through the
/// URL in a secret; the backup's client image is the graph's `debian` image task.
struct UrlDb {
    pg: Pg,
}

impl UrlDb {
    fn start() -> UrlDb {
        let fx = DockerFx::new();
        let port = free_port();
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("example/debian"),
            &fx.p.p("debian"),
        );
        let tar = fx.p.p("debian/rootfs.tar");
        if fs::hard_link(debian_rootfs(), &tar).is_err() {
            fs::copy(debian_rootfs(), &tar).unwrap();
        }
        let db = UrlDb {
            pg: Pg { fx, port },
        };
        db.config("");
        let r = db.pg.fx.p.run(&["build", "debian"]);
        assert_eq!(r.code, 0, "{}", r.all());
        let label = format!("lifeos.test={}", db.pg.fx.id);
        crate::support::docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "-p",
            &format!("127.0.0.1:{port}:5432"),
            "-e",
            &format!("POSTGRES_PASSWORD={PASSWORD}"),
            "-e",
            "POSTGRES_DB=lifeos",
            &db.pg.fx.tag("debian"),
            "pg-entrypoint.sh",
        ]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while db.pg.psql_db("lifeos", "select 1").is_err() {
            assert!(Instant::now() < deadline, "Postgres did not start");
            std::thread::sleep(Duration::from_millis(300));
        }
        db
    }

    fn config(&self, extra: &str) {
        let fx = &self.pg.fx;
        fx.p.config(&format!(
            r#"
[project]
name = "{id}"

[tasks.debian]
kind = "image"
context = "debian"
tag = "{tag}"
labels = {{ "lifeos.test" = "{id}" }}

[tasks.backup]
kind = "backup"
database = {{ url_secret = "IT_DATABASE_URL" }}
image = "debian"
dir = "backups"
cache = {{ every = "24h" }}
{extra}
"#,
            id = fx.id,
            tag = fx.tag("debian"),
        ));
    }

    fn url(&self, password: &str) -> String {
        format!(
            "postgres://postgres:{password}@127.0.0.1:{}/lifeos?sslmode=disable",
            self.pg.port
        )
    }

    fn run(&self, args: &[&str], url: &str) -> Run {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        self.text(&a, url)
    }

    fn text(&self, args: &[&str], url: &str) -> Run {
        self.pg.fx.p.run_env(args, &[("IT_DATABASE_URL", url)])
    }

    /// Neither the password nor the URL in the cache, the backups or the sidecars.
    fn assert_nowhere(&self, needles: &[&str]) {
        for dir in [".lifeos", "backups"] {
            for (path, bytes) in crate::support::all_bytes(&self.pg.fx.p.p(dir)) {
                for n in needles {
                    assert!(
                        !crate::support::contains(&bytes, n),
                        "{n} is in {}",
                        path.display()
                    );
                }
            }
        }
    }
}

#[test]
fn a_database_url_in_a_secret_is_backed_up_keyed_and_never_shown() {
    let db = UrlDb::start();
    let pg = &db.pg;
    pg.seed();
    let before = pg.fingerprint();
    let url = db.url(PASSWORD);

    let r = db.run(&["run", "backup"], &url);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["backup"], "{}", r.all());
    let dumps = pg.dumps();
    assert_eq!(dumps.len(), 1, "{:?}", pg.files());
    let name = dumps[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(name.starts_with("lifeos-"), "the URL's database: {name}");
    let side = sidecar(&dumps[0]);
    assert_eq!(side["sha256"], sha256sum(&dumps[0]));
    assert_eq!(side["tables"]["public.users"], 1200);
    assert!(
        !r.all().contains(PASSWORD) && !r.all().contains(&url),
        "{}",
        r.all()
    );
    // The one-shot clients ran on the host's network (the URL's 127.0.0.1 is this machine).
    assert!(
        log_of(&r, "backup").contains("read back in full"),
        "{}",
        r.all()
    );

    // Inside `every`: cached. A new value of the secret (same database, another URL) is a
    // new key; the key holds a keyed hash, never the value.
    let r = db.run(&["run", "backup"], &url);
    assert_eq!(r.cached(), ["backup", "debian"], "{}", r.all());
    let other = url.replace("127.0.0.1", "localhost");
    let r = db.run(&["run", "backup"], &other);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.ran(), ["backup"], "a new URL is a new key: {}", r.all());
    let r = db.text(&["explain", "backup"], &url);
    assert!(
        r.all().contains("secret IT_DATABASE_URL changed"),
        "{}",
        r.all()
    );
    db.assert_nowhere(&[PASSWORD, &url, &other]);

    // A wrong password: a clear error naming the host and database, never the password,
    // and nothing written.
    let files = pg.files();
    let wrong = db.url("wrong-pass-7c1e");
    let r = db.run(&["run", "backup", "--force"], &wrong);
    assert_eq!(r.code, 1, "{}", r.all());
    let place = format!("lifeos on 127.0.0.1:{}/lifeos", pg.port);
    assert!(
        r.all().contains(&place) && r.all().contains("password authentication failed"),
        "{}",
        r.all()
    );
    assert!(!r.all().contains("wrong-pass-7c1e"), "{}", r.all());
    assert_eq!(pg.files(), files, "nothing written");
    db.assert_nowhere(&["wrong-pass-7c1e"]);

    // Not a URL at all: refused without quoting it.
    let r = db.run(&["run", "backup", "--force"], "hunter2-not-a-url");
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all()
            .contains("IT_DATABASE_URL is not a usable postgres:// URL"),
        "{}",
        r.all()
    );
    assert!(!r.all().contains("hunter2"), "{}", r.all());
    // Unset: the commands say which secret to export (exit 3).
    let r = pg.fx.p.run(&["backup", "verify"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("export IT_DATABASE_URL="), "{}", r.all());

    // Verify and restore through the URL.
    let r = db.text(&["backup", "verify"], &url);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("verdict: restorable"), "{}", r.all());
    pg.psql("drop table notes");
    let newest = pg.dumps().pop().unwrap();
    let r = db.text(&["restore", newest.to_str().unwrap(), "--drop-old"], &url);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(pg.fingerprint(), before);
    assert!(!r.all().contains(PASSWORD), "{}", r.all());
}

/// The stand-in for Google's gcloud (tests/standin-gcloud), its home with one bucket.
struct Gcloud {
    home: tempfile::TempDir,
}

impl Gcloud {
    const BUCKET: &'static str = "it-backups";

    fn new() -> Gcloud {
        let home = tempfile::Builder::new()
            .prefix("lifeos-it-gcloud-")
            .tempdir()
            .unwrap();
        fs::create_dir_all(home.path().join("storage").join(Self::BUCKET)).unwrap();
        Gcloud { home }
    }

    fn program() -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/standin-gcloud/standin-gcloud")
            .display()
            .to_string()
    }

    /// `lifeos ARGS` with the stand-in as gcloud; `account`: logged in or not.
    fn run(&self, pg: &Pg, args: &[&str], account: bool) -> Run {
        let mut c = pg.fx.p.cmd(args);
        c.env("POSTGRES_PASSWORD", PASSWORD)
            .env("PGPASSWORD", PASSWORD)
            .env("LIFEOS_GCLOUD", Self::program())
            .env("STANDIN_GCLOUD_HOME", self.home.path());
        if account {
            c.env("STANDIN_GCLOUD_ACCOUNT", "backups@it.example");
        } else {
            c.env_remove("STANDIN_GCLOUD_ACCOUNT");
        }
        let o = c.output().unwrap();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn object(&self, name: &str) -> PathBuf {
        self.home
            .path()
            .join("storage")
            .join(Self::BUCKET)
            .join("lifeos")
            .join(name)
    }

    /// The gcloud argument lists lifeos ran, in order.
    fn calls(&self) -> Vec<Vec<String>> {
        fs::read_to_string(self.home.path().join("calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["argv"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    }
}

#[test]
fn gs_upload_through_gcloud_is_read_back_and_restore_fetches_from_gs() {
    let gc = Gcloud::new();
    let pg = setup(&format!("upload = \"gs://{}/lifeos/\"", Gcloud::BUCKET));
    pg.seed();
    let r = gc.run(&pg, &["--json", "run", "backup"], true);
    assert_eq!(r.code, 0, "{}", r.all());
    let dump = pg.dumps().pop().unwrap();
    let name = dump.file_name().unwrap().to_str().unwrap().to_string();
    let url = format!("gs://{}/lifeos/{name}", Gcloud::BUCKET);
    assert_eq!(
        fs::read(gc.object(&name)).unwrap(),
        fs::read(&dump).unwrap(),
        "the object's bytes are the local file's"
    );
    assert_eq!(
        fs::read(gc.object(&format!("{name}.json"))).unwrap(),
        fs::read(format!("{}.json", dump.display())).unwrap()
    );
    assert!(
        log_of(&r, "backup").contains(&format!("uploaded to {url} (size and sha256 read back)")),
        "{}",
        r.all()
    );
    let calls = gc.calls();
    let cp = calls
        .iter()
        .position(|c| c[..2] == ["storage", "cp"] && c[3] == url)
        .expect("gcloud storage cp FILE URL");
    assert!(
        calls[cp + 1..]
            .iter()
            .any(|c| *c == ["storage", "cat", url.as_str()]),
        "read back after the upload: {calls:?}"
    );

    // Restore from gs://: fetched once, then the kept copy while the generation is the same.
    pg.psql("drop table \"Odd Name\"");
    let r = gc.run(&pg, &["restore", &url, "--drop-old"], true);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains(&format!("fetched {url}")), "{}", r.all());
    assert_eq!(pg.psql("select count(*) from \"Odd Name\""), "3");
    let r = gc.run(&pg, &["restore", &url, "--drop-old"], true);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(
        r.stderr.contains("not modified (generation)"),
        "{}",
        r.all()
    );
    // A damaged object is refused before the database is touched.
    let mut bytes = fs::read(gc.object(&name)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    let damaged = format!("gs://{}/lifeos/damaged-{name}", Gcloud::BUCKET);
    fs::write(gc.object(&format!("damaged-{name}")), &bytes).unwrap();
    fs::copy(
        gc.object(&format!("{name}.json")),
        gc.object(&format!("damaged-{name}.json")),
    )
    .unwrap();
    let live = pg.fingerprint();
    let r = gc.run(&pg, &["restore", &damaged], true);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("refused") && r.stderr.contains("sha256"),
        "{}",
        r.all()
    );
    assert_eq!(pg.fingerprint(), live);

    // gcloud not logged in: the node fails, says to log in, and keeps the verified file.
    let objects = fs::read_dir(gc.object("")).unwrap().count();
    let r = gc.run(&pg, &["--json", "run", "backup", "--force"], false);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("gcloud auth login"), "{}", r.all());
    assert!(
        r.all().contains("the verified backup is kept at"),
        "{}",
        r.all()
    );
    let dumps = pg.dumps();
    assert_eq!(dumps.len(), 2, "{:?}", pg.files());
    for d in &dumps {
        assert_eq!(sidecar(d)["sha256"], sha256sum(d));
    }
    assert_eq!(fs::read_dir(gc.object("")).unwrap().count(), objects);
    let r = gc.run(&pg, &["backup", "verify"], true);
    assert_eq!(r.code, 0, "the kept file is good: {}", r.all());

    // A bucket that does not exist: gcloud's words, naming it.
    pg.config("upload = \"gs://no-such-bucket-it/lifeos/\"");
    let r = gc.run(&pg, &["--json", "run", "backup", "--force"], true);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.all().contains("gs://no-such-bucket-it does not exist"),
        "{}",
        r.all()
    );
}
