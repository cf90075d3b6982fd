//! The terminal UI: a spinner per running task (never more bars than running tasks), a line
//! per finished task above them, the failing task's log tail, and the summary.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lifeos_engine::Event;

use super::plain::{finished_line, write_stderr};
use super::summary_line;

pub struct Console {
    mp: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    verbose: bool,
    width: usize,
    style: ProgressStyle,
    /// Never more bars than the terminal has rows (indicatif #636); tasks past that run
    /// without a bar and still get their result line.
    max_bars: usize,
}

impl Console {
    pub fn new(verbose: bool) -> Self {
        let mp = MultiProgress::new();
        mp.set_move_cursor(true);
        Self {
            mp,
            bars: HashMap::new(),
            verbose,
            width: 8,
            max_bars: (console::Term::stderr().size().0 as usize)
                .saturating_sub(2)
                .max(1),
            style: ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} {elapsed:>4} {wide_msg:.dim}",
            )
            .expect("valid template"),
        }
    }

    /// Print above the bars (println is a no-op when the bars are hidden).
    fn print(&self, s: &str) {
        if self.mp.is_hidden() {
            eprintln!("{s}");
        } else {
            let _ = self.mp.println(s);
        }
    }
}

impl super::Subscriber for Console {
    fn event(&mut self, e: &Event) {
        match e {
            Event::RunStarted { tasks, .. } => {
                self.width = tasks.iter().map(|t| t.len()).max().unwrap_or(8).min(24);
            }
            Event::TaskStarted { task, reason, .. } => {
                if self.bars.len() >= self.max_bars {
                    return;
                }
                let pb = self.mp.add(
                    ProgressBar::new_spinner()
                        .with_style(self.style.clone())
                        .with_prefix(format!("{task:w$}", w = self.width))
                        .with_message(reason.to_string()),
                );
                pb.enable_steady_tick(Duration::from_millis(120));
                self.bars.insert(task.clone(), pb);
            }
            Event::TaskLog { task, line, .. } => {
                if self.verbose {
                    self.print(&format!("{task:w$} | {line}", w = self.width));
                }
                if let Some(pb) = self.bars.get(task) {
                    pb.set_message(line.clone());
                }
            }
            Event::TaskProgress { task, message } => {
                if let Some(pb) = self.bars.get(task) {
                    pb.set_message(message.clone());
                }
            }
            Event::TaskRetry {
                task,
                attempt,
                of,
                error,
            } => {
                self.print(&format!(
                    "{task:w$} | retry {attempt}/{of} after: {error}",
                    w = self.width
                ));
            }
            Event::TaskFinished {
                task,
                outcome,
                duration,
            } => {
                if let Some(pb) = self.bars.remove(task) {
                    pb.finish_and_clear();
                    self.mp.remove(&pb);
                }
                let (w, verbose) = (self.width, self.verbose);
                let mut out = Vec::new();
                finished_line(&mut out, task, outcome, *duration, w, !verbose);
                self.mp.suspend(|| write_stderr(&mut out));
            }
            Event::Warning { message } => self.print(&format!("warning: {message}")),
            Event::RunFinished { summary } => {
                let _ = self.mp.clear();
                eprintln!("lifeos: {}", summary_line(summary));
            }
        }
    }
}
