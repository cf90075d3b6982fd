//! Plain prefixed lines, for pipes and CI: every log line, a result line per task, a summary.

use std::io::Write;
use std::time::Duration;

use console::style;
use lifeos_engine::{Event, Outcome};

use super::{describe, summary_line};

pub struct Plain {
    width: usize,
    /// Lines not yet written; the UI loop flushes after each burst of events.
    buf: Vec<u8>,
}

impl Plain {
    pub fn new() -> Self {
        Self {
            width: 8,
            buf: Vec::new(),
        }
    }
}

impl Default for Plain {
    fn default() -> Self {
        Self::new()
    }
}

fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(b'\n');
}

/// One write for a whole burst: stderr is unbuffered, and 10,000 cached lines add up.
pub fn write_stderr(buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        let _ = std::io::stderr().lock().write_all(buf);
        buf.clear();
    }
}

impl super::Subscriber for Plain {
    fn flush(&mut self) {
        write_stderr(&mut self.buf);
    }

    fn event(&mut self, e: &Event) {
        let out = &mut self.buf;
        match e {
            Event::RunStarted { tasks, .. } => {
                self.width = tasks.iter().map(|t| t.len()).max().unwrap_or(8).min(24);
            }
            Event::TaskStarted { task, reason, .. } => {
                put(
                    out,
                    &format!("{:w$} | running: {reason}", task, w = self.width),
                );
            }
            Event::TaskLog { task, line, .. } => {
                put(out, &format!("{:w$} | {line}", task, w = self.width))
            }
            Event::TaskProgress { .. } => {}
            Event::TaskRetry {
                task,
                attempt,
                of,
                error,
            } => put(
                out,
                &format!(
                    "{:w$} | retry {attempt}/{of} after: {error}",
                    task,
                    w = self.width
                ),
            ),
            Event::TaskFinished {
                task,
                outcome,
                duration,
            } => {
                // Log lines were already shown live: no tail.
                finished_line(out, task, outcome, *duration, self.width, false);
            }
            Event::Warning { message } => put(
                out,
                &format!("{} {message}", style("warning:").yellow().for_stderr()),
            ),
            Event::RunFinished { summary } => {
                put(out, &format!("lifeos: {}", summary_line(summary)))
            }
        }
    }
}

pub fn finished_line(
    out: &mut Vec<u8>,
    task: &str,
    outcome: &Outcome,
    took: Duration,
    width: usize,
    tail: bool,
) {
    let (sym, verb, detail) = describe(outcome, took);
    if console::colors_enabled_stderr() {
        let sym = match outcome {
            Outcome::Ran { .. } => style(sym).green(),
            Outcome::Failed { .. } => style(sym).red(),
            Outcome::Skipped { .. } | Outcome::Interrupted => style(sym).yellow(),
            _ => style(sym).dim(),
        }
        .for_stderr();
        // Written straight into the buffer: one line per task of a 10,000-task no-op.
        let _ = write!(
            out,
            "{sym} {:w$} {verb}",
            style(task).bold().for_stderr(),
            w = width
        );
    } else {
        // Without colours (a pipe, CI, NO_COLOR) the same text as bytes: `fmt` with
        // styled parts and padding was most of the UI's time in a 10,000-task no-op.
        out.extend_from_slice(sym.as_bytes());
        out.push(b' ');
        out.extend_from_slice(task.as_bytes());
        let pad = width.saturating_sub(task.chars().count());
        out.resize(out.len() + pad, b' ');
        out.push(b' ');
        out.extend_from_slice(verb.as_bytes());
    }
    if !detail.is_empty() {
        out.extend_from_slice(b" (");
        out.extend_from_slice(detail.as_bytes());
        out.push(b')');
    }
    out.push(b'\n');
    if let (true, Outcome::Failed { log_tail, .. }) = (tail, outcome) {
        for l in log_tail {
            put(out, &format!("    {l}"));
        }
    }
}

/// For `plan` and `explain`: their report is the output, so only warnings are shown.
pub struct WarningsOnly;

impl super::Subscriber for WarningsOnly {
    fn event(&mut self, e: &Event) {
        if let Event::Warning { message } = e {
            let mut out = Vec::new();
            put(&mut out, &format!("warning: {message}"));
            write_stderr(&mut out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without colours the bytes are what `format!` with padding gives.
    #[test]
    fn plain_lines_are_padded_like_fmt() {
        console::set_colors_enabled_stderr(false);
        let cached = Outcome::Cached {
            key: lifeos_engine::Key([0; 32]),
            location: "record, outputs intact".into(),
            saved_ms: 3,
        };
        for (task, width) in [("t1", 8), ("tâche-é", 10), ("a-very-long-task-name", 8)] {
            let mut out = Vec::new();
            finished_line(&mut out, task, &cached, Duration::ZERO, width, false);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!("· {task:width$} cached (record, outputs intact)\n")
            );
        }
        let mut out = Vec::new();
        finished_line(
            &mut out,
            "t",
            &Outcome::Interrupted,
            Duration::ZERO,
            3,
            false,
        );
        assert_eq!(String::from_utf8(out).unwrap(), "! t   interrupted\n");
    }
}
