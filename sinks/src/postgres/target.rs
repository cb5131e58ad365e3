//! Where the PostgreSQL sink writes, and how that server is named in messages.
//!
//! The server comes from `--postgres URL`, else `DATABASE_URL`, else the seed's
//! `POSTGRES_HOST` / `POSTGRES_PORT` / `POSTGRES_DB` / `POSTGRES_USER` /
//! `POSTGRES_PASSWORD` (the caller decides where variables are read from: the environment,
//! then `.env`). Messages name it as `user@host:port/database` and never show the
//! password: [`PgTarget`]'s `Debug` and `Display` print that name only, and
//! [`PgTarget::scrub`] removes the password from any text before it is printed.

use super::error::PgError;
use postgres::config::Host;
use postgres::{Client, NoTls};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection whose sent data stays unacknowledged this long is dead (a server that
/// vanished without closing it): the writer reconnects instead of waiting forever.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// A PostgreSQL server, database and user to write to.
#[derive(Clone)]
pub struct PgTarget {
    config: postgres::Config,
    name: String,
    address: String,
    origin: String,
    secret: Option<String>,
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgTarget({})", self.name)
    }
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// The seed's variables, as read by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedVariables {
    /// `POSTGRES_HOST`.
    pub host: Option<String>,
    /// `POSTGRES_PORT`.
    pub port: Option<String>,
    /// `POSTGRES_DB`.
    pub db: Option<String>,
    /// `POSTGRES_USER`.
    pub user: Option<String>,
    /// `POSTGRES_PASSWORD`.
    pub password: Option<String>,
}

impl PgTarget {
    /// The target named by `--postgres` (`flag`), else `DATABASE_URL`, else the seed's
    /// `POSTGRES_*` variables (on when `POSTGRES_HOST` is set); `None` when none is given.
    /// `var` looks a variable up (empty values count as unset).
    pub fn resolve(flag: Option<&str>, var: impl Fn(&str) -> Option<String>) -> Result<Option<PgTarget>, PgError> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(url) = flag {
            return PgTarget::from_url(url, "--postgres").map(Some);
        }
        if let Some(url) = var("DATABASE_URL") {
            return PgTarget::from_url(&url, "DATABASE_URL").map(Some);
        }
        let seed = SeedVariables {
            host: var("POSTGRES_HOST"),
            port: var("POSTGRES_PORT"),
            db: var("POSTGRES_DB"),
            user: var("POSTGRES_USER"),
            password: var("POSTGRES_PASSWORD"),
        };
        if seed.host.is_none() {
            return Ok(None);
        }
        PgTarget::from_seed(&seed).map(Some)
    }

    /// A target from a `postgres://user:password@host:port/db?options` URL (or a libpq
    /// `key=value` string); `origin` names where it came from, for messages.
    pub fn from_url(url: &str, origin: &str) -> Result<PgTarget, PgError> {
        let config = postgres::Config::from_str(url.trim()).map_err(|e| {
            PgError::Config(format!(
                "{origin} {}: {e}; use postgres://user:password@host:5432/database (percent-encode '@', ':' and '/' in the password)",
                shown_invalid(url)
            ))
        })?;
        // `postgres://u:p@ss@host`: the URL parser splits at the first '@', so the rest of
        // the password would become (and be shown as) part of the host name.
        let at_in_host = config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(name) if name.contains('@')));
        if at_in_host {
            return Err(PgError::Config(format!(
                "{origin} {}: the host name holds an '@', which is most likely part of the password; percent-encode '@' in the password as %40",
                shown_invalid(url)
            )));
        }
        Ok(PgTarget::with_config(config, origin))
    }

    /// A target from the seed's `POSTGRES_*` variables (host required; port 5432, user
    /// `postgres` and database = user by default).
    pub fn from_seed(seed: &SeedVariables) -> Result<PgTarget, PgError> {
        let mut config = postgres::Config::new();
        config.host(seed.host.as_deref().unwrap_or("localhost").trim());
        if let Some(port) = &seed.port {
            let port: u16 = port.trim().parse().map_err(|_| {
                PgError::Config(format!("POSTGRES_PORT={port:?} is not a port number; use e.g. POSTGRES_PORT=5432"))
            })?;
            config.port(port);
        }
        config.user(seed.user.as_deref().unwrap_or("postgres"));
        if let Some(db) = &seed.db {
            config.dbname(db);
        }
        if let Some(password) = &seed.password {
            config.password(password);
        }
        Ok(PgTarget::with_config(config, "the POSTGRES_* variables"))
    }

    fn with_config(mut config: postgres::Config, origin: &str) -> PgTarget {
        // libpq's defaults, made explicit so that the name in messages is what is used.
        if config.get_user().is_none() {
            let user = std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let user = config.get_user().unwrap_or("postgres").to_owned();
            config.dbname(&user);
        }
        if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
            config.host("localhost");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tradeflow");
        }
        let secret = config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).filter(|p| !p.is_empty());
        let address = address_of(&config);
        let name =
            format!("{}@{address}/{}", config.get_user().unwrap_or_default(), config.get_dbname().unwrap_or_default());
        PgTarget { config, name, address, origin: origin.to_owned(), secret }
    }

    /// `user@host:port/database`: how messages name this server. Never the password.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the target came from (`--postgres`, `DATABASE_URL`, ...).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The user name.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or_default()
    }

    /// The database name.
    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or_default()
    }

    /// `host:port` of the (first) server.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `text` with the password (and anything URL-shaped holding one) replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let out = redact_url(text);
        match &self.secret {
            Some(secret) => tradeflow_model::secret::scrub(&out, secret),
            None => out,
        }
    }

    /// Opens a connection (no TLS: use `sslmode=disable` or the default `prefer`).
    pub fn connect(&self) -> Result<Client, postgres::Error> {
        self.config.connect(NoTls)
    }
}

