//! A `deploy` task with `platform = "cloudrun"`: its fields, checked, and the gcloud
//! arguments they make.

use std::collections::BTreeMap;
use std::time::Duration;

use lifeos_engine::duration::Bounds;
use lifeos_engine::TaskSpec;
use serde::{Deserialize, Serialize};

use super::super::kind::RawDeploy;
use super::super::DEFAULT_ENV;
use crate::image::ImageKind;
use crate::kind::names::reference_problem;
use crate::kind::{Diagnostic, ResolveCx, TaskTable, TypedKind, S};
use crate::registry::PushKind;

/// What Cloud Run runs: a push task's `REPO@sha256:…` result, or such a reference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CloudImage {
    Push(String),
    Reference(String),
}

/// A Cloud Run deploy, compiled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloudRunBody {
    pub task: String,
    /// lifeos' environment (`--env`), for results and messages.
    pub env: String,
    pub project: String,
    pub region: String,
    pub service: String,
    pub image: CloudImage,
    /// The new revision's share: 100 takes all; less deploys it with `--no-traffic --tag`.
    pub traffic: u8,
    /// The canary's traffic tag (its URL is `https://TAG---SERVICE-….run.app`).
    pub tag: String,
    /// The program; else `LIFEOS_GCLOUD`, else `gcloud` on PATH. Not in the key.
    pub gcloud: Option<String>,
    pub port: Option<u16>,
    pub min_instances: Option<u32>,
    pub max_instances: Option<u32>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub concurrency: Option<u32>,
    pub request_timeout_s: Option<u64>,
    pub service_account: Option<String>,
    pub allow_unauthenticated: Option<bool>,
    /// `NAME = "secret:version"`: Secret Manager references, `--set-secrets`.
    pub secret_refs: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// The task's `secrets`: their values reach gcloud's environment only, never its argv.
    #[serde(default)]
    pub secret_names: Vec<String>,
}

const REQUEST_TIMEOUT: Bounds = Bounds {
    field: "request_timeout",
    zero: false,
    max: Duration::from_secs(3600),
};

