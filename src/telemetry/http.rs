//! The HTTP GET that scrapes `/metrics`, on hyper (already compiled in through tonic and axum).
//!
//! One scrape a second to one plain-HTTP endpoint: the client keeps a single HTTP/1.1 connection
//! alive and reuses it, reconnecting only when the server closed it. Everything is bounded: one
//! timeout covers connect, request and response, and the body may not exceed a byte cap, so a
//! misbehaving endpoint can delay a scrape but never stall or exhaust the sampler. URLs are parsed
//! strictly (`http::Uri`), so a URL from a config file cannot smuggle a space, CR or LF into the
//! request line or headers.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, CONTENT_LENGTH, HOST, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why a GET failed; the text ends up in the view's `unavailable` list, so it names what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("HTTP status {code} {reason}")]
    Status { code: u16, reason: String },
    #[error("HTTP: {0}")]
    Protocol(#[from] hyper::Error),
    #[error("reading the response body: {0}")]
    Body(String),
    #[error("response body is not UTF-8")]
    NotUtf8,
}

/// A checked `http://host[:port]/path` URL: what to connect to and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host and port as written (IPv6 literals keep their brackets), for the `Host` header.
    pub authority: String,
    /// Host without brackets, for connecting.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Accepts only `http://` URLs without credentials: Triton's metrics endpoint is plain HTTP,
    /// and refusing anything else is clearer than failing later in a handshake we do not speak.
    pub fn parse(url: &str) -> Result<HttpUrl, HttpError> {
        let bad = |reason: &str| HttpError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(c) = url.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(&format!(
                "contains {c:?}; spaces and control characters (CR, LF, …) are not allowed in a URL"
            )));
        }
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// URLs are supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("missing host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        // `Authority::port_u16` is `None` both for no port and for one out of range.
        let port = if authority.as_str().len() > authority.host().len() {
            authority
                .port_u16()
                .ok_or_else(|| bad("port is not a number 0-65535"))?
        } else {
            80
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(HttpUrl {
            authority: authority.as_str().to_owned(),
            host: host.to_owned(),
            port,
            path: if path.is_empty() { "/".into() } else { path },
        })
    }
}

/// GETs one URL repeatedly over one kept-alive connection.
pub struct HttpClient {
    url: HttpUrl,
    timeout: Duration,
    max_bytes: usize,
    /// The open connection, if the last request left one that can be reused.
    conn: Option<SendRequest<Empty<Bytes>>>,
}

impl HttpClient {
    /// `timeout` bounds each whole GET; `max_bytes` each response body.
    pub fn new(url: HttpUrl, timeout: Duration, max_bytes: usize) -> HttpClient {
        HttpClient {
            url,
            timeout,
            max_bytes,
            conn: None,
        }
    }

    pub fn url(&self) -> &HttpUrl {
        &self.url
    }

    /// GETs the URL and returns the body of a `200` response as text. A request that fails or
    /// times out drops the connection, so the next one starts clean.
    pub async fn get_text(&mut self) -> Result<String, HttpError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.get_inner()).await {
            Ok(result) => result,
            Err(_) => {
                self.conn = None;
                Err(HttpError::Timeout(timeout))
            }
        }
    }

    async fn get_inner(&mut self) -> Result<String, HttpError> {
        let reused = self.conn.take().filter(|c| !c.is_closed());
        let (mut sender, response) = match reused {
            Some(mut sender) => match self.send(&mut sender).await {
                Ok(response) => (sender, response),
                // The server closed the idle connection as we reused it; a GET is safe to repeat.
                Err(_) => {
                    let mut fresh = self.connect().await?;
                    let response = self.send(&mut fresh).await?;
                    (fresh, response)
                }
            },
            None => {
                let mut fresh = self.connect().await?;
                let response = self.send(&mut fresh).await?;
                (fresh, response)
            }
        };
        let status = response.status();
        if status != StatusCode::OK {
            return Err(HttpError::Status {
                code: status.as_u16(),
                reason: status.canonical_reason().unwrap_or_default().to_owned(),
            });
        }
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_bytes as u64) {
            return Err(HttpError::TooLarge(self.max_bytes));
        }
        let body = Limited::new(response.into_body(), self.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<LengthLimitError>() {
                    HttpError::TooLarge(self.max_bytes)
                } else {
                    HttpError::Body(e.to_string())
                }
            })?
            .to_bytes();
        // Only a connection whose response was read to the end, and that the server keeps open,
        // can carry the next request.
        if sender.ready().await.is_ok() {
            self.conn = Some(sender);
        }
        String::from_utf8(body.into()).map_err(|_| HttpError::NotUtf8)
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, HttpError> {
        let stream = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(HttpError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // Drives the socket; it ends when the sender is dropped or the server closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn send(
        &self,
        sender: &mut SendRequest<Empty<Bytes>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, HttpError> {
        sender.ready().await?;
        let request = Request::get(self.url.path.as_str())
            .header(HOST, self.url.authority.as_str())
            .header(ACCEPT, "text/plain")
            .header(USER_AGENT, concat!("perseus/", env!("CARGO_PKG_VERSION")))
            .body(Empty::new())
            .map_err(|e| HttpError::BadUrl {
                url: self.url.path.clone(),
                reason: e.to_string(),
            })?;
        Ok(sender.send_request(request).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let u = HttpUrl::parse("http://127.0.0.1:8002/metrics").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8002, "/metrics")
        );
        let u = HttpUrl::parse("http://triton").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("triton", 80, "/")
        );
        let u = HttpUrl::parse("http://[::1]:9/m?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 9, "/m?x=1")
        );
        assert_eq!(u.authority, "[::1]:9");
    }

    #[test]
    fn unsupported_urls_say_why() {
        for (url, why) in [
            ("https://h/metrics", &["only http://"][..]),
            ("h:8002/metrics", &["only http://", "invalid"]),
            ("http://:8002/", &["missing host", "invalid"]),
            ("http://h:99999/", &["port is not a number", "invalid"]),
            ("http://[::1/", &["invalid"]),
            ("http://u:p@h/", &["credentials"]),
        ] {
            let err = HttpUrl::parse(url).unwrap_err().to_string();
            assert!(err.starts_with("bad URL"), "{url}: {err}");
            assert!(why.iter().any(|w| err.contains(w)), "{url}: {err}");
        }
    }
}
