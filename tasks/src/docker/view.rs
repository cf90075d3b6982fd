//! What lifeos last learned about images from the engine, kept between runs and trusted only
//! as far as the engine's own event log shows that nothing changed them since.
//!
//! The engine keeps its newest 256 events in memory and replays a time range of them on
//! `GET /events?since=..&until=..` (as cheap as a ping). The saved state holds a *mark*: the
//! newest event (of any kind) the engine had when the facts were checked. Next run, one
//! events call since the mark: when the answer still starts at the mark, the engine lost
//! nothing in between, and the image events in it say exactly what changed. Each one drops
//! only the facts it is about (its image ID or reference is the one inspected, the fact's
//! image, or one of its tags); the rest still hold, and a no-op needs no inspect for them.
//! So a `docker build` or `docker pull` of other images, or containers coming and going,
//! costs nothing. When the mark is gone (256 newer events, an engine restart) every fact
//! is dropped, lifeos inspects as before, then sets a new mark. The mark is the newest event
//! of any kind, not only of images: other events (health checks) would push an older image
//! event out of the buffer.
//!
//! Only for local engines (unix socket): `until` is the client's clock, and a remote engine
//! with a clock ahead of it would hold the call open until its own time caught up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lifeos_engine::TaskError;
use serde::{Deserialize, Serialize};

/// 2: the mark is the newest event of any kind, and events drop only what they are about.
const VERSION: u32 = 2;

/// One engine event, as precise as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub time_nano: i64,
    /// `image`, `container`, `network`, ...
    #[serde(default)]
    pub kind: String,
    pub action: String,
    pub id: String,
    /// The `name` attribute: for an image event the reference it is about (`tag`, `pull`).
    #[serde(default)]
    pub name: String,
}

impl Mark {
    /// Is this image event about `reference` (a tag or an image ID) or what it named?
    fn affects(&self, reference: &str, facts: Option<&ImageFacts>) -> bool {
        let hit = |s: &str| {
            let s = normalize(s);
            (!self.id.is_empty() && normalize(&self.id) == s)
                || (!self.name.is_empty() && normalize(&self.name) == s)
        };
        hit(reference) || facts.is_some_and(|f| hit(&f.id) || f.tags.iter().any(|t| hit(t)))
    }
}

/// A reference as the engine names it in events: without the default registry, with the
/// default tag (`docker.io/library/busybox` and `busybox:latest` are one image).
fn normalize(r: &str) -> std::borrow::Cow<'_, str> {
    if r.starts_with("sha256:") {
        return r.into();
    }
    let r = [
        "docker.io/library/",
        "index.docker.io/library/",
        "docker.io/",
    ]
    .iter()
    .find_map(|p| r.strip_prefix(p))
    .unwrap_or(r);
    let name = r.rsplit('/').next().unwrap_or(r);
    if name.contains(':') || name.contains('@') {
        r.into()
    } else {
        format!("{r}:latest").into()
    }
}

/// What an inspect of a reference showed; `None` in [`State::images`] means "no such image".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    pub id: String,
    /// The `lifeos.key` label, if any.
    pub key: Option<String>,
    pub tags: Vec<String>,
}

/// The file `.lifeos/engine.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The DOCKER_HOST these facts are about.
    pub host: String,
    pub mark: Option<Mark>,
    /// By the reference inspected (a tag or an image ID).
    pub images: BTreeMap<String, Option<ImageFacts>>,
}

/// The run's view: the saved facts, whether they may be used, and what to save.
#[derive(Debug, Default)]
pub struct View {
    pub path: Option<PathBuf>,
    pub state: State,
    /// The saved facts still hold (the events since the mark are the mark alone).
    pub trusted: bool,
    pub dirty: bool,
}

impl View {
    /// The facts about `reference`, when they are known to hold.
    pub fn get(&self, reference: &str) -> Option<Option<ImageFacts>> {
        if !self.trusted {
            return None;
        }
        self.state.images.get(reference).cloned()
    }

    /// Remember an inspect's answer (only worth it once there is a mark to check it by).
    pub fn put(&mut self, reference: &str, facts: Option<ImageFacts>) {
        if self.state.mark.is_some() && self.state.images.get(reference) != Some(&facts) {
            self.state.images.insert(reference.to_string(), facts);
            self.dirty = true;
        }
    }

    /// Drop the facts that image `events` are about; an image event that names nothing
    /// (`prune`) drops them all.
    fn apply(&mut self, events: &[Mark]) {
        let before = self.state.images.len();
        for ev in events.iter().filter(|e| e.kind == "image") {
            if ev.id.is_empty() && ev.name.is_empty() {
                self.state.images.clear();
                break;
            }
            self.state.images.retain(|r, f| !ev.affects(r, f.as_ref()));
        }
        self.dirty |= self.state.images.len() != before;
    }