fn lower_dash(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn label_ok(k: &str, v: &str) -> bool {
    let chars = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    !k.is_empty()
        && k.len() <= 63
        && k.starts_with(|c: char| c.is_ascii_lowercase())
        && chars(k)
        && v.len() <= 63
        && chars(v)
}

/// A required string field, `${vars.x}` allowed.
fn need(
    cx: &mut ResolveCx,
    t: &TaskTable,
    f: &Option<S<String>>,
    name: &str,
    example: &str,
) -> Option<(String, std::ops::Range<usize>)> {
    match f {
        Some(s) => Some((cx.interp(s)?, s.span())),
        None => {
            t.missing(
                cx,
                "deploy",
                name,
                &format!("{example} (platform \"cloudrun\")"),
            );
            None
        }
    }
}

fn opt(cx: &mut ResolveCx, f: &Option<S<String>>) -> Option<String> {
    f.as_ref().and_then(|s| cx.interp(s))
}

/// The fields of a `platform = "cloudrun"` deploy; `None` after reporting errors.
pub fn resolve(
    cx: &mut ResolveCx,
    t: &TaskTable,
    raw: RawDeploy,
    spec: &mut TaskSpec,
) -> Option<CloudRunBody> {
    let id = t.id.clone();
    let before = cx.error_count();
    let project = need(
        cx,
        t,
        &raw.project,
        "project",
        "project = \"lifeos-production\"",
    );
    if let Some((p, span)) = &project {
        // Google's rule for project IDs.
        if !lower_dash(p, 30) || p.len() < 6 {
            cx.err(Diagnostic::new(format!("invalid project `{p}`")).at(
                span.clone(),
                "a Google Cloud project ID: 6 to 30 lowercase letters, digits or `-`, starting with a letter",
            ));
        }
    }
    let region = need(cx, t, &raw.region, "region", "region = \"us-central1\"");
    if let Some((r, span)) = &region {
        if !lower_dash(r, 40) {
            cx.err(
                Diagnostic::new(format!("invalid region `{r}`"))
                    .at(span.clone(), "a Cloud Run region such as \"us-central1\""),
            );
        }
    }
    let service = need(cx, t, &raw.service, "service", "service = \"lifeos-api\"");
    if let Some((s, span)) = &service {
        if !lower_dash(s, 49) {
            cx.err(
                Diagnostic::new(format!("invalid Cloud Run service name `{s}`")).at(
                    span.clone(),
                    "lowercase letters, digits and `-`, starting with a letter, at most 49",
                ),
            );
        }
    }
    let image = match &raw.image {
        None => {
            t.missing(
                cx,
                "deploy",
                "image",
                "image = \"<push task>\" (platform \"cloudrun\" deploys by digest)",
            );
            None
        }
        Some(s) => {
            let r = cx.interp(s)?;
            match cx.peers.get(&r).map(|p| p.kind) {
                Some(k) if k == PushKind::NAME => {
                    if !spec.deps.contains(&r) {
                        spec.deps.push(r.clone());
                    }
                    Some(CloudImage::Push(r))
                }
                Some(k) => {
                    let help = if k == ImageKind::NAME {
                        format!("push it first (a task of kind \"push\" with image = \"{r}\") and name that push task here")
                    } else {
                        "name a push task, or a reference with a digest (REPO@sha256:…)".to_string()
                    };
                    cx.err(
                        Diagnostic::new(format!("invalid `image` of task `{id}`"))
                            .at(s.span(), format!("names task `{r}` of kind `{k}`; Cloud Run deploys an image by digest from a registry"))
                            .help(help),
                    );
                    None
                }
                None => {
                    let why = reference_problem(&r, true).or_else(|| {
                        (!r.contains("@sha256:")).then(|| {
                            "Cloud Run deploys by digest: REPO@sha256:…, or name a push task".into()
                        })
                    });
                    match why {
                        Some(why) => {
                            cx.err(
                                Diagnostic::new(format!("invalid image reference `{r}`"))
                                    .at(s.span(), why),
                            );
                            None
                        }
                        None => Some(CloudImage::Reference(r)),
                    }
                }
            }
        }
    };
    let traffic = raw.traffic.as_ref().map(|t| *t.get_ref()).unwrap_or(100);
    if traffic > 100 {
        cx.err(Diagnostic::new(format!("invalid traffic `{traffic}`")).at(
            raw.traffic.as_ref().unwrap().span(),
            "a percentage, 0 to 100",
        ));
    }
    let tag = match &raw.tag {
        Some(s) => {
            let v = cx.interp(s)?;
            if !lower_dash(&v, 46) {
                cx.err(Diagnostic::new(format!("invalid traffic tag `{v}`")).at(
                    s.span(),
                    "lowercase letters, digits and `-`, starting with a letter",
                ));
            }
            v
        }
        None => "canary".into(),
    };
    let memory = opt(cx, &raw.memory);
    if let (Some(m), Some(s)) = (&memory, &raw.memory) {
        let digits = m.trim_end_matches(['M', 'G', 'i']);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits == m {
            cx.err(
                Diagnostic::new(format!("invalid memory `{m}`"))
                    .at(s.span(), "a size such as \"512Mi\" or \"2Gi\""),
            );
        }
    }
    let cpu = opt(cx, &raw.cpu);
    if let (Some(c), Some(s)) = (&cpu, &raw.cpu) {
        let n = c.strip_suffix('m').unwrap_or(c);
        if n.parse::<f64>().map(|v| v <= 0.0).unwrap_or(true) {
            cx.err(Diagnostic::new(format!("invalid cpu `{c}`")).at(
                s.span(),
                "a number of CPUs such as \"1\", \"2\" or \"1000m\"",
            ));
        }
    }
    let request_timeout_s = raw.request_timeout.as_ref().and_then(|s| {
        let v = cx.interp(s)?;
        Some(
            cx.duration(
                Some(&S::new(s.span(), v)),
                Duration::from_secs(300),
                REQUEST_TIMEOUT,
            )
            .as_secs()
            .max(1),
        )
    });
    let mut secret_refs = BTreeMap::new();
    for (k, v) in raw.secret_refs.iter().flatten() {
        let Some(val) = cx.interp(v) else { continue };
        let ok_name = !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit());
        let (secret, version) = val.split_once(':').unwrap_or((&val, ""));
        let ok_ref = !secret.is_empty()
            && secret
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && (version == "latest" || version.parse::<u32>().is_ok());
        if !ok_name || !ok_ref {
            cx.err(
                Diagnostic::new(format!("invalid secret reference `{k} = \"{val}\"`"))
                    .at(v.span(), "expected NAME = \"SECRET:VERSION\", such as JWT_SECRET = \"jwt-secret:latest\" (Secret Manager)"),
            );
        }
        secret_refs.insert(k.clone(), val);
    }
    let mut labels = BTreeMap::new();
    for (k, v) in raw.labels.iter().flatten() {
        let Some(val) = cx.interp(v) else { continue };
        if !label_ok(k, &val) || k == super::KEY_LABEL {
            cx.err(
                Diagnostic::new(format!("invalid Cloud Run label `{k} = \"{val}\"`")).at(
                    v.span(),
                    "keys start with a lowercase letter; keys and values: at most 63 of a-z, 0-9, `_`, `-` (lifeos-key is lifeos's)",
                ),
            );
        }
        labels.insert(k.clone(), val);
    }
    if cx.error_count() > before {
        return None;
    }
    Some(CloudRunBody {
        task: id,
        env: cx.env.clone().unwrap_or_else(|| DEFAULT_ENV.into()),
        project: project?.0,
        region: region?.0,
        service: service?.0,
        image: image?,
        traffic,
        tag,
        gcloud: opt(cx, &raw.gcloud),
        port: raw.port.as_ref().map(|p| *p.get_ref()),
        min_instances: raw.min_instances.as_ref().map(|v| *v.get_ref()),
        max_instances: raw.max_instances.as_ref().map(|v| *v.get_ref()),
        cpu,
        memory,
        concurrency: raw.concurrency.as_ref().map(|v| *v.get_ref()),
        request_timeout_s,
        service_account: opt(cx, &raw.service_account),
        allow_unauthenticated: raw.allow_unauthenticated.as_ref().map(|v| *v.get_ref()),
        secret_refs,
        labels,
        secret_names: vec![],
    })
}

