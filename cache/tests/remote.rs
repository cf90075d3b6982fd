//! The remote store against a small in-process HTTP server that keeps what is PUT (the Bazel
//! HTTP layout). The real nginx WebDAV server is exercised by tests/it/remote_cache.rs.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeos_cache::records::RECORD_VERSION;
use lifeos_cache::{
    ActionCache, ActionKey, ActionRecord, Cas, FileDigest, HttpRemote, RemoteConfig,
};

#[derive(Default)]
struct Server {
    store: Mutex<HashMap<String, Vec<u8>>>,
    /// Every request line with its Authorization header, if any.
    log: Mutex<Vec<String>>,
    /// Answer every request with this status instead.
    status: Mutex<Option<u16>>,
    /// Answer PUTs with this status (a full disk: 507).
    put_status: Mutex<Option<u16>>,
    /// Never answer (a hung server).
    hang: Mutex<bool>,
}

fn serve() -> (String, Arc<Server>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/lifeos", l.local_addr().unwrap());
    let s = Arc::new(Server::default());
    let srv = s.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let srv = srv.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let (mut len, mut auth) = (0usize, String::new());
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let lower = h.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if lower.starts_with("authorization:") {
                            auth = h.to_string();
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let mut parts = line.split_whitespace();
                    let (method, path) = (
                        parts.next().unwrap().to_string(),
                        parts.next().unwrap().to_string(),
                    );
                    srv.log
                        .lock()
                        .unwrap()
                        .push(format!("{method} {path} {auth}"));
                    if *srv.hang.lock().unwrap() {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    let forced = *srv.status.lock().unwrap();
                    let put_forced = *srv.put_status.lock().unwrap();
                    let (status, out): (u16, Vec<u8>) = match (forced, method.as_str()) {
                        (Some(s), _) => (s, vec![]),
                        (None, "PUT") if put_forced.is_some() => (put_forced.unwrap(), vec![]),
                        (None, "PUT") => {
                            srv.store.lock().unwrap().insert(path, body);
                            (201, vec![])
                        }
                        (None, m) => match srv.store.lock().unwrap().get(&path) {
                            Some(b) if m == "GET" => (200, b.clone()),
                            Some(_) => (200, vec![]),
                            None => (404, vec![]),
                        },
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n",
                        if method == "HEAD" { 0 } else { out.len() }
                    );
                    w.write_all(head.as_bytes()).unwrap();
                    if method != "HEAD" {
                        w.write_all(&out).unwrap();
                    }
                }
            });
        }
    });
    (url, s)
}

fn remote(url: &str, write: bool) -> HttpRemote {
    HttpRemote::new(RemoteConfig {
        url: url.into(),
        read: true,
        write,
        kinds: vec!["exec".into()],
        timeout: Duration::from_secs(5),
        stats_file: None,
    })
    .unwrap()
}

