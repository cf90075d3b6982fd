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
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
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

/// Load the saved state and check it against the engine's event log (with the call
/// [`send_early`] made, when it made one for this file).
pub async fn open(socket: &str, path: Option<PathBuf>, host: &str) -> Result<View, TaskError> {
    let early = EARLY
        .lock()
        .unwrap()
        .take()
        .filter(|e| Some(&e.path) == path.as_ref() && e.host == host);
    let (state, until, mut answer) = match early {
        Some(e) => {
            let (state, until) = (e.state, e.until);
            (state, until, Some(read_answer(e.stream).await?))
        }
        None => {
            let state = path
                .as_deref()
                .and_then(|p| read_state(p, host))
                .unwrap_or_else(|| State {
                    version: VERSION,
                    host: host.to_string(),
                    ..State::default()
                });
            (state, now_nano(), None)
        }
    };
    let mut changes = None;
    let mut newest = None;
    let mut refused = false;
    if let Some(mark) = &state.mark {
        let events = match answer.take() {
            Some(a) => a,
            None => engine_events(socket, Some(mark.time_nano), until).await?,
        };
        match events {
            Some(events) => (changes, newest) = judge(mark, events),
            None => refused = true,
        }
    }
    if changes.is_none() && newest.is_none() && !refused {
        // No mark, or it fell out of the buffer: the newest event the engine still has.
        newest = engine_events(socket, None, until)
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

/// The events call for a saved mark, sent by [`send_early`] and not yet read.
struct Early {
    path: PathBuf,
    host: String,
    state: State,
    until: i64,
    stream: UnixStream,
}

static EARLY: Mutex<Option<Early>> = Mutex::new(None);

/// Send the events call that checks the view saved in `path` now, before lifeos reads its
/// config, and read the answer when the run first needs the view. An idle engine takes
/// ~0.6 ms to answer, about what the config and the build contexts take here; in series the
/// two were a fifth of a no-op. A plain HTTP/1.1 request on a blocking socket: bollard's
/// requests only go out when the async runtime next turns, which on a no-op is after that
/// work. Nothing is sent without a saved mark or for a non-unix DOCKER_HOST.
pub fn send_early(path: PathBuf) {
    if through_hyper() {
        return;
    }
    let host = super::host();
    let Some(socket) = host.strip_prefix("unix://") else {
        return;
    };
    let Some(state) = read_state(&path, &host) else {
        return;
    };
    let Some(since) = state.mark.as_ref().map(|m| m.time_nano) else {
        return;
    };
    let until = now_nano();
    let Ok(stream) = request(socket, Some(since), until) else {
        return;
    };
    *EARLY.lock().unwrap() = Some(Early {
        path,
        host,
        state,
        until,
        stream,
    });
}

/// Drop the answer of [`send_early`] unread: the run waited for another one, which may have
/// changed images after the call went out; the view is then checked up to now instead.
pub fn forget_early() {
    EARLY.lock().unwrap().take();
}

/// The events of a [`request`], or None when the engine refused it or answered in a way
/// this does not read (the view is then not trusted).
async fn read_answer(stream: UnixStream) -> Result<Option<Vec<Mark>>, TaskError> {
    use tokio::io::AsyncReadExt;
    let no_answer = || TaskError::Environment(super::connect_error("no answer within 15 s"));
    let Ok(()) = stream.set_nonblocking(true) else {
        return Ok(None);
    };
    let Ok(mut stream) = tokio::net::UnixStream::from_std(stream) else {
        return Ok(None);
    };
    let mut buf = Vec::with_capacity(4096);
    match tokio::time::timeout(super::QUICK, stream.read_to_end(&mut buf)).await {
        Err(_) => Err(no_answer()),
        Ok(Err(_)) => Ok(None),
        Ok(Ok(_)) => Ok(parse_answer(&buf)),
    }
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

/// An HTTP/1.1 response (the connection closed after it) holding JSON event lines.
fn parse_answer(buf: &[u8]) -> Option<Vec<Mark>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head) = response.parse(buf).ok()? else {
        return None;
    };
    if response.code != Some(200) {
        return None;
    }
    let chunked = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value).contains("chunked")
    });
    let body = if chunked {
        dechunk(&buf[head..])?
    } else {
        buf[head..].to_vec()
    };
    parse_events(&body)
}

/// JSON event lines; None when one is not an event.
fn parse_events(body: &[u8]) -> Option<Vec<Mark>> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<RawEvent>()
        .map(|ev| ev.ok().map(mark_of))
        .collect()
}

/// The body of a chunked transfer; None if it is cut short or malformed.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
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