    /// This run changed images (a tag, a build): what was learned about them is stale. The
    /// engine logs those changes too, and the next run drops what they are about.
    pub fn forget(&mut self, reference: &str, image_id: &str) {
        let before = self.state.images.len();
        self.state.images.retain(|r, f| {
            r != reference
                && r != image_id
                && f.as_ref()
                    .is_none_or(|f| f.id != image_id && !f.tags.iter().any(|t| t == reference))
        });
        self.dirty |= self.state.images.len() != before;
    }

    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        lifeos_cache::atomic::write_json(path, &self.state)
    }
}

fn read_state(path: &Path, host: &str) -> Option<State> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<State>(&bytes)
        .ok()
        .filter(|s| s.version == VERSION && s.host == host)
}

/// Load the saved state and check it against the engine's event log.
pub async fn open(socket: &str, path: Option<PathBuf>, host: &str) -> Result<View, TaskError> {
    start(socket, path, host).finish().await
}

/// The saved state, with the events call since its mark already on its way: a run starts
/// it before keying its tasks, so the engine answers while lifeos hashes (on a no-op, the
/// engine's ~1 ms answer was otherwise waited for after the keys, in series).
pub struct Pending {
    socket: String,
    path: Option<PathBuf>,
    state: State,
    until: i64,
    since_mark: Option<tokio::task::JoinHandle<Result<Option<Vec<Mark>>, TaskError>>>,
}

/// Read the saved state and send the events call since its mark (spawned on the runtime).
pub fn start(socket: &str, path: Option<PathBuf>, host: &str) -> Pending {
    let state = path
        .as_deref()
        .and_then(|p| read_state(p, host))
        .unwrap_or_else(|| State {
            version: VERSION,
            host: host.to_string(),
            ..State::default()
        });
    let until = now_nano();
    let since_mark = state.mark.as_ref().map(|mark| {
        let (socket, since) = (socket.to_string(), mark.time_nano);
        tokio::spawn(async move { engine_events(&socket, Some(since), until).await })
    });
    Pending {
        socket: socket.to_string(),
        path,
        state,
        until,
        since_mark,
    }
}

impl Pending {
    /// Judge the saved facts by the engine's answer.
    pub async fn finish(self) -> Result<View, TaskError> {
        let Pending {
            socket,
            path,
            state,
            until,
            since_mark,
        } = self;
        let mut changes = None;
        let mut newest = None;
        let mut refused = false;
        if let (Some(mark), Some(answer)) = (&state.mark, since_mark) {
            // A task that died (it cannot panic; cancelled only with the runtime) is no
            // answer: the facts are then not used.
            match answer.await.unwrap_or(Ok(None))? {
                Some(events) => (changes, newest) = judge(mark, events),
                None => refused = true,
            }
        }
        if changes.is_none() && newest.is_none() && !refused {
            // No mark, or it fell out of the buffer: the newest event the engine still has.
            newest = engine_events(&socket, None, until)
                .await?
                .and_then(|mut e| e.pop());
        }
        let trusted = changes.is_some();
        let mut view = View {
            path,
            state,
            trusted,
            dirty: false,
        };
        match changes {
            Some(changes) => view.apply(&changes),
            None => {
                let s = &mut view.state;
                view.dirty = s.mark.is_some() || !s.images.is_empty() || newest.is_some();
                s.images.clear();
            }
        }
        if view.state.mark != newest {
            view.dirty = true;
            view.state.mark = newest;
        }
        Ok(view)
    }
}

/// Given the events since (and including) the mark: the events after it when the engine
/// still holds the mark (None: it lost events since, nothing can be trusted); and the newest
/// event, the next mark.
fn judge(mark: &Mark, mut events: Vec<Mark>) -> (Option<Vec<Mark>>, Option<Mark>) {
    let newest = events.pop();
    let Some(last) = newest.clone() else {
        return (None, None);
    };
    events.push(last);
    // Events of the mark's own nanosecond may come before it; they count as changes.
    let changes = match events.iter().position(|e| e == mark) {
        Some(at) => {
            events.remove(at);
            Some(events)
        }
        None => None,
    };
    (changes, newest)
}

/// An event as the engine sends it, reduced to what a [`Mark`] keeps (the rest is skipped
/// unparsed: a busy engine's answer holds many container events).
#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: RawActor,
    #[serde(rename = "timeNano", default)]
    time_nano: i64,
}

#[derive(Deserialize, Default)]
struct RawActor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: RawAttributes,
}

#[derive(Deserialize, Default)]
struct RawAttributes {
    #[serde(default)]
    name: String,
}

