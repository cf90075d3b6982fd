//! `--json`: every event as one JSON line on stdout.

use std::io::Write;

use lifeos_engine::Event;

pub struct Json;

impl super::Subscriber for Json {
    fn event(&mut self, e: &Event) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, e);
        let _ = out.write_all(b"\n");
    }
}