fn record(kind: &str, key: ActionKey, out: FileDigest) -> ActionRecord {
    ActionRecord {
        version: RECORD_VERSION,
        task: "t".into(),
        kind: kind.into(),
        key,
        finished_at: 1,
        duration_ms: 5,
        fingerprint: out,
        log: None,
        outputs: vec![],
        data: serde_json::Value::Null,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn what_one_writes_another_reads_checked() {
    let (url, srv) = serve();
    let rt = rt();
    let a = remote(&url, true);
    let d = Cas::put(&a, b"built output").unwrap();
    let key = ActionKey([7; 32]);
    rt.block_on(ActionCache::put(&a, record("exec", key, d)))
        .unwrap();
    assert_eq!(a.stats().uploads, 2);

    let b = remote(&url, false);
    let r = rt.block_on(b.lookup("t", &key)).expect("a remote hit");
    assert_eq!(r.fingerprint, d);
    assert_eq!(Cas::get(&b, &d).unwrap(), b"built output");
    assert!(Cas::contains(&b, &d));
    assert_eq!((b.stats().hits, b.stats().bytes_down > 0), (1, true));
    assert!(rt.block_on(b.lookup("t", &ActionKey([8; 32]))).is_none());
    assert_eq!(b.stats().misses, 1);

    // A blob changed on the server: a miss and a warning naming it, never the bad bytes.
    srv.store
        .lock()
        .unwrap()
        .insert(format!("/lifeos/cas/{}", d.to_hex()), b"tampered".to_vec());
    let e = Cas::get(&b, &d).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    let w = Cas::take_warnings(&b);
    assert!(w.iter().any(|w| w.contains(&d.to_hex())), "{w:?}");
}

#[test]
fn records_of_kinds_not_shared_stay_local() {
    let (url, srv) = serve();
    let rt = rt();
    let a = remote(&url, true);
    rt.block_on(ActionCache::put(
        &a,
        record("service", ActionKey([1; 32]), FileDigest::of(b"x")),
    ))
    .unwrap();
    assert!(
        srv.log.lock().unwrap().is_empty(),
        "a service record is never uploaded"
    );
    // One put there by someone else is not believed either.
    let body =
        serde_json::to_vec(&record("service", ActionKey([1; 32]), FileDigest::of(b"x"))).unwrap();
    srv.store
        .lock()
        .unwrap()
        .insert(format!("/lifeos/ac/{}", ActionKey([1; 32]).to_hex()), body);
    assert!(rt.block_on(a.lookup("t", &ActionKey([1; 32]))).is_none());
}

#[test]
fn read_only_never_puts() {
    let (url, srv) = serve();
    let rt = rt();
    let a = remote(&url, false);
    Cas::put(&a, b"x").unwrap();
    rt.block_on(ActionCache::put(
        &a,
        record("exec", ActionKey([2; 32]), FileDigest::of(b"x")),
    ))
    .unwrap();
    assert!(srv
        .log
        .lock()
        .unwrap()
        .iter()
        .all(|l| !l.starts_with("PUT")));
}

#[test]
fn an_outage_is_one_warning_and_then_silence() {
    let (url, srv) = serve();
    let rt = rt();
    *srv.status.lock().unwrap() = Some(503);
    let a = remote(&url, true);
    for i in 0..5u8 {
        assert!(rt.block_on(a.lookup("t", &ActionKey([i; 32]))).is_none());
    }
    assert_eq!(
        srv.log.lock().unwrap().len(),
        1,
        "asked once, then stayed local"
    );
    let w = ActionCache::take_warnings(&a);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(&url) && w[0].contains("503"), "{w:?}");

    // Nothing listens: refused, one warning naming the server.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/c", l.local_addr().unwrap());
    drop(l);
    let b = remote(&dead, true);
    assert!(Cas::get(&b, &FileDigest::of(b"y")).is_err());
    assert!(
        Cas::put(&b, b"y").is_ok(),
        "an upload failure is no task failure"
    );
    let w = Cas::take_warnings(&b);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains(&dead), "{w:?}");
}

#[test]
fn refused_credentials_name_the_server_not_the_secret() {
    let (url, srv) = serve();
    let rt = rt();
    *srv.status.lock().unwrap() = Some(401);
    std::env::set_var("LIFEOS_REMOTE_CACHE_TOKEN", "s3cr3t-token-value");
    let a = remote(&url, true);
    std::env::remove_var("LIFEOS_REMOTE_CACHE_TOKEN");
    assert!(rt.block_on(a.lookup("t", &ActionKey([4; 32]))).is_none());
    let log = srv.log.lock().unwrap().clone();
    assert!(
        log[0].contains("Bearer s3cr3t-token-value"),
        "the token is sent: {log:?}"
    );
    let w = ActionCache::take_warnings(&a);
    assert!(w[0].contains("401") && w[0].contains(&url), "{w:?}");
    assert!(!w[0].contains("s3cr3t"), "{w:?}");
}

#[test]
fn a_full_server_stops_uploads_but_not_reads() {
    let (url, srv) = serve();
    let rt = rt();
    let a = remote(&url, true);
    let d = Cas::put(&a, b"kept").unwrap();
    *srv.put_status.lock().unwrap() = Some(507);
    assert!(
        Cas::put(&a, b"one").is_ok(),
        "an upload refusal is no failure"
    );
    assert!(Cas::put(&a, b"two").is_ok());
    let puts = srv
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("PUT"))
        .count();
    assert_eq!(puts, 2, "after the 507, no more uploads");
    let w = Cas::take_warnings(&a);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("507") && w[0].contains("refuses uploads"),
        "{w:?}"
    );
    // Reads go on.
    assert_eq!(Cas::get(&a, &d).unwrap(), b"kept");
    assert!(rt.block_on(a.lookup("t", &ActionKey([5; 32]))).is_none());
}

#[test]
fn a_hung_server_times_out_once_and_is_left_alone() {
    let (url, srv) = serve();
    let rt = rt();
    *srv.hang.lock().unwrap() = true;
    let a = HttpRemote::new(RemoteConfig {
        url: url.clone(),
        read: true,
        write: true,
        kinds: vec!["exec".into()],
        timeout: Duration::from_millis(300),
        stats_file: None,
    })
    .unwrap();
    for i in 0..3u8 {
        assert!(rt.block_on(a.lookup("t", &ActionKey([i; 32]))).is_none());
    }
    assert_eq!(
        srv.log.lock().unwrap().len(),
        1,
        "one request, then local only"
    );
    let w = ActionCache::take_warnings(&a);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("timed out") && w[0].contains(&url), "{w:?}");
    assert_eq!(a.stats().errors, 1);
}
