//! A database given as a connection URL in a secret (`database = { url_secret = "NAME" }`):
//! parsed here into libpq's `PG*` variables, so the client tools never see the URL and the
//! password is only ever in `PGPASSWORD`. Messages name the host, port and database, never the
//! URL or the password (the URL is a secret: masked anyway, but not even masked text is made).

/// `postgres://user:password@host:port/dbname?sslmode=require`, taken apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Conn {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    /// Query parameters as libpq variables (`sslmode` → `PGSSLMODE`, ...).
    pub params: Vec<(String, String)>,
}

/// URL query parameters libpq also reads from the environment.
const PARAMS: &[(&str, &str)] = &[
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("gssencmode", "PGGSSENCMODE"),
    ("channel_binding", "PGCHANNELBINDING"),
];

impl Conn {
    /// Parse the value of secret `name`. The error never quotes the value.
    pub fn parse(name: &str, value: &str) -> Result<Conn, String> {
        let bad = |why: &str| {
            format!(
                "the secret {name} is not a usable postgres:// URL: {why} (its value is not shown)"
            )
        };
        let u = url::Url::parse(value.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(u.scheme(), "postgres" | "postgresql") {
            return Err(bad("expected postgres://user:password@host:port/dbname"));
        }
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let host = match u.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err(bad("it names no host")),
        };
        let user = if u.username().is_empty() {
            "postgres".to_string()
        } else {
            decode(u.username())
        };
        let dbname = match u.path().trim_start_matches('/') {
            "" => user.clone(),
            p if p.contains('/') => return Err(bad("the path must be just the database name")),
            p => decode(p),
        };
        let mut params = Vec::new();
        for (k, v) in u.query_pairs() {
            match PARAMS.iter().find(|(p, _)| *p == k) {
                Some((_, var)) => params.push((var.to_string(), v.into_owned())),
                None => {
                    return Err(bad(&format!(
                        "unsupported query parameter `{k}` (supported: {})",
                        PARAMS.iter().map(|p| p.0).collect::<Vec<_>>().join(", ")
                    )))
                }
            }
        }
        Ok(Conn {
            host: host.to_string(),
            port: u.port().unwrap_or(5432),
            user,
            password: u.password().map(decode),
            dbname,
            params,
        })
    }

    /// `host:port/dbname`, for messages.
    pub fn display(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.dbname)
    }

    /// The client's environment: libpq's variables, no URL.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut e = vec![
            ("PGHOST".to_string(), self.host.clone()),
            ("PGPORT".to_string(), self.port.to_string()),
            ("PGUSER".to_string(), self.user.clone()),
            ("PGDATABASE".to_string(), self.dbname.clone()),
        ];
        if let Some(p) = &self.password {
            e.push(("PGPASSWORD".into(), p.clone()));
        }
        e.extend(self.params.iter().cloned());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_becomes_libpq_variables() {
        let c = Conn::parse(
            "DB_URL",
            "postgres://app%40corp:p%3Ass+w@db.example:6432/prod?sslmode=require",
        )
        .unwrap();
        assert_eq!(c.host, "db.example");
        assert_eq!(c.port, 6432);
        assert_eq!(c.user, "app@corp");
        assert_eq!(c.password.as_deref(), Some("p:ss+w"));
        assert_eq!(c.dbname, "prod");
        assert_eq!(c.display(), "db.example:6432/prod");
        assert!(c.env().contains(&("PGSSLMODE".into(), "require".into())));
        let c = Conn::parse("DB_URL", "postgresql://u@[::1]/").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.dbname.as_str()),
            ("::1", 5432, "u")
        );
        assert_eq!(c.password, None);
    }

    #[test]
    fn errors_never_quote_the_value() {
        for v in [
            "mysql://u:hunter2@h/db",
            "postgres://u:hunter2@h/db?sslmode=require&pool=9",
            "postgres://u:hunter2@/db",
            "hunter2",
        ] {
            let e = Conn::parse("DB_URL", v).unwrap_err();
            assert!(e.contains("DB_URL") && !e.contains("hunter2"), "{e}");
        }
    }
}
