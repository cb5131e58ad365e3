//! A Confluent-compatible schema registry client (`SCHEMA_REGISTRY_URL`): writer schemas
//! fetched by id (`GET /schemas/ids/{id}`) and cached for the run; the trade schema
//! registered under a subject (`POST /subjects/{subject}/versions`) by the producer.
//!
//! Unreachable is not the same as unknown: a registry that does not answer (after a few
//! retries) stops the run, while an id it does not know dead-letters the record.

use super::avro::trade_schema;
use apache_avro::Schema;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tradeflow_model::secret::scrub;

/// A writer schema, as the decoder uses it.
#[derive(Debug)]
pub enum WriterSchema {
    /// `schemas/trade.avsc` itself (same canonical form): the fast decoder.
    Trade,
    /// Any other schema: decoded generically, fields read by name.
    Other(Schema),
}

/// Why the schema registry could not answer a question.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP client could not be built, or an answer could not be read (`source`
    /// without its request URL, which may hold the password).
    #[error("schema registry {url}: {source}")]
    Http {
        /// The registry (or request) URL, password hidden.
        url: String,
        /// The underlying error.
        source: reqwest::Error,
    },
    /// No answer after [`ATTEMPTS`] tries: connection failures or 5xx.
    #[error(
        "schema registry {url} cannot be reached ({last}; tried {attempts} times): check SCHEMA_REGISTRY_URL, or unset it to use schemas/trade.avsc"
    )]
    Unreachable {
        /// The registry's URL, password hidden.
        url: String,
        /// The last failure: an HTTP status or a connection error.
        last: String,
        /// How many times the request was sent.
        attempts: u32,
    },
    /// An answer with an unexpected HTTP status.
    #[error("schema registry {url}: HTTP {status}: {body}")]
    Status {
        /// The request URL, password hidden.
        url: String,
        /// The status.
        status: u16,
        /// The answer's body.
        body: String,
    },
    /// A schema lookup answered without a `schema`.
    #[error("schema registry {url}: no \"schema\" in the answer {body:?}")]
    NoSchema {
        /// The request URL, password hidden.
        url: String,
        /// The answer's body.
        body: String,
    },
    /// The schema under an id is not an Avro schema.
    #[error("schema registry {url}: schema id {id} is not a valid Avro schema: {source}")]
    InvalidSchema {
        /// The request URL, password hidden.
        url: String,
        /// The schema id.
        id: u32,
        /// What the Avro parser says.
        source: apache_avro::Error,
    },
    /// A registration answered without an `id`.
    #[error("schema registry {url}: no \"id\" in the answer {body:?}")]
    NoId {
        /// The request URL, password hidden.
        url: String,
        /// The answer's body.
        body: String,
    },
}

/// A schema registry at one URL, with its cache.
pub struct Registry {
    /// The URL requests go to.
    address: String,
    /// `address` as messages show it: its password replaced by `***`.
    url: String,
    /// The password in `address` (empty without one), scrubbed from every message.
    password: String,
    client: reqwest::blocking::Client,
    cache: Mutex<HashMap<u32, Option<Arc<WriterSchema>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("url", &self.url).finish()
    }
}

/// Attempts per request before the registry counts as unreachable.
const ATTEMPTS: u32 = 4;

