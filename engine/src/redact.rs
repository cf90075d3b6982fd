//! Secret values never leave the process: every log line, error and record passes through here.
//!
//! Output reaches lifeos one line at a time, so a secret that spans lines (a PEM key) is
//! also masked line by line: each of its non-blank lines is a value of its own. Every byte
//! covered by any occurrence of any value is masked, so overlapping secrets leak nothing.

use aho_corasick::AhoCorasick;

#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// The values, longest first (for the record; the matcher finds every occurrence).
    secrets: Vec<String>,
    matcher: Option<AhoCorasick>,
}

pub const MASK: &str = "***";

impl Redactor {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = Vec::new();
        for v in values {
            if v.contains(['\n', '\r']) {
                secrets.extend(
                    v.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            // Surrounding blanks are not part of what a line shows.
            let t = v.trim();
            if !t.is_empty() {
                secrets.push(t.to_string());
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        let matcher = (!secrets.is_empty())
            .then(|| AhoCorasick::new(&secrets).expect("plain strings build a matcher"));
        Self { secrets, matcher }
    }

    /// The host's values of every secret any task of `graph` declares: a task's output is
    /// masked for the secrets of all tasks, declared by it or not.
    pub fn for_graph(graph: &crate::Graph) -> Self {
        Self::for_graph_and(graph, [])
    }

    /// [`Redactor::for_graph`] plus other known values.
    pub fn for_graph_and(graph: &crate::Graph, more: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<&str> = graph
            .ids()
            .filter_map(|id| graph.get(id))
            .flat_map(|n| n.spec.secrets.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        let host = names.into_iter().filter_map(|n| std::env::var(n).ok());
        Self::new(host.chain(more))
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The longest value: a stream must hold back this many bytes minus one to mask a
    /// value cut in two.
    pub fn longest(&self) -> usize {
        self.secrets.first().map_or(0, String::len)
    }

    pub fn redact(&self, text: &str) -> String {
        match self.spans(text.as_bytes()) {
            None => text.to_string(),
            // Masks replace whole secrets, which are whole UTF-8 strings.
            Some(spans) => String::from_utf8(splice(text.as_bytes(), &spans))
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        match self.spans(bytes) {
            None => bytes.to_vec(),
            Some(spans) => splice(bytes, &spans),
        }
    }

    /// Merged byte ranges covered by any occurrence of any value; `None` when there are none.
    fn spans(&self, hay: &[u8]) -> Option<Vec<(usize, usize)>> {
        let m = self.matcher.as_ref()?;
        // Every hit, then one sort and one merge: O(k log k) for k hits (a short secret in a
        // long line can have hundreds of thousands).
        let mut spans: Vec<(usize, usize)> = m
            .find_overlapping_iter(hay)
            .map(|hit| (hit.start(), hit.end()))
            .collect();
        if spans.is_empty() {
            return None;
        }
        spans.sort_unstable();
        // Sorted by start: one pass joins overlapping and touching ranges.
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
        for (s, e) in spans {
            match merged.last_mut() {
                Some((_, b)) if s <= *b => *b = (*b).max(e),
                _ => merged.push((s, e)),
            }
        }
        Some(merged)
    }
}

fn splice(bytes: &[u8], spans: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    for &(s, e) in spans {
        out.extend_from_slice(&bytes[at..s]);
        out.extend_from_slice(MASK.as_bytes());
        at = e;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

/// Masks a byte stream that arrives in arbitrary chunks (`lifeos logs -f`): whole lines
/// are masked and passed on; a partial line waits for its end, so a value cut by a chunk
/// boundary is still found.
pub struct StreamRedactor<'a> {
    redactor: &'a Redactor,
    pending: Vec<u8>,
}

/// A line longer than this is passed on in pieces (holding back enough to find a value).
const MAX_PENDING: usize = 1 << 20;

impl<'a> StreamRedactor<'a> {
    pub fn new(redactor: &'a Redactor) -> Self {
        Self {
            redactor,
            pending: Vec::new(),
        }
    }

    /// Add a chunk; returns what can be shown now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let cut = match self.pending.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if self.pending.len() > MAX_PENDING + self.redactor.longest() => {
                // Pass on all but a tail that may hold the start of a value; a value that
                // starts before the tail ends inside what is here, so it is found now.
                let mut cut = self.pending.len() - self.redactor.longest().saturating_sub(1);
                let spans = self.redactor.spans(&self.pending).unwrap_or_default();
                if let Some(&(_, e)) = spans.iter().find(|(s, e)| *s < cut && cut < *e) {
                    cut = e;
                }
                let done: Vec<(usize, usize)> =
                    spans.into_iter().filter(|(_, e)| *e <= cut).collect();
                let out = splice(&self.pending[..cut], &done);
                self.pending.drain(..cut);
                return out;
            }
            None => return Vec::new(),
        };
        let rest = self.pending.split_off(cut);
        let out = self.redactor.redact_bytes(&self.pending);
        self.pending = rest;
        out
    }

    /// The end of the stream: the last partial line, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let out = self.redactor.redact_bytes(&self.pending);
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\r\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n";

    #[test]
    fn masks_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".into(), String::new()]);
        assert_eq!(r.redact("x abcdef y abc"), "x *** y ***");
    }

    /// A short secret many times in one line (a dev password in minified output): every hit
    /// is masked, and merging them is one sort, not a search per hit (that was quadratic).
    #[test]
    fn a_secret_repeated_200_000_times_in_one_line_is_masked() {
        let r = Redactor::new(["pw".to_string()]);
        let line = format!("start {} end", "pw-".repeat(200_000));
        let shown = r.redact(&line);
        assert!(!shown.contains("pw"));
        assert_eq!(shown.matches("***").count(), 200_000);
    }

    #[test]
    fn overlapping_values_leak_nothing() {
        let r = Redactor::new(["xab".to_string(), "abcdef".into()]);
        assert_eq!(r.redact("1xabcdef2"), "1***2");
    }

    #[test]
    fn a_multi_line_value_is_masked_whole_and_line_by_line() {
        let r = Redactor::new([PEM.to_string()]);
        assert_eq!(r.redact(PEM), "***\n");
        for line in PEM.lines() {
            let shown = r.redact(&format!("log: {line}"));
            assert_eq!(shown, "log: ***", "{line:?}");
        }
    }

    #[test]
    fn a_stream_cut_anywhere_shows_no_value() {
        let r = Redactor::new([PEM.to_string(), "hunter2".into()]);
        let text = format!("start\n{PEM}pass=hunter2 done\nno newline at end hunter2");
        for size in [1, 2, 3, 7, 64, 1000] {
            let mut s = StreamRedactor::new(&r);
            let mut out = Vec::new();
            for chunk in text.as_bytes().chunks(size) {
                out.extend(s.push(chunk));
            }
            out.extend(s.finish());
            let out = String::from_utf8(out).unwrap();
            assert!(!out.contains("hunter2"), "{size}: {out}");
            for line in PEM.lines() {
                assert!(!out.contains(line.trim()), "{size}: {out}");
            }
            assert!(
                out.starts_with("start\n***\n") && out.contains("pass=*** done"),
                "{out}"
            );
        }
    }

    #[test]
    fn a_long_line_without_newline_is_passed_on_masked() {
        let r = Redactor::new(["secret-value".to_string()]);
        let mut s = StreamRedactor::new(&r);
        let mut out = Vec::new();
        let big = "x".repeat(MAX_PENDING);
        for part in [big.as_str(), "secret-", "value", big.as_str(), "tail"] {
            out.extend(s.push(part.as_bytes()));
        }
        out.extend(s.finish());
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("secret"), "the value leaked");
        assert_eq!(out.len(), 2 * MAX_PENDING + MASK.len() + 4);
    }
}