/// gcloud's list syntax, with its `^DELIM^` escape when a value holds a comma.
pub fn kv_list(pairs: &[(String, String)]) -> String {
    let joined = |d: &str| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(d)
    };
    if !pairs
        .iter()
        .any(|(k, v)| k.contains(',') || v.contains(','))
    {
        return joined(",");
    }
    let delim = ["@", "|", ";", "#", "%%", "~~"]
        .into_iter()
        .find(|d| !pairs.iter().any(|(k, v)| k.contains(d) || v.contains(d)))
        .unwrap_or("^^^");
    format!("^{delim}^{}", joined(delim))
}

impl CloudRunBody {
    /// `--region R --project P --format json`, for every `gcloud run` call.
    pub fn scope(&self) -> Vec<String> {
        [
            "--region",
            &self.region,
            "--project",
            &self.project,
            "--format",
            "json",
        ]
        .map(String::from)
        .to_vec()
    }

    /// How plan and graph name the image before the push ran.
    pub fn image_text(&self) -> String {
        match &self.image {
            CloudImage::Push(t) => format!("<digest pushed by {t}>"),
            CloudImage::Reference(r) => r.clone(),
        }
    }

    /// `run deploy` arguments: `exists` decides whether `--no-traffic` may be used (Cloud Run
    /// refuses it on a service's first deploy, which takes all traffic instead).
    pub fn deploy_args(
        &self,
        image: &str,
        key_label: &str,
        env: &[(String, String)],
        exists: bool,
    ) -> Vec<String> {
        let mut a: Vec<String> = vec!["run".into(), "deploy".into(), self.service.clone()];
        let mut push = |k: &str, v: String| {
            a.push(k.into());
            a.push(v);
        };
        push("--image", image.to_string());
        if let Some(p) = self.port {
            push("--port", p.to_string());
        }
        let plain: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| !self.secret_names.contains(k))
            .cloned()
            .collect();
        if !plain.is_empty() {
            push("--set-env-vars", kv_list(&plain));
        }
        if !self.secret_refs.is_empty() {
            let refs: Vec<(String, String)> = self
                .secret_refs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            push("--set-secrets", kv_list(&refs));
        }
        if let Some(v) = self.min_instances {
            push("--min-instances", v.to_string());
        }
        if let Some(v) = self.max_instances {
            push("--max-instances", v.to_string());
        }
        if let Some(v) = &self.cpu {
            push("--cpu", v.clone());
        }
        if let Some(v) = &self.memory {
            push("--memory", v.clone());
        }
        if let Some(v) = self.concurrency {
            push("--concurrency", v.to_string());
        }
        if let Some(v) = self.request_timeout_s {
            push("--timeout", format!("{v}s"));
        }
        if let Some(v) = &self.service_account {
            push("--service-account", v.clone());
        }
        let mut labels: Vec<(String, String)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.push((super::KEY_LABEL.into(), key_label.into()));
        push("--update-labels", kv_list(&labels));
        match self.allow_unauthenticated {
            Some(true) => a.push("--allow-unauthenticated".into()),
            Some(false) => a.push("--no-allow-unauthenticated".into()),
            None => {}
        }
        if exists && self.traffic < 100 {
            a.push("--no-traffic".into());
            a.push("--tag".into());
            a.push(self.tag.clone());
        }
        a.extend(self.scope());
        a
    }

    /// The program and its source, for messages.
    pub fn program(&self) -> (String, &'static str) {
        if let Some(p) = &self.gcloud {
            return (p.clone(), "the task's `gcloud`");
        }
        match std::env::var("LIFEOS_GCLOUD") {
            Ok(p) if !p.is_empty() => (p, "LIFEOS_GCLOUD"),
            _ => ("gcloud".into(), "PATH"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_escape_commas_the_gcloud_way() {
        let p = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(kv_list(&[p("A", "1"), p("B", "2")]), "A=1,B=2");
        assert_eq!(kv_list(&[p("A", "1,2"), p("B", "x")]), "^@^A=1,2@B=x");
        assert_eq!(kv_list(&[p("A", "a@b,c")]), "^|^A=a@b,c");
    }
}
