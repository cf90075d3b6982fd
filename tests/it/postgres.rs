//! Real Postgres 15 and Redis from the example's Debian image: `up`, migrations, `down`,
//! recovery. psql and redis-cli on the host are the independent clients.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{docker, free_port, DockerFx};

const PASSWORD: &str = "it-pg-password";

/// The example's Debian root filesystem (example/debian/make-rootfs.sh: mmdebstrap), made by
/// lifeos in a project of the tests' own under the target dir, once per target dir (then
/// cached by key there). Neither the repository's .lifeos nor its images are touched.
pub(crate) fn debian_rootfs() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lifeos-it-debian-rootfs");
        fs::create_dir_all(dir.join("debian")).unwrap();
        let script = fs::read(repo.join("example/debian/make-rootfs.sh")).unwrap();
        if fs::read(dir.join("debian/make-rootfs.sh")).ok().as_ref() != Some(&script) {
            fs::write(dir.join("debian/make-rootfs.sh"), &script).unwrap();
        }
        fs::write(
            dir.join("lifeos.toml"),
            "[project]\nname = \"lifeos-it-debian-rootfs\"\n\n\
             [tasks.debian-rootfs]\nkind = \"exec\"\nrun = \"sh debian/make-rootfs.sh\"\n\
             inputs = [\"debian/make-rootfs.sh\"]\noutputs = [\"debian/rootfs.tar\"]\ntimeout = \"30m\"\n",
        )
        .unwrap();
        let out = Command::new(crate::support::lifeos_bin())
            .args(["run", "debian-rootfs"])
            .current_dir(&dir)
            .env("CI", "1")
            .env_remove("LIFEOS_CACHE_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "making the Debian root filesystem failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("debian/rootfs.tar")
    })
}

fn psql(port: u16, sql: &str) -> Result<String, String> {
    let o = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "lifeos",
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

pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        if e.file_name() == "rootfs.tar" {
            continue; // a build of the repository's own, if any: the test makes its own
        }
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn project(fx: &DockerFx, pg: u16, redis: u16) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    copy_dir(&repo.join("example/migrations"), &fx.p.p("migrations"));
    // The example's Debian image, built here under this test's own tag and label.
    copy_dir(&repo.join("example/debian"), &fx.p.p("debian"));
    let tar = fx.p.p("debian/rootfs.tar");
    if fs::hard_link(debian_rootfs(), &tar).is_err() {
        fs::copy(debian_rootfs(), &tar).unwrap();
    }
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

[tasks.redis]
kind = "service"
image = "{tag}"
cmd = ["redis-entrypoint.sh"]
ports = ["127.0.0.1:{redis}:6379"]
volumes = ["redisdata:/data"]
health = {{ cmd = ["redis-cli", "ping"], interval = "300ms", retries = 100 }}
labels = {{ "lifeos.test" = "{id}" }}

[tasks.migrate]
kind = "container"
image = "{tag}"
cmd = ["sh", "/migrations/migrate.sh"]
volumes = ["./migrations:/migrations:ro"]
env = ["PGHOST=postgres", "PGUSER=postgres", "PGDATABASE=lifeos"]
secrets = ["PGPASSWORD"]
deps = ["postgres"]
labels = {{ "lifeos.test" = "{id}" }}
"#,
        id = fx.id,
        tag = fx.tag("debian"),
    ));
}

fn lifeos(fx: &DockerFx, args: &[&str]) -> crate::support::Run {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    fx.p.run_env(
        &a,
        &[("POSTGRES_PASSWORD", PASSWORD), ("PGPASSWORD", PASSWORD)],
    )
}