impl Registry {
    /// A client of the registry at `url` (`http://host:8081`).
    pub fn new(url: &str) -> Result<Registry, RegistryError> {
        let password = url::Url::parse(url)
            .ok()
            .and_then(|u| {
                u.password().map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
            })
            .unwrap_or_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| RegistryError::Http { url: scrub(url, &password), source: source.without_url() })?;
        let address = url.trim_end_matches('/').to_owned();
        Ok(Registry { url: scrub(&address, &password), address, password, client, cache: Mutex::default() })
    }

    /// The registry's URL as shown in messages (a password in it replaced by `***`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The writer schema with this id: `Ok(None)` when the registry does not know it,
    /// `Err` when it cannot be reached or answers nonsense.
    pub fn schema(&self, id: u32) -> Result<Option<Arc<WriterSchema>>, RegistryError> {
        if let Some(found) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
            return Ok(found.clone());
        }
        let url = format!("{}/schemas/ids/{id}", self.address);
        let shown = || format!("{}/schemas/ids/{id}", self.url);
        let found = match self.request(|| self.client.get(&url))? {
            (404, _) => None,
            (200, body) => {
                let Some(text) = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|json| json["schema"].as_str().map(str::to_owned))
                else {
                    return Err(RegistryError::NoSchema { url: shown(), body });
                };
                let schema = Schema::parse_str(&text).map_err(|source| RegistryError::InvalidSchema {
                    url: shown(),
                    id,
                    source,
                })?;
                Some(Arc::new(if schema.canonical_form() == trade_schema().canonical_form() {
                    WriterSchema::Trade
                } else {
                    WriterSchema::Other(schema)
                }))
            }
            (status, body) => return Err(RegistryError::Status { url: shown(), status, body }),
        };
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(id, found.clone());
        Ok(found)
    }

    /// Registers `schema` under `subject` (idempotent: an identical schema gets its
    /// existing id); returns the id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.address);
        let shown = || format!("{}/subjects/{subject}/versions", self.url);
        let body = serde_json::json!({ "schema": schema }).to_string();
        let (status, answer) = self.request(|| {
            self.client.post(&url).header("Content-Type", "application/vnd.schemaregistry.v1+json").body(body.clone())
        })?;
        if status != 200 {
            return Err(RegistryError::Status { url: shown(), status, body: answer });
        }
        serde_json::from_str::<serde_json::Value>(&answer)
            .ok()
            .and_then(|json| json["id"].as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError::NoId { url: shown(), body: answer })
    }

    /// Sends a request, retrying connection failures and 5xx; (status, body).
    fn request(&self, build: impl Fn() -> reqwest::blocking::RequestBuilder) -> Result<(u16, String), RegistryError> {
        let mut delay = Duration::from_millis(200);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            match build().send() {
                Ok(response) if !response.status().is_server_error() => {
                    let status = response.status().as_u16();
                    let body = response.text().map_err(|source| RegistryError::Http {
                        url: self.url.clone(),
                        source: source.without_url(),
                    })?;
                    return Ok((status, body));
                }
                Ok(response) => last = format!("HTTP {}", response.status()),
                Err(e) => last = scrub(&e.to_string(), &self.password),
            }
            if attempt < ATTEMPTS {
                std::thread::sleep(delay);
                delay *= 2;
            }
        }
        Err(RegistryError::Unreachable { url: self.url.clone(), last, attempts: ATTEMPTS })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Answers each connection with the next canned response.
    fn serve(responses: Vec<(u16, String)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for (status, body) in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(answer.as_bytes()).unwrap();
            }
        });
        url
    }

    #[test]
    fn fetches_and_caches_schemas_by_id() {
        let trade = serde_json::json!({ "schema": super::super::avro::TRADE_SCHEMA }).to_string();
        let other =
            serde_json::json!({ "schema": r#"{"type":"record","name":"X","fields":[{"name":"s","type":"string"}]}"# })
                .to_string();
        let url =
            serve(vec![(200, trade), (200, other), (404, "{\"error_code\":40403}".into()), (200, "{\"id\":7}".into())]);
        let registry = Registry::new(&url).unwrap();
        assert!(matches!(*registry.schema(1).unwrap().unwrap(), WriterSchema::Trade));
        assert!(matches!(*registry.schema(1).unwrap().unwrap(), WriterSchema::Trade), "cached: no second request");
        assert!(matches!(*registry.schema(2).unwrap().unwrap(), WriterSchema::Other(_)));
        assert!(registry.schema(3).unwrap().is_none());
        assert_eq!(registry.register("trades-value", "{}").unwrap(), 7);
    }

    #[test]
    fn an_unreachable_registry_is_an_error() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let registry = Registry::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let e = registry.schema(1).unwrap_err().to_string();
        assert!(e.contains("cannot be reached") && e.contains("SCHEMA_REGISTRY_URL"), "{e}");
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let registry = Registry::new(&format!("http://user:s3cr3t@127.0.0.1:{port}")).unwrap();
        assert_eq!(registry.url(), format!("http://user:***@127.0.0.1:{port}"));
        let e = registry.schema(1).unwrap_err().to_string();
        assert!(e.contains("cannot be reached") && !e.contains("s3cr3t"), "{e}");
        assert!(!format!("{registry:?}").contains("s3cr3t"));
    }
}
