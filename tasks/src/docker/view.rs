//! What lifeos last learned about images from the engine, kept between runs and trusted only
//! while the engine's own event log shows that no image changed since.
//!
//! The engine keeps its newest 256 events in memory and replays a time range of them on
//! `GET /events?since=..&until=..` (as cheap as a ping). The saved state holds a *mark*: the
//! newest image event the engine had when the facts were checked. Next run, one events call
//! since the mark that returns the mark and nothing else proves that no image was built,
//! tagged, untagged, pulled, loaded, imported or removed since, so the facts still hold and a
//! no-op needs no inspect. Anything else (a newer image event, the mark pushed out of the
//! buffer by 256 newer events of any kind, an engine restart) drops every fact, and lifeos
//! inspects as before, then sets a new mark.
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

const VERSION: u32 = 1;

/// One image event, as precise as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub time_nano: i64,
    pub action: String,
    pub id: String,
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

    /// This run changed images (a tag, a build): what was learned about them is stale. The
    /// engine logs those changes too, so the next run will not trust the rest either.
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
    let (mut state, until, mut answer) = match early {
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
    let mut trusted = false;
    let mut newest = None;
    let mut refused = false;
    if let Some(mark) = &state.mark {
        let events = match answer.take() {
            Some(a) => a,
            None => image_events(socket, Some(mark.time_nano), until).await?,
        };
        match events {
            Some(events) => (trusted, newest) = judge(mark, events),
            None => refused = true,
        }
    }
    if !trusted && newest.is_none() && !refused {
        // No mark, or it fell out of the buffer: the newest image event the engine still has.
        newest = image_events(socket, None, until)
            .await?
            .and_then(|mut e| e.pop());
    }
    let mut dirty = false;
    if !trusted {
        dirty = state.mark.is_some() || !state.images.is_empty() || newest.is_some();
        state.images.clear();
        state.mark = newest;
    }
    Ok(View {
        path,
        state,
        trusted,
        dirty,
    })
}

/// Whether the saved facts still hold, given the image events since (and including) their
/// mark; and the newest of those events, the next mark.
fn judge(mark: &Mark, mut events: Vec<Mark>) -> (bool, Option<Mark>) {
    let trusted = events.len() == 1 && events[0] == *mark;
    (trusted, events.pop())
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
    serde_json::Deserializer::from_slice(&body)
        .into_iter::<bollard::models::EventMessage>()
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

fn mark_of(ev: bollard::models::EventMessage) -> Mark {
    Mark {
        time_nano: ev.time_nano.unwrap_or_default(),
        action: ev.action.unwrap_or_default(),
        id: ev.actor.and_then(|a| a.id).unwrap_or_default(),
    }
}

/// Send `GET /events` for the image events from `since` (inclusive; all the engine holds
/// when None) to `until`, on a new connection, to read with [`read_answer`]. Plain HTTP/1.1
/// on a blocking socket: it is on the wire when this returns, where bollard's request would
/// wait for the async runtime's next turn.
fn request(socket: &str, since: Option<i64>, until: i64) -> std::io::Result<UnixStream> {
    let since = since
        .map(|s| format!("since={}&", timestamp(s)))
        .unwrap_or_default();
    let request = format!(
        "GET /events?{since}until={}&filters=%7B%22type%22%3A%5B%22image%22%5D%7D HTTP/1.1\r\n\
         Host: docker\r\nConnection: close\r\n\r\n",
        timestamp(until)
    );
    let mut stream = UnixStream::connect(socket)?;
    stream.write_all(request.as_bytes())?;
    Ok(stream)
}

/// The image events the engine still holds from `since` to `until`, oldest first; None when
/// the engine cannot be reached or refused (the facts are then simply not used, and the
/// inspects that follow report what is wrong). An engine that does not answer is an error.
async fn image_events(
    socket: &str,
    since: Option<i64>,
    until: i64,
) -> Result<Option<Vec<Mark>>, TaskError> {
    match request(socket, since, until) {
        Ok(stream) => read_answer(stream).await,
        Err(_) => Ok(None),
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
            action: action.into(),
            id: format!("sha256:{t}"),
        }
    }

    #[test]
    fn facts_hold_only_when_the_mark_is_the_one_event_since() {
        let m = mark(10, "tag");
        assert_eq!(judge(&m, vec![m.clone()]), (true, Some(m.clone())));
        // Something happened to an image since: a new mark, the facts dropped.
        let later = mark(11, "untag");
        assert_eq!(
            judge(&m, vec![m.clone(), later.clone()]),
            (false, Some(later.clone()))
        );
        // The mark is gone from the engine's buffer (256 newer events, or a restart).
        assert_eq!(judge(&m, vec![later.clone()]), (false, Some(later)));
        assert_eq!(judge(&m, vec![]), (false, None));
        // Another event in the same nanosecond is not the mark.
        assert!(!judge(&m, vec![mark(10, "delete")]).0);
    }

    /// What dockerd 20.10 sends for `GET /events?since=..&until=..` (chunked, then closed).
    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\n\r\n\
        69\r\n{\"status\":\"tag\",\"id\":\"sha256:ab\",\"Type\":\"image\",\"Action\":\"tag\",\"Actor\":{\"ID\":\"sha256:ab\"},\"timeNano\":42}\n\r\n\
        0\r\n\r\n";

    #[test]
    fn an_early_answer_is_read_as_docker_sends_it() {
        let events = parse_answer(ANSWER).expect("parsed");
        assert_eq!(
            events,
            vec![Mark {
                time_nano: 42,
                action: "tag".into(),
                id: "sha256:ab".into()
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
