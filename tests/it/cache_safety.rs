//! The cache deletes only what lifeos made, never follows a link planted in it, survives a
//! corrupt blob, streams big and sparse outputs, is found unwritable before anything runs,
//! and file names that are not UTF-8, hold a newline, are links or are FIFOs all work.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{backdate, Project, Run};

const OK_TASK: &str =
    "[tasks.a]\nkind = \"exec\"\nrun = \"echo hi > a.txt\"\noutputs = [\"a.txt\"]\n";

fn tag(p: &Project) -> String {
    p.read(".lifeos/CACHEDIR.TAG")
}

/// Every file under `dir` (following nothing), relative, with its content.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut t = crate::support::all_bytes(dir);
    t.sort();
    t
}

#[test]
fn cache_dir_at_the_project_root_is_a_config_error_and_clean_deletes_nothing() {
    let p = Project::new();
    p.config(&format!("[project]\ncache_dir = \".\"\n\n{OK_TASK}"));
    p.file("src/main.rs", "fn main() {}\n");
    let before = tree(p.path());
    for args in [
        &["cache", "clean"][..],
        &["cache", "prune", "--older-than", "7d"],
        &["run"],
    ] {
        let r = p.run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.all());
        assert!(
            r.stderr.contains("lifeos.toml:2:13") && r.stderr.contains("project root"),
            "{}",
            r.all()
        );
    }
    assert_eq!(tree(p.path()), before, "the project is intact");
}

#[test]
fn cache_dir_parent_from_the_environment_is_refused() {
    let p = Project::new();
    // work/proj is the project, work/other a sibling project: `..` is work/.
    p.file("work/proj/lifeos.toml", OK_TASK);
    p.file("work/other/keep.txt", "mine");
    let before = tree(p.path());
    for args in [&["cache", "clean"][..], &["run"]] {
        let mut c = p.cmd(args);
        c.current_dir(p.p("work/proj"))
            .env("LIFEOS_CACHE_DIR", "..");
        let r = output(c);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(
            r.stderr.contains("a parent of the project root")
                && r.stderr.contains("LIFEOS_CACHE_DIR"),
            "{}",
            r.all()
        );
    }
    assert_eq!(tree(p.path()), before);
}

#[test]
fn clean_and_prune_refuse_a_directory_that_is_not_a_lifeos_cache() {
    let p = Project::new();
    p.config(OK_TASK);
    p.file("plain/photo.jpg", "precious");
    p.file("plain/ac/notes", "also precious");
    let dir = p.p("plain");
    let before = tree(&dir);
    for args in [
        &["cache", "clean"][..],
        &["cache", "prune", "--older-than", "1s"],
    ] {
        let mut a = vec!["--cache-dir", dir.to_str().unwrap()];
        a.extend_from_slice(args);
        let r = p.run(&a);
        assert_eq!(r.code, 3, "{}", r.all());
        assert!(
            r.stderr.contains("not a lifeos cache") && r.stderr.contains("CACHEDIR.TAG"),
            "{}",
            r.all()
        );
    }
    // A run does not take it over either.
    let r = p.run(&["--cache-dir", dir.to_str().unwrap(), "run"]);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("photo.jpg"),
        "names what is foreign: {}",
        r.all()
    );
    assert!(!p.p("a.txt").exists(), "nothing ran");
    assert_eq!(tree(&dir), before);
}

#[test]
fn clean_removes_only_lifeos_names_and_keeps_its_tag() {
    let p = Project::new();
    p.config(OK_TASK);
    assert_eq!(p.json(&["run"]).code, 0);
    assert!(
        tag(&p).starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"),
        "{}",
        tag(&p)
    );
    assert!(tag(&p).contains("lifeos"));
    p.file(".lifeos/my-notes.txt", "not lifeos's");
    p.file(".lifeos/blobs/ab/foreign", "not lifeos's either");
    let r = p.run(&["cache", "clean"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("my-notes.txt"), "{}", r.all());
    assert_eq!(p.read(".lifeos/my-notes.txt"), "not lifeos's");
    assert_eq!(p.read(".lifeos/blobs/ab/foreign"), "not lifeos's either");
    assert!(!p.p(".lifeos/index.json").exists());
    assert!(!p.p(".lifeos/ac").exists());
    assert!(tag(&p).contains("lifeos"), "the tag stays");
    assert_eq!(p.json(&["run"]).ran(), ["a"]);
}

#[test]
fn an_untagged_cache_of_an_older_lifeos_is_adopted() {
    let p = Project::new();
    p.config(OK_TASK);
    assert_eq!(p.json(&["run"]).code, 0);
    fs::remove_file(p.p(".lifeos/CACHEDIR.TAG")).unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.cached(), ["a"], "{}", r.all());
    assert!(tag(&p).contains("lifeos"), "adopted: {}", r.all());
    fs::remove_file(p.p(".lifeos/CACHEDIR.TAG")).unwrap();
    assert_eq!(p.run(&["cache", "clean"]).code, 0);
    assert!(!p.p(".lifeos/index.json").exists());
}

