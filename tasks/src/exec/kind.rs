//! `kind = "exec"` in lifeos.toml: `run`, `cwd`, `inputs`, `outputs`.

use std::sync::Arc;

use lifeos_engine::{Task, TaskSpec};
use serde::{Deserialize, Serialize};
use toml::Value;

use super::{Command, ExecTask};
use crate::kind::overlap::Paths;
use crate::kind::{Diagnostic, InstantiateCx, ResolveCx, TaskTable, TypedKind, S};

pub struct ExecKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    /// A shell string or an argv array.
    run: Option<S<Value>>,
    cwd: Option<S<String>>,
    inputs: Option<Vec<S<String>>>,
    outputs: Option<Vec<S<String>>>,
}

#[derive(Serialize, Deserialize)]
pub struct Body {
    run: Command,
    cwd: String,
    inputs: Vec<String>,
    /// `inputs` entries that are `http(s)://` URLs: fetched, their content in the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    urls: Vec<String>,
    outputs: Vec<String>,
}

impl TypedKind for ExecKind {
    const NAME: &'static str = "exec";
    type Raw = Raw;
    type Body = Body;

    fn resolve(cx: &mut ResolveCx, t: &TaskTable, raw: Raw, _spec: &mut TaskSpec) -> Option<Body> {
        let Some(run) = &raw.run else {
            t.missing(
                cx,
                Self::NAME,
                "run",
                "run = \"command\" or run = [\"argv\", ...]",
            );
            return None;
        };
        // The command may use dependency results: expanded when it runs.
        let command = match run.get_ref() {
            Value::String(s) => cx.interp_late_at(s, run.span()).map(Command::Shell),
            Value::Array(a) if !a.is_empty() && a.iter().all(|v| v.is_str()) => {
                let parts: Vec<String> = a
                    .iter()
                    .filter_map(|v| cx.interp_late_at(v.as_str().unwrap(), run.span()))
                    .collect();
                (parts.len() == a.len()).then_some(Command::Argv(parts))
            }
            _ => {
                cx.err(Diagnostic::new("invalid `run`").at(
                    run.span(),
                    "expected a command string or a non-empty array of strings",
                ));
                None
            }
        };
        let cwd = raw
            .cwd
            .as_ref()
            .and_then(|c| cx.rel_path(c, "cwd"))
            .unwrap_or_default();
        // URLs apart from the globs.
        let (url_entries, globs): (Vec<S<String>>, Vec<S<String>>) = raw
            .inputs
            .clone()
            .unwrap_or_default()
            .into_iter()
            .partition(|s| is_url(s.get_ref()));
        let mut urls = Vec::new();
        for u in &url_entries {
            let Some(text) = cx.interp(u) else { continue };
            match reqwest_url_problem(&text) {
                None => urls.push(text),
                Some(why) => {
                    cx.err(Diagnostic::new(format!("invalid URL input `{text}`")).at(u.span(), why))
                }
            }
        }
        let inputs = cx.globs(&globs, "inputs");
        let outputs = cx.globs(raw.outputs.as_deref().unwrap_or(&[]), "outputs");
        if let (Some(i), Some(o), Some(spans)) = (&inputs, &outputs, &raw.outputs) {
            check_outputs(cx, &t.id, i, o, spans);
        }
        Some(Body {
            run: command?,
            cwd,
            inputs: inputs?,
            urls,
            outputs: outputs?,
        })
    }

    fn instantiate(_spec: &TaskSpec, b: Body, cx: &InstantiateCx) -> Result<Arc<dyn Task>, String> {
        let mut task = ExecTask::new(b.run, b.cwd, b.inputs, b.outputs).map_err(|e| e.message)?;
        if !b.urls.is_empty() {
            task = task.with_urls(b.urls, cx.services.downloads());
        }
        Ok(Arc::new(task))
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Why `s` is not a URL lifeos can fetch, or `None`.
fn reqwest_url_problem(s: &str) -> Option<String> {
    let rest = s.split_once("://").map(|(_, r)| r).unwrap_or("");
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Some("expected http(s)://HOST/PATH".into());
    }
    if host.contains('@') {
        return Some(
            "credentials do not belong in lifeos.toml; serve the file without them".into(),
        );
    }
    if s.chars().any(char::is_whitespace) {
        return Some("a URL has no spaces".into());
    }
    None
}

/// Outputs are restored over the tree: they may not match the config, the cache, `.git`
/// or an input of the same task (a restore would silently revert it).
fn check_outputs(
    cx: &mut ResolveCx,
    id: &str,
    inputs: &[String],
    outputs: &[String],
    spans: &[S<String>],
) {
    if outputs.is_empty() {
        return;
    }
    let outs = Paths::new(outputs);
    let mut clash: Option<(String, String, &'static str)> = None;
    for p in &cx.protected {
        if let Some(path) = outs.common(&p.paths) {
            clash = Some((
                path,
                p.what.clone(),
                "outputs must name what the task writes, e.g. `dist/**`",
            ));
            break;
        }
    }
    if clash.is_none() && !inputs.is_empty() {
        if let Some(path) = outs.common(&Paths::new(inputs)) {
            clash = Some((
                path,
                format!("an input of task `{id}`"),
                "exclude the outputs from the inputs (e.g. `!dist/**`) or narrow the outputs",
            ));
        }
    }
    let Some((path, what, help)) = clash else {
        return;
    };
    // The pattern that matches the example path.
    let span = outputs
        .iter()
        .zip(spans)
        .find(|(o, _)| {
            !o.starts_with('!')
                && lifeos_cache::InputSet::new(&[o.as_str()]).is_ok_and(|s| s.matches(&path))
        })
        .map(|(_, s)| s.span())
        .unwrap_or_else(|| spans[0].span());
    cx.err(
        Diagnostic::new(format!("outputs of task `{id}` may not include {what}"))
            .at(span, format!("matches `{}`", path.escape_debug()))
            .help(format!(
                "a cache hit restores outputs over the tree and would overwrite it; {help}"
            )),
    );
}
