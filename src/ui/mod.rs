//! Subscribers to the engine's events. One loop owns the output; the engine never prints.

mod console;
mod json;
mod plain;
mod summary;

pub use summary::RunSummary;

use std::borrow::Cow;
use std::io::IsTerminal;
use std::time::Duration;

use lifeos_engine::{Event, Outcome, Summary};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::cli::{Global, Progress};

pub trait Subscriber: Send {
    fn event(&mut self, e: &Event);
    /// Write what `event` buffered. Called after each burst of queued events, so a live
    /// log line shows at once and a no-op of 10,000 tasks is a few writes, not 10,000.
    fn flush(&mut self) {}
}

/// Pick the subscribers for these flags and feed them every event until the run ends.
pub fn spawn(
    mut rx: UnboundedReceiver<Event>,
    g: &Global,
    quiet: bool,
) -> tokio::task::JoinHandle<()> {
    let mut subs: Vec<Box<dyn Subscriber>> = Vec::new();
    if quiet {
        // plan/explain print their own report; only warnings matter here.
        subs.push(Box::new(plain::WarningsOnly));
    } else if g.json {
        subs.push(Box::new(json::Json::default()));
    } else {
        let tty = match g.progress {
            Progress::Tty => true,
            Progress::Plain => false,
            Progress::Auto => {
                std::io::stderr().is_terminal()
                    && std::env::var_os("CI").is_none()
                    && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true)
            }
        };
        if tty {
            subs.push(Box::new(console::Console::new(g.verbose)));
        } else {
            subs.push(Box::new(plain::Plain::new()));
        }
    }
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            for s in subs.iter_mut() {
                s.event(&e);
            }
            while let Ok(e) = rx.try_recv() {
                for s in subs.iter_mut() {
                    s.event(&e);
                }
            }
            for s in subs.iter_mut() {
                s.flush();
            }
        }
    })
}

pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{}ms", d.as_millis())
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// "3 ran, 2 cached, 1 failed, 0 skipped in 4.1s (cache saved 12.0s)"
pub fn summary_line(s: &Summary) -> String {
    let mut parts = vec![format!("{} ran", s.ran), format!("{} cached", s.cached)];
    if s.failed > 0 {
        parts.push(format!("{} failed", s.failed));
    }
    if s.skipped > 0 {
        parts.push(format!("{} skipped", s.skipped));
    }
    if s.interrupted > 0 {
        parts.push(format!("{} interrupted", s.interrupted));
    }
    let mut line = format!(
        "{} in {}",
        parts.join(", "),
        secs(Duration::from_millis(s.wall_ms))
    );
    if s.saved_ms > 0 {
        line.push_str(&format!(
            " (cache saved {})",
            secs(Duration::from_millis(s.saved_ms))
        ));
    }
    line
}

/// One line for a finished task: (symbol, verb, detail). Borrowed where it can be: a
/// no-op describes every task of the graph.
pub fn describe(
    outcome: &Outcome,
    took: Duration,
) -> (&'static str, Cow<'static, str>, Cow<'_, str>) {
    match outcome {
        Outcome::Ran { reason, .. } => (
            "✓",
            format!("ran {}", secs(took)).into(),
            reason.to_string().into(),
        ),
        Outcome::Cached { location, .. } => ("·", "cached".into(), location.as_str().into()),
        Outcome::Failed { error, .. } => ("✗", "failed".into(), error.as_str().into()),
        Outcome::Skipped { because } => ("-", "skipped".into(), because.as_str().into()),
        Outcome::Interrupted => ("!", "interrupted".into(), "".into()),
        Outcome::WouldRun { reason, .. } => ("?", "would run".into(), reason.to_string().into()),
    }
}
