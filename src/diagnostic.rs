//! Config errors that point at the cause: file, line, column and the offending text,
//! rendered like rustc's (annotate-snippets). Every one exits with code 2.

pub use lifeos_tasks::kind::{did_you_mean, Diagnostic};

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

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
