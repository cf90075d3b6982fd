//! Plain prefixed lines, for pipes and CI: every log line, a result line per task, a summary.

use std::io::Write;
use std::time::Duration;

use console::style;
use lifeos_engine::{Event, Outcome};

use super::{describe, summary_line};

pub struct Plain {
    width: usize,
}

impl Plain {
    pub fn new() -> Self {
        Self { width: 8 }
    }
}

impl Default for Plain {
    fn default() -> Self {
        Self::new()
    }
}

/// One write per line: stderr is unbuffered, and lines from a big run add up.
fn err_line(s: &str) {
    let mut line = String::with_capacity(s.len() + 1);
    line.push_str(s);
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

impl super::Subscriber for Plain {
    fn event(&mut self, e: &Event) {
        match e {
            Event::RunStarted { tasks, .. } => {
                self.width = tasks.iter().map(|t| t.len()).max().unwrap_or(8).min(24);
            }
            Event::TaskStarted { task, reason, .. } => {
                err_line(&format!("{:w$} | running: {reason}", task, w = self.width));
            }
            Event::TaskLog { task, line, .. } => {
                err_line(&format!("{:w$} | {line}", task, w = self.width))
            }
            Event::TaskProgress { .. } => {}
            Event::TaskRetry {
                task,
                attempt,
                of,
                error,
            } => err_line(&format!(
                "{:w$} | retry {attempt}/{of} after: {error}",
                task,
                w = self.width
            )),
            Event::TaskFinished {
                task,
                outcome,
                duration,
            } => {
                // Log lines were already shown live: no tail.
                finished_line(task, outcome, *duration, self.width, false);
            }
            Event::Warning { message } => err_line(&format!(
                "{} {message}",
                style("warning:").yellow().for_stderr()
            )),
            Event::RunFinished { summary } => {
                err_line(&format!("lifeos: {}", summary_line(summary)))
            }
        }
    }
}

pub fn finished_line(task: &str, outcome: &Outcome, took: Duration, width: usize, tail: bool) {
    let (sym, verb, detail) = describe(outcome, took);
    let sym = match outcome {
        Outcome::Ran { .. } => style(sym).green(),
        Outcome::Failed { .. } => style(sym).red(),
        Outcome::Skipped { .. } | Outcome::Interrupted => style(sym).yellow(),
        _ => style(sym).dim(),
    }
    .for_stderr();
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    };
    err_line(&format!(
        "{sym} {:w$} {verb}{detail}",
        style(task).bold().for_stderr(),
        w = width
    ));
    if let (true, Outcome::Failed { log_tail, .. }) = (tail, outcome) {
        for l in log_tail {
            err_line(&format!("    {l}"));
        }
    }
}

/// For `plan` and `explain`: their report is the output, so only warnings are shown.
pub struct WarningsOnly;

impl super::Subscriber for WarningsOnly {
    fn event(&mut self, e: &Event) {
        if let Event::Warning { message } = e {
            err_line(&format!("warning: {message}"));
        }
    }
}