#[test]
fn links_planted_in_the_cache_are_never_followed() {
    let p = Project::new();
    p.config(
        "[tasks.a]\nkind = \"exec\"\nrun = \"echo hi > a.txt\"\noutputs = [\"a.txt\"]\n\
         secrets = [\"TOKEN\"]\n",
    );
    // What a cloned repository could ship in .lifeos/, pointing outside it.
    p.file("victim/secret.txt", "keep me");
    let hex = "00".repeat(32);
    p.file(&format!("victim/ac/{hex}.json"), "not a record");
    p.file(&format!("victim/blobs/{hex}"), "not a blob");
    fs::create_dir_all(p.p(".lifeos/ac")).unwrap();
    fs::create_dir_all(p.p(".lifeos/blobs")).unwrap();
    symlink(p.p("victim/secret.txt"), p.p(".lifeos/secret.key.tmp")).unwrap();
    symlink(p.p("victim/created-by-lock"), p.p(".lifeos/lock")).unwrap();
    symlink(p.p("victim/ac"), p.p(".lifeos/ac/00")).unwrap();
    symlink(p.p("victim/blobs"), p.p(".lifeos/blobs/00")).unwrap();
    let victim = tree(&p.p("victim"));

    let r = p.json_env(&["run"], &[("TOKEN", "s3cret")]);
    assert_eq!(r.ran(), ["a"], "{}", r.all());
    let s = p.run(&["cache", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["records"], 1, "the linked shard is not counted: {v}");
    let r = p.run(&["cache", "prune", "--older-than", "1s"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!p.p(".lifeos/ac/00").exists(), "the link itself is removed");
    p.json_env(&["run"], &[("TOKEN", "s3cret")]);
    symlink(p.p("victim/ac"), p.p(".lifeos/ac/00")).unwrap();
    assert_eq!(p.run(&["cache", "clean"]).code, 0);

    assert_eq!(
        tree(&p.p("victim")),
        victim,
        "nothing outside .lifeos changed"
    );
    assert!(!p.p("victim/created-by-lock").exists());
    assert!(fs::symlink_metadata(p.p(".lifeos/lock")).unwrap().is_file());
}

#[test]
fn a_symlinked_cache_directory_is_refused() {
    let p = Project::new();
    p.config(&format!("{OK_TASK}secrets = [\"TOKEN\"]\n"));
    p.file("victim/index.json", "someone else's");
    symlink(p.p("victim"), p.p(".lifeos")).unwrap();
    let victim = tree(&p.p("victim"));
    for args in [
        &["run"][..],
        &["plan"],
        &["cache", "clean"],
        &["cache", "prune", "--older-than", "1s"],
    ] {
        let r = p.run_env(args, &[("TOKEN", "t")]);
        assert_eq!(r.code, 3, "{args:?}: {}", r.all());
        assert!(r.stderr.contains("is a symlink"), "{}", r.all());
    }
    assert!(!p.p("a.txt").exists(), "nothing ran");
    assert_eq!(
        tree(&p.p("victim")),
        victim,
        "nothing written or deleted through the link"
    );
}

/// The blob holding `content`, found by content (the test does not hash).
fn blob_with(p: &Project, content: &[u8]) -> PathBuf {
    tree(&p.p(".lifeos/blobs"))
        .into_iter()
        .find(|(_, b)| b == content)
        .map(|(path, _)| p.p(".lifeos/blobs").join(path))
        .expect("the output's blob")
}

#[test]
fn a_corrupt_output_blob_is_a_miss_and_the_rerun_repairs_it() {
    let p = Project::new();
    p.config(
        "[tasks.a]\nkind = \"exec\"\nrun = \"echo hello-output > out.txt\"\noutputs = [\"out.txt\"]\n",
    );
    assert_eq!(p.json(&["run"]).ran(), ["a"]);
    let blob = blob_with(&p, b"hello-output\n");
    let digest = blob.file_name().unwrap().to_str().unwrap().to_string();
    fs::write(&blob, b"hello-OUTPUT\n").unwrap();
    fs::remove_file(p.p("out.txt")).unwrap();

    let plan = p.run(&["plan"]);
    assert!(plan.stdout.contains("will run"), "{}", plan.all());
    let r = p.json(&["run"]);
    assert_eq!(r.ran(), ["a"], "a miss, not a failure: {}", r.all());
    let why = r.outcome("a").to_string();
    assert!(why.contains("corrupt") && why.contains(&digest), "{why}");
    assert_eq!(p.read("out.txt"), "hello-output\n");
    assert_eq!(fs::read(&blob).unwrap(), b"hello-output\n", "repaired");

    fs::remove_file(p.p("out.txt")).unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.cached(), ["a"], "{}", r.all());
    assert_eq!(p.read("out.txt"), "hello-output\n");
}

/// Run `c` and report its exit and its peak resident memory. GNU time starts it and reads
/// its rusage: a child forked straight from this test binary would report the test binary's
/// own peak (ru_maxrss keeps the high-water mark from before exec), which with the whole suite
/// running in one process is hundreds of MiB.
fn output_with_rss(c: Command) -> (Run, u64) {
    let rss_file = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(rss_file.path())
        .arg(c.get_program())
        .args(c.get_args());
    if let Some(dir) = c.get_current_dir() {
        timed.current_dir(dir);
    }
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = timed.output().expect("/usr/bin/time (Debian package time)");
    let kib: u64 = fs::read_to_string(rss_file.path())
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time's %M");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, kib * 1024)
}

#[test]
fn a_big_sparse_output_is_streamed_and_restored_sparse() {
    const GIB: u64 = 1 << 30;
    const MAX_RSS: u64 = 200 << 20;
    let p = Project::new();
    p.config(
        "[tasks.big]\nkind = \"exec\"\nrun = \"truncate -s 1G big.bin && echo end >> big.bin\"\n\
         outputs = [\"big.bin\"]\n",
    );
    let (r, rss) = output_with_rss(p.cmd(&["--json", "run"]));
    assert_eq!(r.ran(), ["big"], "{}", r.all());
    assert!(rss < MAX_RSS, "saving took {} MiB", rss >> 20);
    let blobs: u64 = walk_blocks(&p.p(".lifeos/blobs"));
    assert!(blobs < 16 << 20, "the blob is sparse too: {blobs} bytes");

    fs::remove_file(p.p("big.bin")).unwrap();
    let (r, rss) = output_with_rss(p.cmd(&["--json", "run"]));
    assert_eq!(r.cached(), ["big"], "{}", r.all());
    assert!(rss < MAX_RSS, "restoring took {} MiB", rss >> 20);
    let m = fs::metadata(p.p("big.bin")).unwrap();
    assert_eq!(m.len(), GIB + 4);
    assert!(
        m.blocks() * 512 < 16 << 20,
        "restored sparse: {} bytes allocated",
        m.blocks() * 512
    );
    let f = fs::File::open(p.p("big.bin")).unwrap();
    let mut tail = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut tail, GIB).unwrap();
    assert_eq!(&tail, b"end\n");
}

