//! PostgreSQL errors, classified Temporary (retry with backoff) or Permanent (stop the
//! run), each message naming the server (never the password) and the fix.
//!
//! Temporary: connection exceptions (SQLSTATE class 08), the server shutting down or
//! starting (57P01, 57P02, 57P03), insufficient resources (class 53), serialization
//! failures and deadlocks (40001, 40P01), a cancelled statement (57014), a lock not
//! available (55P03), and I/O errors (the connection refused, reset or closed). Permanent:
//! everything else, notably bad credentials (class 28), a missing database (3D), a schema
//! or privilege problem (class 42), an unknown host, or TLS demanded of this TLS-less
//! build.

use super::target::PgTarget;
use std::error::Error as _;

/// What a failure calls for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Worth retrying: the server or the network may come back.
    Temporary,
    /// Retrying cannot help: configuration, credentials, schema, or a bug.
    Permanent,
}

/// A PostgreSQL sink error.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection settings are unusable (a bad URL or variable).
    #[error("{0}")]
    Config(String),
    /// The server failed in a way that retrying did not fix, or cannot fix.
    #[error("PostgreSQL {server} (from {origin}): {message}; {fix}")]
    Server {
        /// `user@host:port/database`.
        server: String,
        /// Where the settings came from (`--postgres`, `DATABASE_URL`, ...).
        origin: String,
        /// What failed (the password scrubbed out).
        message: String,
        /// What would fix it.
        fix: String,
        /// Temporary (retries exhausted) or Permanent.
        class: ErrorClass,
    },
}

/// A failure while talking to the server, before it is given its message.
#[derive(Debug)]
pub enum Failure {
    /// From the client library.
    Pg(postgres::Error),
    /// From writing COPY data.
    Io(std::io::Error),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Self {
        Failure::Pg(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

impl Failure {
    /// Temporary or Permanent (see the module documentation).
    pub fn class(&self) -> ErrorClass {
        match self {
            Failure::Io(e) => classify_io(e),
            Failure::Pg(e) => classify(e),
        }
    }

    /// The SQLSTATE, if the server sent one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Failure::Pg(e) => e.code().map(|c| c.code()),
            Failure::Io(_) => None,
        }
    }

    /// A one-line description: the library's words, the server's message, its SQLSTATE.
    pub fn describe(&self) -> String {
        match self {
            Failure::Io(e) => format!("I/O error: {e}"),
            Failure::Pg(e) => match e.as_db_error() {
                Some(db) => {
                    let mut text = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
                    if let Some(detail) = db.detail() {
                        text.push_str(&format!("; {detail}"));
                    }
                    if let Some(hint) = db.hint() {
                        text.push_str(&format!("; hint: {hint}"));
                    }
                    text
                }
                None => {
                    let mut text = e.to_string();
                    let mut source = e.source();
                    while let Some(s) = source {
                        text.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    text
                }
            },
        }
    }

    /// The error to report, naming `target` and the fix; `class` says whether it is
    /// permanent or a temporary one that outlasted the retries.
    pub fn into_error(self, target: &PgTarget, what: &str) -> PgError {
        let class = self.class();
        let message = target.scrub(&format!("{what}: {}", self.describe()));
        PgError::Server {
            server: target.name().to_owned(),
            origin: target.origin().to_owned(),
            fix: self.fix(target),
            message,
            class,
        }
    }

    /// What would fix it.
    fn fix(&self, target: &PgTarget) -> String {
        let credentials =
            "--postgres postgres://USER:PASSWORD@HOST:PORT/DB, DATABASE_URL, or POSTGRES_USER/POSTGRES_PASSWORD";
        let code = self.sqlstate().unwrap_or("");
        if code.starts_with("28") {
            return format!(
                "fix: check the user {:?} and its password ({credentials}), and that the server's pg_hba.conf lets it connect",
                target.user()
            );
        }
        if code.starts_with("3D") {
            let (host, port) = target.address().rsplit_once(':').unwrap_or((target.address(), "5432"));
            return format!(
                "fix: create the database (e.g. `createdb -h {host} -p {port} -U {} {}`) or name an existing one",
                target.user(),
                target.database()
            );
        }
        if code == "42501" {
            return format!(
                "fix: grant the user {:?} CREATE on the database and its schema, or run `tradeflow migrate` as the owner",
                target.user()
            );
        }
        if code.starts_with("42") {
            return "fix: the tables are not what this tradeflow expects; run `tradeflow migrate` against this database, or point --postgres at another one".into();
        }
        if let Failure::Pg(e) = self {
            let text = self.describe();
            if is_unknown_host(&text) {
                return format!("fix: the host in {:?} is unknown; check the host name", target.address());
            }
            if text.contains("TLS") || text.contains("tls") || e.to_string().contains("TLS") {
                return "fix: this build connects without TLS; use sslmode=disable or sslmode=prefer".into();
            }
        }
        if self.class() == ErrorClass::Temporary {
            return format!(
                "fix: check that the server at {} is running and reachable from this machine",
                target.address()
            );
        }
        "fix: see the message above and the server's log".into()
    }
}

/// Classifies a client library error.
pub fn classify(e: &postgres::Error) -> ErrorClass {
    if let Some(code) = e.code() {
        return classify_sqlstate(code.code());
    }
    if e.is_closed() {
        return ErrorClass::Temporary;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return classify_io(io);
        }
        source = s.source();
    }
    let text = e.to_string();
    let temporary = ["error communicating with the server", "error connecting to server", "timeout waiting for server"];
    if temporary.iter().any(|t| text.starts_with(t)) { ErrorClass::Temporary } else { ErrorClass::Permanent }
}

/// Classifies a SQLSTATE (see the module documentation).
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    let temporary = code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "57P01" | "57P02" | "57P03" | "57014" | "40001" | "40P01" | "55P03");
    if temporary { ErrorClass::Temporary } else { ErrorClass::Permanent }
}