/// JSON event lines; None when one is not an event.
fn parse_events(body: &[u8]) -> Option<Vec<Mark>> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<RawEvent>()
        .map(|ev| ev.ok().map(mark_of))
        .collect()
}

fn mark_of(ev: RawEvent) -> Mark {
    Mark {
        time_nano: ev.time_nano,
        kind: ev.kind,
        action: ev.action,
        id: ev.actor.id,
        name: ev.actor.attributes.name,
    }
}

/// The events the engine still holds from `since` to `until`, oldest first; None when the
/// engine cannot be reached or refused (the facts are then simply not used, and the
/// inspects that follow report what is wrong). An engine that does not answer is an error.
async fn engine_events(
    socket: &str,
    since: Option<i64>,
    until: i64,
) -> Result<Option<Vec<Mark>>, TaskError> {
    use http_body_util::BodyExt;
    let call = async {
        let stream = tokio::net::UnixStream::connect(socket).await.ok()?;
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
        tokio::spawn(conn);
        let since = since
            .map(|s| format!("since={}&", timestamp(s)))
            .unwrap_or_default();
        let req = http::Request::get(format!("/events?{since}until={}", timestamp(until)))
            .header("Host", "docker")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let resp = send.send_request(req).await.ok()?;
        if resp.status() != http::StatusCode::OK {
            return Some(None);
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(parse_events(&body))
    };
    match tokio::time::timeout(super::QUICK, call).await {
        Err(_) => Err(TaskError::Environment(super::connect_error(
            "no answer within 15 s",
        ))),
        Ok(answer) => Ok(answer.flatten()),
    }
}

fn now_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The engine's `seconds.nanoseconds` form.
fn timestamp(nano: i64) -> String {
    format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(t: i64, action: &str) -> Mark {
        Mark {
            time_nano: t,
            kind: "image".into(),
            action: action.into(),
            id: format!("sha256:{t}"),
            name: String::new(),
        }
    }

    #[test]
    fn the_events_after_the_mark_are_the_changes_while_the_engine_still_holds_it() {
        let m = mark(10, "tag");
        assert_eq!(judge(&m, vec![m.clone()]), (Some(vec![]), Some(m.clone())));
        let later = mark(11, "untag");
        assert_eq!(
            judge(&m, vec![m.clone(), later.clone()]),
            (Some(vec![later.clone()]), Some(later.clone()))
        );
        // The mark is gone from the engine's buffer (256 newer events, or a restart).
        assert_eq!(judge(&m, vec![later.clone()]), (None, Some(later)));
        assert_eq!(judge(&m, vec![]), (None, None));
        // Another event in the same nanosecond is not the mark.
        assert_eq!(judge(&m, vec![mark(10, "delete")]).0, None);
    }

    fn facts(id: &str, tags: &[&str]) -> Option<ImageFacts> {
        Some(ImageFacts {
            id: id.into(),
            key: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        })
    }

    fn event(kind: &str, action: &str, id: &str, name: &str) -> Mark {
        Mark {
            time_nano: 1,
            kind: kind.into(),
            action: action.into(),
            id: id.into(),
            name: name.into(),
        }
    }

    /// Events drop only the facts they are about: other images' builds and tags, and
    /// containers, leave them.
    #[test]
    fn an_event_drops_only_the_facts_it_is_about() {
        let view = || {
            let mut v = View::default();
            v.state.mark = Some(mark(1, "tag"));
            v.trusted = true;
            v.put("base:1", facts("sha256:b", &["base:1"]));
            v.put("sha256:w", facts("sha256:w", &["web:1"]));
            v.put("sha256:a", facts("sha256:a", &["api:1", "api:latest"]));
            v.put("gone:1", None);
            v.dirty = false;
            v
        };
        let kept = |v: &View| v.state.images.keys().cloned().collect::<Vec<_>>();

        let mut v = view();
        v.apply(&[
            event("image", "tag", "sha256:o", "other:1"),
            event("image", "pull", "alpine:latest", "alpine:latest"),
            event("image", "untag", "sha256:o", "sha256:o"),
            event("container", "die", "sha256:w", "base:1"),
        ]);
        assert_eq!(kept(&v), ["base:1", "gone:1", "sha256:a", "sha256:w"]);
        assert!(!v.dirty);

        for (ev, dropped) in [
            // The image itself: untagged, deleted.
            (event("image", "untag", "sha256:w", "sha256:w"), "sha256:w"),
            // A tag moved onto another image: the reference, and the image that had it.
            (event("image", "tag", "sha256:n", "base:1"), "base:1"),
            (event("image", "tag", "sha256:n", "api:1"), "sha256:a"),
            // The default tag and registry are the same image.
            (
                event("image", "tag", "sha256:n", "docker.io/library/api"),
                "sha256:a",
            ),
            // An absent image that appeared.
            (event("image", "pull", "gone:1", "gone:1"), "gone:1"),
        ] {
            let mut v = view();
            v.apply(std::slice::from_ref(&ev));
            assert!(!v.state.images.contains_key(dropped), "{ev:?}");
            assert_eq!(v.state.images.len(), 3, "only {dropped} dropped by {ev:?}");
            assert!(v.dirty);
        }
        // An image event that names nothing (prune): everything goes.
        let mut v = view();
        v.apply(&[event("image", "prune", "", "")]);
        assert!(v.state.images.is_empty());
    }

    /// A one-connection engine on a unix socket that answers any request with `answer`.
    fn fake_engine(answer: &'static [u8]) -> (tempfile::TempDir, String) {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("engine.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && c.read(&mut b).unwrap_or(0) == 1 {
                head.push(b[0]);
            }
            let _ = c.write_all(answer);
        });
        (dir, sock.to_str().unwrap().to_string())
    }

    async fn ask(answer: &'static [u8]) -> Option<Vec<Mark>> {
        let (_dir, sock) = fake_engine(answer);
        engine_events(&sock, Some(1), 2).await.unwrap()
    }

    /// What dockerd 20.10 sends for `GET /events?since=..&until=..`: chunked (chunks need
    /// not end at event boundaries), then closed.
    #[tokio::test]
    async fn a_chunked_answer_is_read_whole() {
        let got = ask(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\
            Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
            28\r\n{\"Type\":\"container\",\"Action\":\"start\",\"Ac\r\n\
            3a\r\ntor\":{\"ID\":\"c1\",\"Attributes\":{\"name\":\"db\"}},\"timeNano\":7}\n\r\n\
            87\r\n{\"status\":\"tag\",\"id\":\"sha256:ab\",\"Type\":\"image\",\"Action\":\"tag\",\"Actor\":{\"ID\":\"sha256:ab\",\"Attributes\":{\"name\":\"web:1\"}},\"timeNano\":42}\n\r\n\
            0\r\n\r\n")
        .await;
        let mut start = event("container", "start", "c1", "db");
        start.time_nano = 7;
        let mut tag = event("image", "tag", "sha256:ab", "web:1");
        tag.time_nano = 42;
        assert_eq!(got, Some(vec![start, tag]));
        let none = ask(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await;
        assert_eq!(none, Some(vec![]));
    }

    /// An error status, an answer cut short, or a body that is not events: never read as
    /// "no events since the mark" (the facts are then not used).
    #[tokio::test]
    async fn error_cut_and_malformed_answers_are_not_answers() {
        let cases: [&'static [u8]; 5] = [
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n1b\r\n{\"message\":\"engine broke\"}\r\n0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n30\r\n{\"Type\":\"image\",\"Act",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Enc",
        ];
        for c in cases {
            assert_eq!(ask(c).await, None, "{}", String::from_utf8_lossy(c));
        }
        // Nothing listening: no answer either (the inspects that follow report it).
        let gone = engine_events("/nonexistent/engine.sock", None, 2)
            .await
            .unwrap();
        assert_eq!(gone, None);
    }

    #[test]
    fn facts_are_kept_only_with_a_mark_and_forgotten_when_a_tag_moves() {
        let facts = |id: &str, tags: &[&str]| {
            Some(ImageFacts {
                id: id.into(),
                key: None,
                tags: tags.iter().map(|t| t.to_string()).collect(),
            })
        };
        let mut v = View::default();
        v.put("base:1", facts("sha256:b", &["base:1"]));
        assert!(
            v.state.images.is_empty(),
            "no mark: nothing could ever trust it"
        );
        v.state.mark = Some(mark(1, "tag"));
        v.trusted = true;
        v.put("base:1", facts("sha256:b", &["base:1"]));
        v.put("sha256:w", facts("sha256:w", &["web:1"]));
        v.put("sha256:a", facts("sha256:a", &["api:1"]));
        assert_eq!(v.get("base:1"), Some(facts("sha256:b", &["base:1"])));
        // web:1 now names image sha256:n: what was known of web:1's old image goes too.
        v.forget("web:1", "sha256:n");
        assert_eq!(v.get("sha256:w"), None);
        assert!(v.get("sha256:a").is_some() && v.get("base:1").is_some());
        v.trusted = false;
        assert_eq!(v.get("base:1"), None);
    }
    #[test]
    fn timestamps_keep_every_nanosecond() {
        assert_eq!(timestamp(1_795_828_620_483_203_800), "1795828620.483203800");
        assert_eq!(timestamp(5), "0.000000005");
    }
}