/// Bytes allocated to the files under `dir`.
fn walk_blocks(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            walk_blocks(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

#[test]
fn an_unwritable_cache_exits_3_before_any_task_runs() {
    let p = Project::new();
    p.config("[tasks.a]\nkind = \"exec\"\nrun = \"touch ran.marker\"\n");
    // Root ignores permission bits: run lifeos as nobody on a tree nobody owns.
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let cmd = |args: &[&str]| {
        let mut c = p.cmd(args);
        if as_root {
            c.uid(65534).gid(65534);
        }
        c
    };
    if as_root {
        chown_tree(p.path(), 65534);
        fs::set_permissions(p.path(), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let r = output(cmd(&["--json", "run"]));
    assert_eq!(r.ran(), ["a"], "{}", r.all());
    fs::remove_file(p.p("ran.marker")).unwrap();
    fs::set_permissions(p.p(".lifeos"), fs::Permissions::from_mode(0o500)).unwrap();
    let r = output(cmd(&["--force", "run"]));
    fs::set_permissions(p.p(".lifeos"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(
        r.stderr.contains("not writable") && r.stderr.contains(".lifeos"),
        "{}",
        r.all()
    );
    assert!(!p.p("ran.marker").exists(), "the task did not run");
}

fn chown_tree(dir: &Path, id: u32) {
    std::os::unix::fs::lchown(dir, Some(id), Some(id)).unwrap();
    for e in fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            chown_tree(&e.path(), id);
        } else {
            std::os::unix::fs::lchown(e.path(), Some(id), Some(id)).unwrap();
        }
    }
}

fn output(mut c: Command) -> Run {
    let o = c.output().expect("run lifeos");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn temp_files_left_by_a_killed_run_are_counted_and_pruned() {
    let p = Project::new();
    p.config(OK_TASK);
    assert_eq!(p.json(&["run"]).code, 0);
    let old = [
        ".lifeos/.tmpA1",
        ".lifeos/ac/.tmpB2",
        ".lifeos/blobs/ab/.tmpC3",
    ];
    for f in old {
        p.file(f, &"x".repeat(1000));
        backdate(&p.p(f));
    }
    // A live run's temp file: recent, so prune leaves it.
    fs::write(p.p(".lifeos/blobs/.tmpLive"), "y").unwrap();
    let s = p.run(&["cache", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["tmp_files"], 4, "{v}");
    assert_eq!(v["tmp_bytes"], 3001, "{v}");
    let r = p.run(&["cache", "prune", "--older-than", "7d", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["tmp_removed"], 3, "{}", r.all());
    for f in old {
        assert!(!p.p(f).exists(), "{f}");
    }
    assert!(p.p(".lifeos/blobs/.tmpLive").exists());
    assert_eq!(p.json(&["run"]).cached(), ["a"]);
}

#[test]
fn the_cache_is_private_whatever_the_umask() {
    let p = Project::new();
    p.config(&format!("{OK_TASK}secrets = [\"TOKEN\"]\n"));
    let mut c = p.cmd(&["run"]);
    c.env("TOKEN", "t");
    // SAFETY: umask is async-signal-safe and only changes the child's mask.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    assert_eq!(output(c).code, 0);
    let mut seen = 0;
    check_modes(&p.p(".lifeos"), &mut seen);
    assert!(seen > 5, "{seen} entries checked");
}

fn check_modes(dir: &Path, seen: &mut usize) {
    let mode = fs::symlink_metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{}", dir.display());
    for e in fs::read_dir(dir).unwrap().flatten() {
        *seen += 1;
        let m = fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            check_modes(&e.path(), seen);
        } else {
            assert_eq!(
                m.permissions().mode() & 0o777,
                0o600,
                "{}",
                e.path().display()
            );
        }
    }
}

#[test]
fn non_utf8_names_are_hashed_archived_and_restored() {
    let p = Project::new();
    p.config(
        "[tasks.copy]\nkind = \"exec\"\nrun = \"mkdir -p out && cp in/* out/\"\n\
         inputs = [\"in/**\"]\noutputs = [\"out/**\"]\n",
    );
    let name = OsStr::from_bytes(b"caf\xe9-\xff.txt");
    fs::create_dir_all(p.p("in")).unwrap();
    fs::write(p.p("in").join(name), "v1").unwrap();
    backdate(&p.p("in").join(name));
    let r = p.json(&["run"]);
    assert_eq!(r.ran(), ["copy"], "{}", r.all());
    assert_eq!(fs::read(p.p("out").join(name)).unwrap(), b"v1");
    assert_eq!(p.json(&["run"]).cached(), ["copy"]);

    fs::write(p.p("in").join(name), "v2").unwrap();
    let plan = p.run(&["plan"]);
    assert!(
        plan.stdout.contains("caf\\xe9-\\xff.txt changed"),
        "{}",
        plan.all()
    );
    let r = p.json(&["run"]);
    assert_eq!(r.ran(), ["copy"], "{}", r.all());

    fs::remove_dir_all(p.p("out")).unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.cached(), ["copy"], "{}", r.all());
    assert_eq!(fs::read(p.p("out").join(name)).unwrap(), b"v2");
}

#[test]
fn a_newline_in_a_file_name_is_escaped_when_printed() {
    let p = Project::new();
    p.config("[tasks.a]\nkind = \"exec\"\nrun = \"true\"\ninputs = [\"in/**\"]\n");
    p.file("in/evil\nlifeos: all tasks cached", "1");
    assert_eq!(p.run(&["run"]).code, 0);
    fs::write(p.p("in/evil\nlifeos: all tasks cached"), "2").unwrap();
    let plan = p.run(&["plan"]);
    assert!(
        plan.stdout.contains("in/evil\\nlifeos: all tasks cached"),
        "{}",
        plan.all()
    );
    assert!(
        !plan.stdout.lines().any(|l| l.starts_with("lifeos: all")),
        "no forged line: {}",
        plan.all()
    );
}

/// Run `c`, killing it if it has not finished in a minute (a hang, not slowness).
fn output_or_kill(mut c: Command) -> Run {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    c.stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .stdin(std::process::Stdio::null());
    let mut child = c.spawn().unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lifeos hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |mut f: fs::File| {
        use std::io::{Read, Seek};
        let mut s = String::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut s).unwrap();
        s
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: read(out),
        stderr: read(err),
    }
}

#[test]
fn a_fifo_among_the_inputs_is_skipped_with_a_warning() {
    let p = Project::new();
    p.config("[tasks.a]\nkind = \"exec\"\nrun = \"true\"\ninputs = [\"in/**\"]\n");
    p.file("in/ok.txt", "x");
    let fifo = std::ffi::CString::new(p.p("in/pipe").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    for args in [&["plan"][..], &["run"]] {
        let r = output_or_kill(p.cmd(args));
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
        let all = r.all();
        assert!(all.contains("in/pipe") && all.contains("FIFO"), "{all}");
    }
}

#[test]
fn a_change_behind_a_symlinked_input_reruns_the_task() {
    let p = Project::new();
    p.config("[tasks.a]\nkind = \"exec\"\nrun = \"cat in/link > out.txt\"\ninputs = [\"in/**\"]\n");
    p.file("data/real.txt", "v1");
    fs::create_dir_all(p.p("in")).unwrap();
    symlink("../data/real.txt", p.p("in/link")).unwrap();
    assert_eq!(p.json(&["run"]).ran(), ["a"]);
    assert_eq!(p.json(&["run"]).cached(), ["a"]);
    fs::write(p.p("data/real.txt"), "v2").unwrap();
    let r = p.json(&["run"]);
    assert_eq!(r.ran(), ["a"], "{}", r.all());
    assert_eq!(p.read("out.txt"), "v2");
    // And the link text counts too: a new link to the same content.
    p.file("data/copy.txt", "v2");
    fs::remove_file(p.p("in/link")).unwrap();
    symlink("../data/copy.txt", p.p("in/link")).unwrap();
    assert_eq!(p.json(&["run"]).ran(), ["a"]);
}

#[test]
fn a_non_utf8_name_in_an_image_context_is_sent_as_is() {
    let fx = crate::support::DockerFx::new();
    fx.p.file(
        "app/Dockerfile",
        &format!("FROM {}\nCOPY . /ctx/\n", fx.base()),
    )
    .config(&format!(
        "[tasks.img]\nkind = \"image\"\ncontext = \"app\"\ntag = \"{}\"\n\
         labels = {{ \"lifeos.test\" = \"{}\" }}\n",
        fx.tag("img"),
        fx.id
    ));
    let name = OsStr::from_bytes(b"caf\xe9.txt");
    fs::write(fx.p.p("app").join(name), "v1").unwrap();
    let r = fx.p.json(&["build"]);
    assert_eq!(r.ran(), ["img"], "{}", r.all());
    let listed = fx.cli_run(&fx.tag("img"), &["sh", "-c", "cat /ctx/caf?.txt"]);
    assert_eq!(listed.trim(), "v1");
}
