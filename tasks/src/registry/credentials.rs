//! Registry credentials where Docker users already have them: `LIFEOS_REGISTRY_USER` /
//! `LIFEOS_REGISTRY_PASSWORD` (CI), then `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`): `credHelpers` for the host, `auths`, then `credsStore`. Helpers
//! are run as `docker-credential-<name> get` with the host on stdin, as the Docker CLI does.
//!
//! A secret never leaves this module except inside bollard's `DockerCredentials`: `Debug`
//! shows the user only, and every message says where lifeos looked, never what it found.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

pub const USER_ENV: &str = "LIFEOS_REGISTRY_USER";
pub const PASSWORD_ENV: &str = "LIFEOS_REGISTRY_PASSWORD";

/// What a registry accepts: a user and password, or an identity token (a credential helper
/// that answers with the user `<token>`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    secret: Secret,
}

#[derive(Clone, PartialEq, Eq)]
enum Secret {
    Password(String),
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.username)
    }
}

impl Credentials {
    pub fn password(username: &str, password: &str) -> Self {
        Self {
            username: username.into(),
            secret: Secret::Password(password.into()),
        }
    }

    /// For the engine's `X-Registry-Auth` (made URL-safe by `docker::fix_registry_auth`).
    pub fn for_engine(&self, host: &str) -> bollard::auth::DockerCredentials {
        let mut c = bollard::auth::DockerCredentials {
            serveraddress: Some(host.to_string()),
            ..Default::default()
        };
        match &self.secret {
            Secret::Password(p) => {
                c.username = Some(self.username.clone());
                c.password = Some(p.clone());
            }
            Secret::IdentityToken(t) => c.identitytoken = Some(t.clone()),
        }
        c
    }

    /// The identity token, when the registry gave one instead of a password.
    pub fn identity_token(&self) -> Option<&str> {
        match &self.secret {
            Secret::IdentityToken(t) => Some(t),
            Secret::Password(_) => None,
        }
    }

    /// Who these are, to keep tokens apart: the user and a digest of the secret.
    pub fn identity(&self) -> String {
        let sum = ring::digest::digest(&ring::digest::SHA256, self.secret().as_bytes());
        let hex: String = sum.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("{}/{hex}", self.username)
    }

    /// The secret itself, for redacting it from anything the engine says.
    pub fn secret(&self) -> &str {
        match &self.secret {
            Secret::Password(p) | Secret::IdentityToken(p) => p,
        }
    }
}

/// The credentials found for a host (if any), and where lifeos looked, for error messages.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub credentials: Option<Credentials>,
    pub looked: String,
}

#[derive(Deserialize, Default)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Where variables come from: the process environment, or a map (tests in one process).
pub type Vars = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json`.
pub fn config_path(vars: &Vars) -> Option<PathBuf> {
    if let Some(dir) = vars("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    vars("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The key Docker files Docker Hub under in `auths`.
const HUB_KEY: &str = "https://index.docker.io/v1/";

/// `https://gcr.io/v1/` → `gcr.io`: `auths` keys may carry a scheme and a path.
fn normalize(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn same_host(key: &str, host: &str) -> bool {
    let k = normalize(key);
    k == host || (host == "docker.io" && (k == "index.docker.io" || k == "registry-1.docker.io"))
}

/// Look up credentials for `host` (`127.0.0.1:5000`, `gcr.io`, `docker.io`).
pub fn lookup(host: &str, vars: &Vars) -> Result<Found, String> {
    lookup_with(host, vars, true).expect("helpers allowed: always an answer")
}

/// [`lookup`] without running a credential helper: `None` when the answer needs one (a
/// helper is a process, run off the async thread; the rest is a variable and a small file).
pub fn lookup_without_helpers(host: &str, vars: &Vars) -> Option<Result<Found, String>> {
    lookup_with(host, vars, false)
}

fn lookup_with(host: &str, vars: &Vars, helpers: bool) -> Option<Result<Found, String>> {
    // The body as a closure so that `?` answers `Err` inside the `Some`.
    let mut needs_helper = false;
    let r = (|| {
        let user = vars(USER_ENV).filter(|u| !u.is_empty());
        let password = vars(PASSWORD_ENV);
        if let Some(user) = user {
            let Some(password) = password else {
                return Err(format!(
                "{USER_ENV} is set but {PASSWORD_ENV} is not: set both, or neither to use the Docker config"
            ));
            };
            return Ok(Found {
                credentials: Some(Credentials::password(&user, &password)),
                looked: format!("{USER_ENV}/{PASSWORD_ENV} (used for {host})"),
            });
        }
        let mut looked = vec![format!("{USER_ENV}/{PASSWORD_ENV} (not set)")];
        let Some(path) = config_path(vars) else {
            looked.push("no Docker config (neither DOCKER_CONFIG nor HOME is set)".into());
            return Ok(Found {
                credentials: None,
                looked: looked.join(", "),
            });
        };
        let shown = path.display().to_string();
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                looked.push(format!("{shown} (no such file)"));
                return Ok(Found {
                    credentials: None,
                    looked: looked.join(", "),
                });
            }
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        };
        // serde_json's message names line and column, never the value it choked on.
        let config: ConfigFile = serde_json::from_slice(&text)
            .map_err(|e| format!("{shown} is not a valid Docker config: {e}"))?;

        if let Some((_, helper)) = config.cred_helpers.iter().find(|(k, _)| same_host(k, host)) {
            if !helpers {
                needs_helper = true;
                return Ok(Found::default());
            }
            let creds = run_helper(helper, host, vars)?;
            looked.push(format!(
                "{shown} credHelpers → docker-credential-{helper}{}",
                if creds.is_some() { "" } else { " (no entry)" }
            ));
            return Ok(Found {
                credentials: creds,
                looked: looked.join(", "),
            });
        }
        let entry = config
            .auths
            .iter()
            .find(|(k, _)| same_host(k, host) || (host == "docker.io" && k.as_str() == HUB_KEY));
        if let Some((key, e)) = entry {
            if let Some(creds) =
                from_entry(e).map_err(|why| format!("{shown}: auths.\"{key}\": {why}"))?
            {
                looked.push(format!("{shown} auths.\"{key}\""));
                return Ok(Found {
                    credentials: Some(creds),
                    looked: looked.join(", "),
                });
            }
        }
        if let Some(store) = &config.creds_store {
            if !helpers {
                needs_helper = true;
                return Ok(Found::default());
            }
            let creds = run_helper(store, host, vars)?;
            looked.push(format!(
                "{shown} credsStore → docker-credential-{store}{}",
                if creds.is_some() { "" } else { " (no entry)" }
            ));
            return Ok(Found {
                credentials: creds,
                looked: looked.join(", "),
            });
        }
        looked.push(format!(
            "{shown} (no auths, credHelpers or credsStore entry for {host})"
        ));
        Ok(Found {
            credentials: None,
            looked: looked.join(", "),
        })
    })();
    if needs_helper {
        None
    } else {
        Some(r)
    }
}