/// Send `GET /events` for the events from `since` (inclusive; all the engine holds when
/// None) to `until`, on a new connection, to read with [`read_answer`]. Plain HTTP/1.1
/// on a blocking socket: it is on the wire when this returns, where bollard's request would
/// wait for the async runtime's next turn.
fn request(socket: &str, since: Option<i64>, until: i64) -> std::io::Result<UnixStream> {
    let since = since
        .map(|s| format!("since={}&", timestamp(s)))
        .unwrap_or_default();
    let request = format!(
        "GET /events?{since}until={} HTTP/1.1\r\n\
         Host: docker\r\nConnection: close\r\n\r\n",
        timestamp(until)
    );
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(request.as_bytes())?;
    Ok(stream)
}

/// The events the engine still holds from `since` to `until`, oldest first; None when the
/// engine cannot be reached or refused (the facts are then simply not used, and the
/// inspects that follow report what is wrong). An engine that does not answer is an error.
async fn engine_events(
    socket: &str,
    since: Option<i64>,
    until: i64,
) -> Result<Option<Vec<Mark>>, TaskError> {
    if through_hyper() {
        return hyper_events(socket, since, until).await;
    }
    match request(socket, since, until) {
        Ok(stream) => read_answer(stream).await,
        Err(_) => Ok(None),
    }
}

/// `LIFEOS_EVENTS_CLIENT=hyper`: the events call through hyper when the view is first needed
/// instead of the early hand-written one. Only for benches/events-client.sh, which measures
/// what the early call is worth against the maintained client.
fn through_hyper() -> bool {
    static HYPER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HYPER.get_or_init(|| std::env::var_os("LIFEOS_EVENTS_CLIENT").is_some_and(|v| v == "hyper"))
}

/// [`engine_events`] through hyper's HTTP/1.1 client on a new connection.
async fn hyper_events(
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

    /// What dockerd 20.10 sends for `GET /events?since=..&until=..` (chunked, then closed).
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\n\r\n\
        87\r\n{\"status\":\"tag\",\"id\":\"sha256:ab\",\"Type\":\"image\",\"Action\":\"tag\",\"Actor\":{\"ID\":\"sha256:ab\",\"Attributes\":{\"name\":\"web:1\"}},\"timeNano\":42}\n\r\n\
        0\r\n\r\n";

    #[test]
    fn an_early_answer_is_read_as_docker_sends_it() {
        let events = parse_answer(ANSWER).expect("parsed");
        assert_eq!(
            events,
            vec![Mark {
                time_nano: 42,
                kind: "image".into(),
                action: "tag".into(),
                id: "sha256:ab".into(),
                name: "web:1".into(),
            }]
        );
    }

    #[test]
    fn a_refused_or_cut_answer_is_not_read_as_no_events() {
        let refused = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_answer(refused), None);
        let cut = &ANSWER[..ANSWER.len() - 20];
        assert_eq!(parse_answer(cut), None);
        let no_events = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(parse_answer(no_events), Some(vec![]));
    }

    /// Chunks need not end at event boundaries; extensions after the size are allowed; a
    /// plain `Content-Length` body is read too.
    #[test]
    fn chunked_and_plain_bodies_with_several_events_are_read_whole() {
        let one = r#"{"Type":"container","Action":"start","Actor":{"ID":"c1","Attributes":{"name":"db"}},"timeNano":7}"#;
        let two = r#"{"Type":"image","Action":"untag","Actor":{"ID":"sha256:ab"},"timeNano":8}"#;
        let body = format!("{one}\n{two}\n");
        let (a, b) = body.as_bytes().split_at(40);
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        chunked.extend_from_slice(format!("{:x};ext=1\r\n", a.len()).as_bytes());
        chunked.extend_from_slice(a);
        chunked.extend_from_slice(format!("\r\n{:X}\r\n", b.len()).as_bytes());
        chunked.extend_from_slice(b);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        let want = vec![
            event("container", "start", "c1", "db"),
            event("image", "untag", "sha256:ab", ""),
        ];
        let with_times = |mut v: Vec<Mark>| {
            v[0].time_nano = 7;
            v[1].time_nano = 8;
            v
        };
        assert_eq!(parse_answer(&chunked), Some(with_times(want.clone())));
        let plain = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(parse_answer(plain.as_bytes()), Some(with_times(want)));
    }

    /// An error status (with a chunked or plain body), a malformed chunk size, a header cut
    /// short or a body that is not events: never read as "no events since the mark".
    #[test]
    fn error_and_malformed_responses_are_not_answers() {
        let cases: [&[u8]; 6] = [
            b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n1b\r\n{\"message\":\"engine broke\"}\r\n0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Enc",
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json\n",
            b"",
        ];
        for c in cases {
            assert_eq!(parse_answer(c), None, "{}", String::from_utf8_lossy(c));
        }
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