/// `host:port` of every server the config lists, comma-separated.
fn address_of(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config.get_hostaddrs().iter().map(|a| a.to_string()).collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    };
    let servers: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            if host.contains(':') && !host.starts_with('/') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        })
        .collect();
    servers.join(",")
}

/// How a connection string that does not parse is shown: its scheme and what follows its
/// last '@' (the host) with the user before the first ':', or a `key=value` string without its password. Anything else may be
/// a password in a malformed shape (`u:pw@host`, `postgres:/u:pw@h`, `postgres://u:pw`),
/// so it is replaced by `***`.
fn shown_invalid(text: &str) -> String {
    let text = text.trim();
    let (scheme, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    let shown = match rest.rfind('@') {
        Some(at) => match rest[..at].split_once(':') {
            Some((user, _)) if !user.is_empty() && !user.contains('/') => format!("{scheme}{user}:***{}", &rest[at..]),
            _ => format!("{scheme}***{}", &rest[at..]),
        },
        None if scheme.is_empty() && text.contains('=') => text.to_owned(),
        None => format!("{scheme}***"),
    };
    redact_password_parameters(&shown)
}

/// `text` with the password of every `scheme://user:password@host` URL, and every
/// `password=...` parameter (query string or libpq key-value form), replaced by `***`.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first '/', '?', '#' or whitespace; its userinfo at the
        // last '@' inside it.
        let end = after.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _)) => out.push_str(&format!("{user}:***")),
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    redact_password_parameters(&out)
}

/// `password=secret` (in a query string or a libpq key-value string) → `password=***`.
fn redact_password_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let Some(found) = find_ascii_case_insensitive(rest, "password=") else {
            out.push_str(rest);
            return out;
        };
        let value_start = found + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let value = &rest[value_start..];
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            // A quoted key-value: up to the closing quote that is not backslash-escaped.
            let mut escaped = false;
            let mut close = quoted.len();
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        close = i + 1;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            (1 + close).min(value.len())
        } else {
            value.find(|c: char| c == '&' || c == '#' || c.is_whitespace()).unwrap_or(value.len())
        };
        rest = &value[end..];
    }
}

fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<usize> {
    haystack.as_bytes().windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn redacts_passwords_in_urls_and_parameters() {
        assert_eq!(redact_url("postgres://u:s3cret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgresql://u:p%40ss@h/db?sslmode=disable"), "postgresql://u:***@h/db?sslmode=disable");
        assert_eq!(redact_url("postgres://u:a@b@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgres://h/db?user=u&password=x1&x=2"), "postgres://h/db?user=u&password=***&x=2");
        assert_eq!(redact_url("host=h password='a b\\'c' user=u"), "host=h password=*** user=u");
        assert_eq!(redact_url("host=h PASSWORD=abc"), "host=h PASSWORD=***");
        assert_eq!(redact_url("error at postgres://u:pw@h/db: boom"), "error at postgres://u:***@h/db: boom");
    }

    #[test]
    fn malformed_connection_strings_never_show_the_password() {
        let secret = "s3cr3tpw";
        for (origin, url) in [
            ("--postgres", "u:s3cr3tpw@127.0.0.1:1"),
            ("--postgres", "postgres:/u:s3cr3tpw@127.0.0.1:1/db"),
            ("--postgres", "postgres//u:s3cr3tpw@127.0.0.1/db"),
            ("--postgres", "postgres://u:s3cr3tpw"),
            ("--postgres", "postgres://u:s3cr3tpw@h:notaport/db"),
            ("--postgres", "host=h port=x password=s3cr3tpw"),
            ("DATABASE_URL", "u:s3cr3tpw@h"),
            ("DATABASE_URL", "postgres://u:ab@s3cr3tpw@127.0.0.1:1/db"),
        ] {
            let message = match PgTarget::from_url(url, origin) {
                Err(e) => e.to_string(),
                Ok(target) => panic!("{url} parsed as {}", target.name()),
            };
            assert!(message.contains(origin), "{message}");
            assert!(!message.contains(secret), "{url}: {message}");
        }
        let message = PgTarget::from_url("u:s3cr3tpw@127.0.0.1:1", "--postgres").unwrap_err().to_string();
        assert!(message.contains("u:***@127.0.0.1:1"), "names the user and host: {message}");
    }

    #[test]
    fn names_the_server_without_the_password() {
        let t = PgTarget::from_url("postgres://alice:hunter2@db.example:6543/market", "--postgres").unwrap();
        assert_eq!(t.name(), "alice@db.example:6543/market");
        assert_eq!(t.address(), "db.example:6543");
        assert_eq!((t.user(), t.database()), ("alice", "market"));
        assert!(!format!("{t:?} {t}").contains("hunter2"));
        assert_eq!(t.scrub("failed for hunter2 and hunter%32"), "failed for *** and hunter%32");
        let t = PgTarget::from_url("postgres://bob:p%40ss@h/db", "--postgres").unwrap();
        assert_eq!(t.scrub("p@ss p%40ss"), "*** ***");
        let t = PgTarget::from_url("postgres://carol@localhost", "--postgres").unwrap();
        assert_eq!(t.name(), "carol@localhost:5432/carol");
    }

    #[test]
    fn resolves_flag_then_database_url_then_seed_variables() {
        let none = PgTarget::resolve(None, vars(&[("POSTGRES_USER", "x")])).unwrap();
        assert!(none.is_none(), "POSTGRES_HOST turns the sink on");
        let seed = [("POSTGRES_HOST", "pg"), ("POSTGRES_PORT", "5433"), ("POSTGRES_DB", "m"), ("POSTGRES_USER", "u")];
        let t = PgTarget::resolve(None, vars(&seed)).unwrap().unwrap();
        assert_eq!((t.name(), t.origin()), ("u@pg:5433/m", "the POSTGRES_* variables"));
        let with_url = [("DATABASE_URL", "postgres://v:w@dbhost/n"), ("POSTGRES_HOST", "pg")];
        let t = PgTarget::resolve(None, vars(&with_url)).unwrap().unwrap();
        assert_eq!((t.name(), t.origin()), ("v@dbhost:5432/n", "DATABASE_URL"));
        let t = PgTarget::resolve(Some("postgres://f@flag/db"), vars(&with_url)).unwrap().unwrap();
        assert_eq!(t.name(), "f@flag:5432/db");
        let e = PgTarget::resolve(None, vars(&[("POSTGRES_HOST", "pg"), ("POSTGRES_PORT", "x")])).unwrap_err();
        assert!(e.to_string().contains("POSTGRES_PORT=\"x\""), "{e}");
        let e = PgTarget::from_url("postgres://u:topsecret@h:notaport/db", "--postgres").unwrap_err();
        assert!(!e.to_string().contains("topsecret") && e.to_string().contains("u:***@h"), "{e}");
    }
}
