//! Config errors that point at the cause: file, line, column and the offending text,
//! rendered like rustc's (annotate-snippets). Every one exits with code 2.

use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub message: String,
    /// Byte range in the config file, when the error has a place.
    pub span: Option<Range<usize>>,
    pub label: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            span: None,
            label: String::new(),
            help: None,
        }
    }

    pub fn at(mut self, span: Range<usize>, label: impl Into<String>) -> Self {
        self.span = Some(span);
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// All the errors found in one config file.
#[derive(Debug, Clone)]
pub struct Diagnostics {
    pub path: String,
    pub source: String,
    pub errors: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn render(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let mut out = String::new();
        for d in &self.errors {
            let mut group = Group::with_title(Level::ERROR.primary_title(d.message.as_str()));
            if let Some(span) = &d.span {
                // Clamp: a span at end of file (missing field) must still render.
                let end = span.end.min(self.source.len());
                let start = span.start.min(end);
                group = group.element(
                    Snippet::source(self.source.as_str())
                        .path(self.path.as_str())
                        .annotation(
                            AnnotationKind::Primary
                                .span(start..end)
                                .label(d.label.as_str()),
                        ),
                );
            } else {
                group = group.element(Level::NOTE.message(format!("in {}", self.path)));
            }
            if let Some(h) = &d.help {
                group = group.element(Level::HELP.message(h.as_str()));
            }
            out.push_str(&renderer.render(&[group]).to_string());
            out.push_str("\n\n");
        }
        out
    }
}

/// The closest candidate to `name`, if it is close enough to be a typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
