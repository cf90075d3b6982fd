//! The kind seam from the loader's side: a kind this crate has never heard of is one
//! `TypedKind` and one registry entry, and the loader gives it fields with spans, "did you
//! mean", vars, and a compiled round trip, without a line of kind-specific config code.

use std::fs;
use std::sync::Arc;

use lifeos_engine::{
    ExecCx, Executed, KeyCx, Probe, ProbeCx, Task, TaskError, TaskInputs, TaskSpec,
};
use lifeos_tasks::kind::{
    Diagnostic, InstantiateCx, Kind, Registered, Registry, ResolveCx, TaskTable, TypedKind, S,
};
use serde::{Deserialize, Serialize};

use super::{load_with, LoadError, LoadOptions};

struct NoteKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    message: Option<S<String>>,
    times: Option<S<u32>>,
}

#[derive(Serialize, Deserialize)]
struct Body {
    message: String,
    times: u32,
}

struct Note(Body);

#[async_trait::async_trait]
impl Task for Note {
    fn kind(&self) -> &'static str {
        "note"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({ "message": self.0.message, "times": self.0.times })
    }
    async fn inputs(&self, _: &KeyCx) -> Result<TaskInputs, TaskError> {
        Ok(TaskInputs::default())
    }
    async fn probe(&self, _: &ProbeCx<'_>) -> Result<Probe, TaskError> {
        Ok(Probe::Missing("never".into()))
    }
    async fn execute(&self, _: &ExecCx<'_>) -> Result<Executed, TaskError> {
        Ok(Executed::default())
    }
}

impl TypedKind for NoteKind {
    const NAME: &'static str = "note";
    type Raw = Raw;
    type Body = Body;

    fn resolve(cx: &mut ResolveCx, t: &TaskTable, raw: Raw, _: &mut TaskSpec) -> Option<Body> {
        let Some(m) = &raw.message else {
            t.missing(cx, Self::NAME, "message", "message = \"...\"");
            return None;
        };
        let times = raw.times.as_ref().map(|t| *t.get_ref()).unwrap_or(1);
        if times == 0 {
            let span = raw.times.as_ref().map(|t| t.span()).unwrap_or_default();
            cx.err(Diagnostic::new("`times` must be at least 1").at(span, "zero"));
        }
        Some(Body {
            message: cx.interp(m)?,
            times,
        })
    }

    fn instantiate(_: &TaskSpec, b: Body, _: &InstantiateCx) -> Result<Arc<dyn Task>, String> {
        Ok(Arc::new(Note(b)))
    }
}

static NOTE: Registered<NoteKind> = Registered::new();
static EXEC: Registered<lifeos_tasks::exec::ExecKind> = Registered::new();
static KINDS: Registry = Registry::new(&[&EXEC, &NOTE]);

fn load(toml: &str) -> (tempfile::TempDir, Result<super::Project, LoadError>) {
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("lifeos.toml");
    fs::write(&file, toml).unwrap();
    let r = load_with(&file, &LoadOptions::default(), &KINDS);
    (t, r)
}

fn errors(toml: &str) -> Vec<(String, String)> {
    match load(toml).1 {
        Err(LoadError::Config(d)) => d
            .errors
            .iter()
            .map(|e| {
                let at = e
                    .span
                    .clone()
                    .map(|s| toml[s].to_string())
                    .unwrap_or_default();
                (
                    format!("{} | {}", e.message, e.help.clone().unwrap_or_default()),
                    at,
                )
            })
            .collect(),
        Err(LoadError::Usage(u)) => panic!("usage error {u}"),
        Ok(_) => panic!("loaded"),
    }
}

#[test]
fn a_new_kind_loads_with_vars_and_builds_its_node() {
    let (_t, p) = load("[vars]\nwho = \"world\"\n\n[tasks.hi]\nkind = \"note\"\nmessage = \"hello ${vars.who}\"\ntimes = 2\n");
    let p = p.ok().unwrap();
    let n = p.graph.get("hi").unwrap();
    assert_eq!(n.task.kind(), "note");
    assert_eq!(
        n.task.config(),
        serde_json::json!({ "message": "hello world", "times": 2 })
    );
    assert_eq!(p.of_kind("note"), vec!["hi".to_string()]);
    assert_eq!(NOTE.fields(), &["message", "times"]);
}

#[test]
fn its_fields_get_positions_and_did_you_mean() {
    let e = errors("[tasks.hi]\nkind = \"note\"\nmesage = \"x\"\n");
    assert!(
        e[0].0.contains("unknown field `mesage`") && e[0].0.contains("did you mean `message`?"),
        "{e:?}"
    );
    assert_eq!(e[0].1, "mesage");
    // `run` belongs to another kind of this registry.
    let e = errors("[tasks.hi]\nkind = \"note\"\nmessage = \"x\"\nrun = \"true\"\n");
    assert!(
        e[0].0.contains("field `run` does not apply to kind `note`"),
        "{e:?}"
    );
    let e = errors("[tasks.hi]\nkind = \"note\"\nmessage = \"x\"\ntimes = 0\n");
    assert_eq!(
        e[0],
        ("`times` must be at least 1 | ".to_string(), "0".to_string())
    );
    let e = errors("[tasks.hi]\nkind = \"note\"\ntimes = \"two\"\n");
    assert!(e[0].0.contains("invalid type"), "{e:?}");
    assert_eq!(e[0].1, "\"two\"");
    // Kinds outside this registry do not exist for it.
    let e = errors("[tasks.hi]\nkind = \"image\"\n");
    assert!(e[0].0.contains("expected one of `exec`, `note`"), "{e:?}");
}
