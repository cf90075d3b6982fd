//! One line per delivery task for the end of a run ("revision api-r3 serves 10%"), the same on
//! both platforms: made from the result fields dependants see.

use serde_json::{Map, Value};

fn text(r: &Map<String, Value>, field: &str) -> Option<String> {
    match r.get(field)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        // The local platform numbers its revisions: r1, r2, ….
        Value::Number(n) if field == "revision" => Some(format!("r{n}")),
        _ => None,
    }
}

/// `deploy`: the revision it started and where it answers.
pub fn deploy(r: &Map<String, Value>) -> Option<String> {
    let rev = text(r, "revision")?;
    Some(match text(r, "url") {
        Some(url) => format!("revision {rev} at {url}"),
        None => format!("revision {rev}"),
    })
}

/// `canary`: the share its revision serves now.
pub fn canary(r: &Map<String, Value>) -> Option<String> {
    let rev = text(r, "revision")?;
    let pct = r.get("percent").and_then(Value::as_u64);
    Some(match pct {
        Some(p) => format!("revision {rev} serves {p}%"),
        None => format!("revision {rev} is the canary"),
    })
}

/// `promote`: the revision that serves everything.
pub fn promote(r: &Map<String, Value>) -> Option<String> {
    Some(format!("revision {} serves 100%", text(r, "revision")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn lines_name_the_revision_and_its_share() {
        let r = m(json!({"revision": "api-r3", "url": "http://127.0.0.1:9081", "percent": 10}));
        assert_eq!(
            deploy(&r).unwrap(),
            "revision api-r3 at http://127.0.0.1:9081"
        );
        assert_eq!(canary(&r).unwrap(), "revision api-r3 serves 10%");
        assert_eq!(promote(&r).unwrap(), "revision api-r3 serves 100%");
        assert_eq!(deploy(&m(json!({"revision": ""}))), None);
        assert_eq!(
            promote(&m(json!({"revision": 4}))).unwrap(),
            "revision r4 serves 100%"
        );
    }
}