/// I/O errors are temporary, except a host name that does not resolve.
pub fn classify_io(e: &std::io::Error) -> ErrorClass {
    if is_unknown_host(&e.to_string()) { ErrorClass::Permanent } else { ErrorClass::Temporary }
}

fn is_unknown_host(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    if text.contains("temporary failure in name resolution") {
        return false;
    }
    ["failed to lookup address", "name or service not known", "no address associated", "nodename nor servname"]
        .iter()
        .any(|m| text.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sqlstates() {
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "53300", "40001", "40P01"] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Temporary, "{code}");
        }
        for code in ["28P01", "28000", "3D000", "42P01", "42501", "23505", "22003"] {
            assert_eq!(classify_sqlstate(code), ErrorClass::Permanent, "{code}");
        }
    }

    #[test]
    fn classifies_io_errors() {
        use std::io::{Error, ErrorKind};
        assert_eq!(classify_io(&Error::from(ErrorKind::ConnectionRefused)), ErrorClass::Temporary);
        assert_eq!(classify_io(&Error::from(ErrorKind::ConnectionReset)), ErrorClass::Temporary);
        let dns = Error::other("failed to lookup address information: Name or service not known");
        assert_eq!(classify_io(&dns), ErrorClass::Permanent);
        let flaky = Error::other("failed to lookup address information: Temporary failure in name resolution");
        assert_eq!(classify_io(&flaky), ErrorClass::Temporary);
    }

    #[test]
    fn messages_name_the_server_and_the_fix_but_not_the_password() {
        let target = PgTarget::from_url("postgres://alice:s3cret@db:5433/market", "DATABASE_URL").unwrap();
        let e = Failure::Io(std::io::Error::other("boom with s3cret inside")).into_error(&target, "connecting");
        let text = e.to_string();
        assert!(text.contains("alice@db:5433/market") && text.contains("DATABASE_URL"), "{text}");
        assert!(text.contains("fix: check that the server at db:5433 is running"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
