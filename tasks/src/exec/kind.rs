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
        let inputs = cx.globs(raw.inputs.as_deref().unwrap_or(&[]), "inputs");
        let outputs = cx.globs(raw.outputs.as_deref().unwrap_or(&[]), "outputs");
        if let (Some(i), Some(o), Some(spans)) = (&inputs, &outputs, &raw.outputs) {
            check_outputs(cx, &t.id, i, o, spans);
        }
        Some(Body {
            run: command?,
            cwd,
            inputs: inputs?,
            outputs: outputs?,
        })
    }

    fn instantiate(
        _spec: &TaskSpec,
        b: Body,
        _cx: &InstantiateCx,
    ) -> Result<Arc<dyn Task>, String> {
        let task = ExecTask::new(b.run, b.cwd, b.inputs, b.outputs).map_err(|e| e.message)?;
        Ok(Arc::new(task))
    }
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
