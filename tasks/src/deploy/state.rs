//! What an environment's router serves: per service, the stable revision, the canary and
//! its share, and the revisions kept for rollback. Kept as `state.json` in the router's
//! volume next to the nginx config made from it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The router's control port inside its container (published on loopback).
pub const CONTROL_PORT: u16 = 65531;

/// Where the control port serves `state.json` from the volume: a probe reads the state with
/// one local HTTP request instead of an archive download from the state container (which
/// makes dockerd mount the container's filesystem and the volume, ~10-40 ms).
pub const STATE_PATH: &str = "/lifeos/state.json";

/// Where the control port serves the services' access logs (a check reads from an offset with
/// a `Range` request, instead of a `docker exec` of `tail` in the router: ~50-300 ms each),
/// and the header its answers carry, 404s too (a router config without it: exec as before).
pub const LOGS_PATH: &str = "/lifeos/logs/";
pub const LOGS_MARK: &str = "X-Lifeos-Logs";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Bumped by every applied change; the control page answers it once nginx serves it.
    pub generation: u64,
    /// The router image reference (to bring the router back from the state alone).
    #[serde(default)]
    pub image: String,
    /// `[router] http` and labels, for commands that act on the state alone (`rollback`).
    #[serde(default)]
    pub http: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceState>,
    /// The last verdict of each check task (failed ones too: a failure leaves no record),
    /// for `lifeos explain`.
    #[serde(default)]
    pub checks: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceState {
    /// The router's host address for this service ("127.0.0.1:9081").
    pub publish: String,
    /// The port revisions listen on.
    pub port: u16,
    pub stable: Option<u32>,
    pub canary: Option<u32>,
    /// Percent of requests to the canary.
    #[serde(default)]
    pub weight: u8,
    /// Revisions traffic was on before, newest first (rollback targets).
    #[serde(default)]
    pub previous: Vec<u32>,
    /// The highest revision number ever used (numbers are never reused).
    #[serde(default)]
    pub last: u32,
    /// Revision → its address on the project network when last routed ("172.18.0.5:8081").
    #[serde(default)]
    pub addrs: BTreeMap<u32, String>,
}

impl ServiceState {
    /// (revision, weight) pairs that get traffic.
    pub fn split(&self) -> Vec<(u32, u8)> {
        match (self.stable, self.canary) {
            (Some(s), Some(c)) if self.weight >= 100 => vec![(c, 100), (s, 0)],
            (Some(s), Some(c)) => vec![(s, 100 - self.weight), (c, self.weight)],
            (Some(s), None) => vec![(s, 100)],
            (None, Some(c)) => vec![(c, 100)],
            (None, None) => vec![],
        }
    }

    /// "r1 90% / r2 10%".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .split()
            .iter()
            .map(|(r, w)| format!("r{r} {w}%"))
            .collect();
        if parts.is_empty() {
            "no revision".into()
        } else {
            parts.join(" / ")
        }
    }

    /// Make `rev` the only one with traffic; the old stable becomes "previous".
    pub fn make_stable(&mut self, rev: u32) {
        if let Some(old) = self.stable.filter(|s| *s != rev) {
            self.previous.retain(|p| *p != old);
            self.previous.insert(0, old);
        }
        self.previous.retain(|p| *p != rev);
        self.stable = Some(rev);
        self.canary = None;
        self.weight = 0;
    }
}

/// Listen address inside the router for a `publish` address: the same port.
fn listen_port(publish: &str) -> &str {
    publish.rsplit_once(':').map(|(_, p)| p).unwrap_or(publish)
}

/// The nginx config for a state: one weighted upstream and one server per service, each
/// logging `msec status request_time upstream_addr` for `check`, and the control page.
pub fn render(state: &State) -> String {
    let mut c = String::new();
    c.push_str(
        "# Written by lifeos; changes are replaced on the next deploy.\n\
         worker_processes 1;\n\
         pid /run/lifeos-nginx.pid;\n\
         error_log stderr warn;\n\
         events { worker_connections 4096; }\n\
         http {\n\
         \x20   access_log off;\n\
         \x20   log_format lifeos '$msec $status $request_time $upstream_addr';\n\
         \x20   proxy_set_header Host $host;\n\
         \x20   proxy_next_upstream error timeout;\n\
         \x20   proxy_connect_timeout 2s;\n",
    );
    for (name, s) in &state.services {
        let split: Vec<(u32, u8)> = s
            .split()
            .into_iter()
            .filter(|(r, w)| *w > 0 && s.addrs.contains_key(r))
            .collect();
        if split.is_empty() {
            continue;
        }
        c.push_str(&format!("    upstream lifeos_{name} {{\n"));
        for (r, w) in &split {
            c.push_str(&format!(
                "        server {} weight={w} max_fails=0; # r{r}\n",
                s.addrs[r]
            ));
        }
        c.push_str("    }\n");
        c.push_str(&format!(
            "    server {{\n        listen {port};\n        access_log /lifeos/logs/{name}.log lifeos;\n        location / {{ proxy_pass http://lifeos_{name}; }}\n    }}\n",
            port = listen_port(&s.publish)
        ));
    }
    c.push_str(&format!(
        "    server {{\n        listen {CONTROL_PORT};\n        location = /lifeos/generation {{ default_type text/plain; return 200 \"{}\\n\"; }}\n        location = {STATE_PATH} {{ default_type application/json; alias /lifeos/state.json; }}\n        location {LOGS_PATH} {{ default_type text/plain; alias /lifeos/logs/; add_header {LOGS_MARK} 1 always; }}\n    }}\n}}\n",
        state.generation
    ));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_config() {
        let mut s = ServiceState {
            publish: "127.0.0.1:9081".into(),
            port: 8081,
            stable: Some(1),
            canary: Some(2),
            weight: 10,
            ..Default::default()
        };
        s.addrs.insert(1, "10.0.0.1:8081".into());
        s.addrs.insert(2, "10.0.0.2:8081".into());
        assert_eq!(s.split(), vec![(1, 90), (2, 10)]);
        let mut st = State::default();
        st.services.insert("api".into(), s.clone());
        let conf = render(&st);
        assert!(conf.contains("server 10.0.0.1:8081 weight=90"), "{conf}");
        assert!(conf.contains("server 10.0.0.2:8081 weight=10"), "{conf}");
        assert!(conf.contains("listen 9081;"), "{conf}");
        // The control port serves the state and the access logs (probes and checks read them
        // there instead of through the engine).
        assert!(
            conf.contains("location = /lifeos/state.json { default_type application/json; alias /lifeos/state.json; }"),
            "{conf}"
        );
        assert!(
            conf.contains("location /lifeos/logs/ { default_type text/plain; alias /lifeos/logs/; add_header X-Lifeos-Logs 1 always; }"),
            "{conf}"
        );
        s.weight = 0;
        st.services.insert("api".into(), s.clone());
        assert!(!render(&st).contains("10.0.0.2"));
        s.make_stable(2);
        assert_eq!(
            (s.stable, s.canary, s.previous.clone()),
            (Some(2), None, vec![1])
        );
    }
}
