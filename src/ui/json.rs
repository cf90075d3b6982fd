//! `--json`: every event as one JSON line on stdout.

use std::io::Write;

use lifeos_engine::Event;

/// Lines not yet written; the UI loop flushes after each burst of events.
#[derive(Default)]
pub struct Json {
    buf: Vec<u8>,
}

impl super::Subscriber for Json {
    fn event(&mut self, e: &Event) {
        let _ = serde_json::to_writer(&mut self.buf, e);
        self.buf.push(b'\n');
    }

    fn flush(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&self.buf);
        let _ = out.flush();
        self.buf.clear();
    }
}
