//! What lifeos reads of gcloud's JSON: the Knative Service (`run deploy`, `services
//! describe`) and Revisions (`revisions list`). Only the fields it needs; unknown ones are
//! ignored, so newer gcloud output still parses.

use std::collections::BTreeMap;

use serde_json::Value;

/// One entry of `status.traffic`, LATEST resolved to its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub revision: String,
    pub percent: u8,
    pub latest: bool,
    pub tag: Option<String>,
    pub url: Option<String>,
}

/// A Cloud Run service as `services describe --format json` shows it.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub url: String,
    pub latest_created: Option<String>,
    pub latest_ready: Option<String>,
    /// The template's (the latest revision's) image and labels.
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub traffic: Vec<Target>,
}

fn s(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string)
}

impl ServiceView {
    pub fn parse(v: &Value) -> Result<Self, String> {
        if v["kind"] != "Service" {
            return Err(format!(
                "expected a Cloud Run Service (kind \"Service\"), got {}",
                v.to_string().chars().take(120).collect::<String>()
            ));
        }
        let status = &v["status"];
        let tpl = &v["spec"]["template"];
        let traffic = status["traffic"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|t| {
                Some(Target {
                    revision: s(&t["revisionName"])?,
                    percent: t["percent"].as_u64().unwrap_or(0).min(100) as u8,
                    latest: t["latestRevision"].as_bool().unwrap_or(false),
                    tag: s(&t["tag"]),
                    url: s(&t["url"]),
                })
            })
            .collect();
        Ok(Self {
            url: s(&status["url"]).unwrap_or_default(),
            latest_created: s(&status["latestCreatedRevisionName"]),
            latest_ready: s(&status["latestReadyRevisionName"]),
            image: s(&tpl["spec"]["containers"][0]["image"]).unwrap_or_default(),
            labels: tpl["metadata"]["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), s(v)?)))
                        .collect()
                })
                .unwrap_or_default(),
            traffic,
        })
    }

    /// Revision → its share (targets of one revision summed), without 0% entries.
    pub fn split(&self) -> BTreeMap<String, u8> {
        let mut m = BTreeMap::new();
        for t in self.traffic.iter().filter(|t| t.percent > 0) {
            *m.entry(t.revision.clone()).or_insert(0u8) += t.percent;
        }
        m
    }

    /// The share of one revision.
    pub fn percent(&self, rev: &str) -> u8 {
        self.split().get(rev).copied().unwrap_or(0)
    }

    /// Does `rev` take all the traffic?
    pub fn serves_all(&self, rev: &str) -> bool {
        self.percent(rev) == 100
    }

    /// The target carrying `tag`, if any.
    pub fn tagged(&self, tag: &str) -> Option<&Target> {
        self.traffic.iter().find(|t| t.tag.as_deref() == Some(tag))
    }

    /// "api-00001-abc 90%, api-00002-def 10% (canary)".
    pub fn describe(&self) -> String {
        let split = self.split();
        if split.is_empty() {
            return "no traffic".into();
        }
        split
            .iter()
            .map(|(r, p)| {
                let tags: Vec<&str> = self
                    .traffic
                    .iter()
                    .filter(|t| &t.revision == r)
                    .filter_map(|t| t.tag.as_deref())
                    .collect();
                if tags.is_empty() {
                    format!("{r} {p}%")
                } else {
                    format!("{r} {p}% ({})", tags.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The revision a key made: the template carries its label and the image, and it is ready.
    pub fn made_by(&self, key_label: &str, image: &str) -> Option<&str> {
        let ready = self.latest_ready.as_deref()?;
        (self.latest_created.as_deref() == Some(ready)
            && self.labels.get(super::KEY_LABEL).map(String::as_str) == Some(key_label)
            && self.image == image)
            .then_some(ready)
    }
}

/// One revision of `revisions list --format json`.
#[derive(Debug, Clone)]
pub struct RevisionView {
    pub name: String,
    pub created: String,
    pub ready: bool,
    pub image_digest: String,
}

impl RevisionView {
    pub fn parse_list(v: &Value) -> Result<Vec<Self>, String> {
        let list = v
            .as_array()
            .ok_or_else(|| "expected a list of revisions".to_string())?;
        Ok(list
            .iter()
            .filter_map(|r| {
                let ready = r["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                Some(Self {
                    name: s(&r["metadata"]["name"])?,
                    created: s(&r["metadata"]["creationTimestamp"]).unwrap_or_default(),
                    ready,
                    image_digest: s(&r["status"]["imageDigest"]).unwrap_or_default(),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// delivery.md §2.2: gcloud 368's capture, trimmed.
    #[test]
    fn a_real_describe_parses() {
        let v: Value = serde_json::from_str(
            r#"{"apiVersion": "serving.knative.dev/v1", "kind": "Service",
  "metadata": {"name": "hello"},
  "spec": {"template": {"metadata": {"name": "hello-suffix", "labels": {"lifeos-key": "k"}},
                 "spec": {"containers": [{"image": "us-docker.pkg.dev/cloudrun/container/hello@sha256:1595"}]}},
    "traffic": [{"percent": 100, "revisionName": "hello-00007-jec"}]},
  "status": {"latestCreatedRevisionName": "hello-suffix", "latestReadyRevisionName": "hello-suffix",
    "traffic": [{"percent": 100, "revisionName": "hello-00007-jec"},
                {"revisionName": "hello-00005-zay", "tag": "test", "url": "https://test---hello-4goqgbaxqq-uc.a.run.app"},
                {"revisionName": "hello-00007-jec", "tag": "another", "url": "https://another---hello-4goqgbaxqq-uc.a.run.app"}],
    "url": "https://hello-4goqgbaxqq-uc.a.run.app"}}"#,
        )
        .unwrap();
        let s = ServiceView::parse(&v).unwrap();
        assert!(s.serves_all("hello-00007-jec"));
        assert_eq!(
            s.tagged("test").and_then(|t| t.url.as_deref()),
            Some("https://test---hello-4goqgbaxqq-uc.a.run.app")
        );
        assert_eq!(s.describe(), "hello-00007-jec 100% (another)");
        assert_eq!(
            s.made_by(
                "k",
                "us-docker.pkg.dev/cloudrun/container/hello@sha256:1595"
            ),
            Some("hello-suffix")
        );
        assert_eq!(s.made_by("other", &s.image.clone()), None);
    }
}
