//! From one plan (every node's fingerprint now) to actions. A node's *structural* key is its
//! fingerprint without the inputs a sync covers, with its dependencies' structural keys in
//! place of their keys: an edit that only a sync needs leaves it as it was, so the image is
//! not rebuilt and its services are not recreated; anything else changes it.

use std::collections::{BTreeMap, HashMap};

use lifeos_engine::{Change, Fingerprint, Reason};

/// A node as last acted on.
#[derive(Clone)]
pub struct Applied {
    pub fp: Fingerprint,
    pub sk: String,
}

/// Which inputs of a node a sync covers.
pub trait Coverage {
    fn covers(&self, task: &str, kind: &str, path: &str) -> bool;
}

/// The structural key of every fingerprint, in dependency order (`order` is topological).
pub fn structural(
    order: &[String],
    fps: &HashMap<String, Fingerprint>,
    kinds: &HashMap<String, &'static str>,
    cov: &dyn Coverage,
) -> HashMap<String, String> {
    let mut sk: HashMap<String, String> = HashMap::new();
    for t in order {
        let Some(fp) = fps.get(t) else { continue };
        let kind = kinds.get(t).copied().unwrap_or("");
        let mut f = fp.clone();
        f.inputs.retain(|p, _| !cov.covers(t, kind, p));
        let deps: BTreeMap<&String, String> = fp
            .deps
            .keys()
            .map(|d| (d, sk.get(d).cloned().unwrap_or_else(|| "?".into())))
            .collect();
        f.deps.clear();
        f.extras.insert(
            "lifeos watch: dependencies".into(),
            serde_json::to_string(&deps).unwrap_or_default(),
        );
        sk.insert(t.clone(), f.key().to_hex());
    }
    sk
}

/// Why a node's structural key changed: the fingerprint's changes less the synced files
/// and the dependencies whose own structural key stayed.
pub fn reason(
    task: &str,
    kind: &str,
    now: &Fingerprint,
    old: &Fingerprint,
    cov: &dyn Coverage,
    changed: &dyn Fn(&str) -> bool,
) -> String {
    let changes: Vec<Change> = now
        .diff(old)
        .into_iter()
        .filter(|c| match c {
            Change::FileAdded { path }
            | Change::FileChanged { path }
            | Change::FileRemoved { path } => !cov.covers(task, kind, path),
            Change::Dep { name } => changed(name),
            _ => true,
        })
        .collect();
    if changes.is_empty() {
        return "key changed".into();
    }
    Reason::Changed { changes }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `web/` is synced into the services that run image `img`.
    struct Web;
    impl Coverage for Web {
        fn covers(&self, task: &str, kind: &str, path: &str) -> bool {
            path.starts_with("web/") && (kind != "image" || task == "img")
        }
    }

    fn fp(inputs: &[(&str, &str)], deps: &[&str]) -> Fingerprint {
        Fingerprint {
            inputs: inputs
                .iter()
                .map(|(p, d)| (p.to_string(), d.to_string()))
                .collect(),
            deps: deps
                .iter()
                .map(|d| {
                    (
                        d.to_string(),
                        lifeos_engine::Key::from_hash(blake3::hash(d.as_bytes())),
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    fn keys(
        test_in: &[(&str, &str)],
        img_in: &[(&str, &str)],
        dep_salt: &str,
    ) -> HashMap<String, String> {
        let order = ["test".to_string(), "img".to_string(), "svc".to_string()];
        let mut img = fp(img_in, &["test"]);
        // The image's recorded dependency key moves whenever the test's does.
        img.deps.insert(
            "test".into(),
            lifeos_engine::Key::from_hash(blake3::hash(dep_salt.as_bytes())),
        );
        let fps = HashMap::from([
            ("test".to_string(), fp(test_in, &[])),
            ("img".to_string(), img),
            ("svc".to_string(), fp(&[], &["img"])),
        ]);
        let kinds = HashMap::from([
            ("test".to_string(), "exec"),
            ("img".to_string(), "image"),
            ("svc".to_string(), "service"),
        ]);
        structural(&order, &fps, &kinds, &Web)
    }

    #[test]
    fn a_synced_edit_leaves_the_image_and_its_service_alone() {
        let before = keys(&[("web/a", "1")], &[("web/a", "1"), ("pkg", "1")], "k1");
        let synced = keys(&[("web/a", "2")], &[("web/a", "2"), ("pkg", "1")], "k2");
        assert_eq!(before, synced);
        let manifest = keys(&[("web/a", "1")], &[("web/a", "1"), ("pkg", "2")], "k1");
        assert_ne!(before["img"], manifest["img"]);
        assert_ne!(
            before["svc"], manifest["svc"],
            "the service follows its image"
        );
        assert_eq!(before["test"], manifest["test"]);
    }
}
