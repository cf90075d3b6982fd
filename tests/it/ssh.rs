//! `DOCKER_HOST=ssh://user@host:port` against a real sshd: a private one on a free port
//! (its own host key and config), an ssh-agent holding a fresh client key, and the real
//! engine behind it through `docker system dial-stdio`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{docker, free_port, DockerFx, Run};

/// sshd and ssh-agent for one test; both are killed, and the host key lifeos learned is
/// removed from ~/.ssh/known_hosts, on drop.
struct SshServer {
    dir: tempfile::TempDir,
    port: u16,
    sshd: Child,
    agent: Child,
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen runs (openssh-client; scripts/setup.sh installs it)");
    assert!(ok.success());
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl SshServer {
    fn start() -> Self {
        let sshd_bin = Path::new("/usr/sbin/sshd");
        assert!(
            sshd_bin.exists(),
            "no /usr/sbin/sshd: install openssh-server (scripts/setup.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        keygen(&d.join("host_key"));
        keygen(&d.join("client_key"));
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPidFile {d}/sshd.pid\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPermitRootLogin prohibit-password\n",
                d = d.display()
            ),
        )
        .unwrap();
        // sshd's privilege separation directory (Debian creates it only from its service).
        fs::create_dir_all("/run/sshd").unwrap();
        let sshd = Command::new(sshd_bin)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stderr(fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        let agent = Command::new("ssh-agent")
            .args(["-D", "-a"])
            .arg(d.join("agent.sock"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = SshServer {
            dir,
            port,
            sshd,
            agent,
        };
        wait_for("sshd listens", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        wait_for("ssh-agent listens", || server.agent_sock().exists());
        let added = Command::new("ssh-add")
            .arg("-q")
            .arg(server.dir.path().join("client_key"))
            .env("SSH_AUTH_SOCK", server.agent_sock())
            .status()
            .unwrap();
        assert!(added.success(), "ssh-add");
        server
    }

    fn agent_sock(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    fn url(&self) -> String {
        format!("ssh://{}@127.0.0.1:{}", user(), self.port)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// ssh processes still running for this server's port.
    fn clients(&self) -> String {
        let out = Command::new("pgrep")
            .args(["-af", &format!("^ssh .*-p {} ", self.port)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.agent.kill();
        let _ = self.sshd.wait();
        let _ = self.agent.wait();
        let _ = Command::new("ssh-keygen")
            .args(["-R", &format!("[127.0.0.1]:{}", self.port)])
            .output();
    }
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn build(fx: &DockerFx, host: &str, agent: &Path) -> Run {
    fx.p.json_env(
        &["build"],
        &[
            ("DOCKER_HOST", host),
            ("SSH_AUTH_SOCK", agent.to_str().unwrap()),
        ],
    )
}

#[test]
fn an_ssh_engine_builds_with_both_builders_and_then_finds_them_cached() {
    let server = SshServer::start();
    let fx = DockerFx::new();
    fx.p.file("app/hello.txt", "over ssh\n").file(
        "app/Dockerfile",
        &format!("FROM {}\nCOPY hello.txt /hello.txt\n", fx.base()),
    );
    let task = |name: &str, builder: &str| {
        format!(
            "[tasks.{name}]\nkind = \"image\"\ncontext = \"app\"\ntag = \"{tag}\"\n\
             builder = \"{builder}\"\nlabels = {{ \"lifeos.test\" = \"{id}\" }}\n\n",
            tag = fx.tag(name),
            id = fx.id
        )
    };
    fx.p.config(&format!(
        "{}{}",
        task("classic", "classic"),
        task("bk", "buildkit")
    ));

    let r = build(&fx, &server.url(), &server.agent_sock());
    assert_eq!(r.code, 0, "{}\nsshd: {}", r.all(), server.log());
    assert_eq!(r.ran(), ["bk", "classic"], "{}", r.all());
    // The images are in the engine behind ssh (the same one the local CLI reaches).
    for t in ["classic", "bk"] {
        let out = fx.cli_run(&fx.tag(t), &["cat", "/hello.txt"]);
        assert_eq!(out, "over ssh", "{t}");
    }
    // Every connection was an ssh process and none outlives lifeos.
    assert_eq!(server.clients(), "", "ssh processes left behind");
    assert!(
        server.log().contains("Accepted publickey"),
        "lifeos came through sshd: {}",
        server.log()
    );

    let ids = docker(&["image", "inspect", "--format", "{{.Id}}", &fx.tag("bk")]);
    let r = build(&fx, &server.url(), &server.agent_sock());
    assert_eq!(r.code, 0, "{}", r.all());
    assert_eq!(r.cached(), ["bk", "classic"], "{}", r.all());
    let again = docker(&["image", "inspect", "--format", "{{.Id}}", &fx.tag("bk")]);
    assert_eq!(ids, again);
    assert_eq!(server.clients(), "", "ssh processes left behind");
}

#[test]
fn ssh_that_cannot_get_in_is_exit_3_with_ssh_s_reason() {
    let server = SshServer::start();
    let p = crate::support::Project::new();
    p.file("d/Dockerfile", "FROM lifeos-no-such-base:1\n")
        .config("[tasks.x]\nkind = \"image\"\ncontext = \"d\"\n");
    let run = |host: &str, agent: &Path| {
        p.run_env(
            &["build"],
            &[
                ("DOCKER_HOST", host),
                ("SSH_AUTH_SOCK", agent.to_str().unwrap()),
            ],
        )
    };

    // An agent without the key: sshd refuses, and ssh's words reach the user.
    let empty = tempfile::tempdir().unwrap();
    let no_agent = empty.path().join("none.sock");
    let r = run(&server.url(), &no_agent);
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains(&server.url()), "{}", r.all());
    assert!(r.stderr.contains("Permission denied"), "{}", r.all());
    assert!(
        r.stderr.contains("BatchMode"),
        "says what to try: {}",
        r.all()
    );

    // Nothing listening.
    let closed = format!("ssh://{}@127.0.0.1:{}", user(), free_port());
    let r = run(&closed, &server.agent_sock());
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("Connection refused"), "{}", r.all());

    // A password in the URL is refused, and not repeated.
    let r = run("ssh://me:hunter2@127.0.0.1:22", &server.agent_sock());
    assert_eq!(r.code, 3, "{}", r.all());
    assert!(r.stderr.contains("password"), "{}", r.all());
    assert!(!r.all().contains("hunter2"), "{}", r.all());
}