fn log_of(r: &crate::support::Run, task: &str) -> String {
    r.events()
        .iter()
        .filter(|e| e["event"] == "task_log" && e["task"] == task)
        .map(|e| e["line"].as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn postgres_and_redis_up_migrations_down_and_recovery() {
    let fx = DockerFx::new();
    let (pg, rd) = (free_port(), free_port());
    project(&fx, pg, rd);
    let r = lifeos(&fx, &["build", "debian"]);
    assert_eq!(r.code, 0, "{}", r.all());

    let r = lifeos(&fx, &["up", "postgres", "redis"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(psql(pg, "select 40 + 2").unwrap(), "42");
    let pong = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &rd.to_string(), "ping"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&pong.stdout).trim(), "PONG");

    // A second `up` changes nothing, and says why.
    let (pg_id, rd_id) = (fx.container("postgres"), fx.container("redis"));
    let r = lifeos(&fx, &["up", "postgres", "redis"]);
    assert_eq!(r.cached(), ["postgres", "redis"], "{}", r.all());
    assert!(r.outcome("postgres")["location"]
        .as_str()
        .unwrap()
        .starts_with("running, healthy"));
    assert_eq!(
        (fx.container("postgres"), fx.container("redis")),
        (pg_id.clone(), rd_id)
    );

    // Migrations: once; a new file applies only itself; a failing one is not recorded.
    let r = lifeos(&fx, &["run", "migrate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let log = log_of(&r, "migrate");
    assert!(
        log.contains("applied 001_") && log.contains("applied 002_"),
        "{log}"
    );
    assert_eq!(
        psql(pg, "select count(*) from schema_migrations").unwrap(),
        "2"
    );
    assert_eq!(
        lifeos(&fx, &["run", "migrate"]).cached(),
        ["migrate", "postgres"]
    );

    fx.p.file(
        "migrations/003_tags.sql",
        "CREATE TABLE tags (id serial PRIMARY KEY, name text NOT NULL);\n",
    );
    let r = lifeos(&fx, &["run", "migrate"]);
    assert_eq!(r.ran(), ["migrate"], "{}", r.all());
    let log = log_of(&r, "migrate");
    assert!(
        log.contains("applied 003_tags.sql") && !log.contains("applied 001_"),
        "{log}"
    );

    fx.p.file(
        "migrations/004_broken.sql",
        "CREATE TABLE oops (id serial PRIMARY KEY;\n",
    );
    let r = lifeos(&fx, &["run", "migrate"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        log_of(&r, "migrate").contains("syntax error"),
        "the SQL error is shown: {}",
        r.all()
    );
    assert_eq!(
        psql(
            pg,
            "select count(*) from schema_migrations where version like '004%'"
        )
        .unwrap(),
        "0"
    );
    assert_eq!(
        lifeos(&fx, &["run", "migrate"]).outcomes()["migrate"],
        "failed",
        "not recorded as done"
    );
    fs::remove_file(fx.p.p("migrations/004_broken.sql")).unwrap();
    assert_eq!(
        lifeos(&fx, &["run", "migrate"]).cached(),
        ["migrate", "postgres"]
    );

    // Killed from outside: the next `up` brings it back, healthy.
    docker(&["kill", &pg_id]);
    let r = lifeos(&fx, &["up", "postgres"]);
    assert_eq!(r.ran(), ["postgres"], "{}", r.all());
    assert_eq!(
        psql(pg, "select count(*) from schema_migrations").unwrap(),
        "3"
    );

    // down keeps the data; down --volumes is a new database, so migrations run again.
    psql(pg, "insert into tags (name) values ('kept')").unwrap();
    assert_eq!(fx.p.run(&["down"]).code, 0);
    let r = lifeos(&fx, &["run", "migrate"]);
    assert_eq!(r.ran(), ["postgres"], "{}", r.all());
    assert_eq!(
        r.cached(),
        ["migrate"],
        "same volume, same database: {}",
        r.all()
    );
    assert_eq!(psql(pg, "select name from tags").unwrap(), "kept");

    assert_eq!(fx.p.run(&["down", "--volumes"]).code, 0);
    let r = lifeos(&fx, &["run", "migrate"]);
    assert_eq!(r.ran(), ["migrate", "postgres"], "{}", r.all());
    let why = r.outcome("migrate")["reason"]["changes"][0].clone();
    assert_eq!(why["name"], "identity of postgres", "{}", r.all());
    assert_eq!(psql(pg, "select count(*) from tags").unwrap(), "0");
    assert_eq!(fx.p.run(&["down", "--volumes"]).code, 0);
}