/// An `auths` entry: `auth` is base64 of `user:password`; an entry with only a store's
/// marker (`{}`) is `None`.
fn from_entry(e: &AuthEntry) -> Result<Option<Credentials>, String> {
    if let Some(token) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials {
            username: e.username.clone().unwrap_or_default(),
            secret: Secret::IdentityToken(token.into()),
        }));
    }
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| "`auth` is not base64 (expected base64 of user:password)".to_string())?;
        let text = String::from_utf8(raw).map_err(|_| "`auth` is not UTF-8".to_string())?;
        let (u, p) = text
            .split_once(':')
            .ok_or_else(|| "`auth` has no `:` (expected base64 of user:password)".to_string())?;
        return Ok(Some(Credentials::password(u, p)));
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials::password(u, p))),
        _ => Ok(None),
    }
}

/// `docker-credential-NAME get` with the host on stdin. "Not found" (the helper's exit
/// status with that message) is no credentials; anything else is an error that names the
/// helper and what it said (helpers print no secrets on failure).
fn run_helper(name: &str, host: &str, vars: &Vars) -> Result<Option<Credentials>, String> {
    let program = format!("docker-credential-{name}");
    let mut cmd = Command::new(&program);
    if let Some(path) = vars("PATH") {
        // Also where the program is looked for.
        cmd.env("PATH", path);
    }
    let mut child = cmd
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!("cannot run {program} (named in the Docker config for {host}): {e}; install it or remove the entry")
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is answered by its exit status below.
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{program} get: {e}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if said.to_ascii_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(format!(
            "{program} get failed for {host} ({}): {}",
            out.status,
            said.trim()
        ));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!("{program} get answered something other than {{\"Username\":…,\"Secret\":…}} for {host}")
    })?;
    Ok(Some(if answer.username == "<token>" {
        Credentials {
            username: String::new(),
            secret: Secret::IdentityToken(answer.secret),
        }
    } else {
        Credentials::password(&answer.username, &answer.secret)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Env and `auths` are answered in place; a helper's entry is left to the thread that
    /// may run it (and the full lookup runs it: here a missing program, a clear error).
    #[test]
    fn only_helpers_need_the_blocking_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("u:pw");
        std::fs::write(
            dir.path().join("config.json"),
            format!(
                r#"{{"auths": {{"a.example": {{"auth": "{auth}"}}}}, "credHelpers": {{"h.example": "lifeos-test-none"}}}}"#
            ),
        )
        .unwrap();
        let d = dir.path().display().to_string();
        let vars = move |k: &str| (k == "DOCKER_CONFIG").then(|| d.clone());
        let found = lookup_without_helpers("a.example", &vars).unwrap().unwrap();
        assert_eq!(found.credentials.unwrap().secret(), "pw");
        let none = lookup_without_helpers("b.example", &vars).unwrap().unwrap();
        assert!(none.credentials.is_none() && none.looked.contains("no auths"));
        assert!(lookup_without_helpers("h.example", &vars).is_none());
        let err = lookup("h.example", &vars).unwrap_err();
        assert!(err.contains("docker-credential-lifeos-test-none"), "{err}");
        let env = |k: &str| match k {
            USER_ENV => Some("ci".to_string()),
            PASSWORD_ENV => Some("pw2".to_string()),
            _ => None,
        };
        let found = lookup_without_helpers("h.example", &env).unwrap().unwrap();
        assert_eq!(found.credentials.unwrap().username, "ci");
    }

    #[test]
    fn auth_entries_decode_and_hosts_match_with_scheme_or_path() {
        let e = AuthEntry {
            auth: Some(base64::engine::general_purpose::STANDARD.encode("u:p?+/:x")),
            ..Default::default()
        };
        let c = from_entry(&e).unwrap().unwrap();
        assert_eq!(c.username, "u");
        assert_eq!(c.secret(), "p?+/:x");
        assert!(!format!("{c:?}").contains("p?+/"));
        assert!(from_entry(&AuthEntry::default()).unwrap().is_none());
        assert!(from_entry(&AuthEntry {
            auth: Some("!!".into()),
            ..Default::default()
        })
        .is_err());
        assert!(same_host("https://gcr.io/v1/", "gcr.io"));
        assert!(same_host("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!same_host("127.0.0.1:5001", "127.0.0.1:5000"));
        assert!(same_host("https://index.docker.io/v1/", "docker.io"));
    }
}
