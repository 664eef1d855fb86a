//! A deliberately small HTTP/1.1 GET for scraping `/metrics`.
//!
//! Scraping needs one request per second to one plain-HTTP endpoint; a full client (and its TLS, pools
//! and redirects) would be a new dependency for no gain. Everything here is bounded: one timeout covers
//! connect, request and response, and the response may not exceed a byte cap, so a misbehaving endpoint
//! can delay a scrape but never stall or exhaust the sampler.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a GET failed; the text ends up in the view's `unavailable` list, so it names what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("{0}")]
    Connect(std::io::Error),
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("HTTP status {code} {reason}")]
    Status { code: u16, reason: String },
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    #[error("connection closed before the response was complete")]
    Truncated,
    #[error("response body is not UTF-8")]
    NotUtf8,
    #[error("{0}")]
    Io(std::io::Error),
}

/// The parts of an `http://host:port/path` URL that a GET needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host as written (IPv6 literals keep their brackets), for the `Host` header.
    pub authority: String,
    /// Host without brackets, for connecting.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Accepts only `http://` URLs: Triton's metrics endpoint is plain HTTP, and refusing anything
    /// else is clearer than failing later in a handshake we do not speak.
    pub fn parse(url: &str) -> Result<HttpUrl, HttpError> {
        let bad = |reason| HttpError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed '[' in host"))?;
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(bad("unexpected text after ']'")),
            };
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| bad("port is not a number 0-65535"))?,
        };
        Ok(HttpUrl {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// GETs `url` and returns the body of a `200` response as text.
pub async fn get_text(
    url: &HttpUrl,
    timeout: Duration,
    max_bytes: usize,
) -> Result<String, HttpError> {
    match tokio::time::timeout(timeout, get_inner(url, max_bytes)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout(timeout)),
    }
}

async fn get_inner(url: &HttpUrl, max_bytes: usize) -> Result<String, HttpError> {
    let mut stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(HttpError::Connect)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nUser-Agent: perseus/{}\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority,
        env!("CARGO_PKG_VERSION")
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(HttpError::Io)?;
    let mut reader = Reader {
        stream,
        buf: Vec::with_capacity(16 * 1024),
        pos: 0,
        max_bytes,
    };
    let head = reader.read_head().await?;
    let head = parse_head(&head)?;
    if head.code != 200 {
        return Err(HttpError::Status {
            code: head.code,
            reason: head.reason,
        });
    }
    let body = if head.chunked {
        reader.read_chunked().await?
    } else if let Some(len) = head.content_length {
        if len > max_bytes {
            return Err(HttpError::TooLarge(max_bytes));
        }
        reader.read_exact_body(len).await?
    } else {
        reader.read_to_end().await?
    };
    String::from_utf8(body).map_err(|_| HttpError::NotUtf8)
}

struct Head {
    code: u16,
    reason: String,
    content_length: Option<usize>,
    chunked: bool,
}

fn parse_head(head: &str) -> Result<Head, HttpError> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("status line is not HTTP/1.x"));
    }
    let code = parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or(HttpError::Malformed("status code is not a number"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| HttpError::Malformed("Content-Length is not a number"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    Ok(Head {
        code,
        reason,
        content_length,
        chunked,
    })
}

/// Buffered reading with the byte cap applied to everything received, headers included.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Start of the unconsumed part of `buf`.
    pos: usize,
    max_bytes: usize,
}

impl Reader {
    /// Reads more bytes; `false` at end of stream.
    async fn fill(&mut self) -> Result<bool, HttpError> {
        if self.buf.len() >= self.max_bytes {
            return Err(HttpError::TooLarge(self.max_bytes));
        }
        let mut chunk = [0u8; 16 * 1024];
        let room = (self.max_bytes - self.buf.len()).min(chunk.len());
        let n = self
            .stream
            .read(&mut chunk[..room])
            .await
            .map_err(HttpError::Io)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    fn find_crlf(&self, from: usize) -> Option<usize> {
        self.buf[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| from + i)
    }

    async fn read_head(&mut self) -> Result<String, HttpError> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buf[..end])
                    .map_err(|_| HttpError::Malformed("headers are not UTF-8"))?
                    .to_owned();
                self.pos = end + 4;
                return Ok(head);
            }
            if !self.fill().await? {
                return Err(HttpError::Truncated);
            }
        }
    }

    async fn read_exact_body(&mut self, len: usize) -> Result<Vec<u8>, HttpError> {
        while self.buf.len() - self.pos < len {
            if !self.fill().await? {
                return Err(HttpError::Truncated);
            }
        }
        Ok(self.buf[self.pos..self.pos + len].to_vec())
    }

    async fn read_to_end(&mut self) -> Result<Vec<u8>, HttpError> {
        while self.fill().await? {}
        Ok(self.buf[self.pos..].to_vec())
    }

    async fn read_line(&mut self) -> Result<String, HttpError> {
        loop {
            if let Some(end) = self.find_crlf(self.pos) {
                let line = std::str::from_utf8(&self.buf[self.pos..end])
                    .map_err(|_| HttpError::Malformed("chunk header is not UTF-8"))?
                    .to_owned();
                self.pos = end + 2;
                return Ok(line);
            }
            if !self.fill().await? {
                return Err(HttpError::Truncated);
            }
        }
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line().await?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| HttpError::Malformed("chunk size is not hexadecimal"))?;
            if size == 0 {
                return Ok(body);
            }
            if size > self.max_bytes {
                return Err(HttpError::TooLarge(self.max_bytes));
            }
            while self.buf.len() - self.pos < size + 2 {
                if !self.fill().await? {
                    return Err(HttpError::Truncated);
                }
            }
            body.extend_from_slice(&self.buf[self.pos..self.pos + size]);
            if &self.buf[self.pos + size..self.pos + size + 2] != b"\r\n" {
                return Err(HttpError::Malformed("chunk not followed by CRLF"));
            }
            self.pos += size + 2;
        }
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
            ("https://h/metrics", "only http://"),
            ("h:8002/metrics", "only http://"),
            ("http://:8002/", "missing host"),
            ("http://h:99999/", "port"),
            ("http://[::1/", "unclosed"),
        ] {
            let err = HttpUrl::parse(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn status_line_and_framing_headers_are_read() {
        let h = parse_head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\nX: y").unwrap();
        assert_eq!(
            (h.code, h.content_length, h.chunked),
            (200, Some(12), false)
        );
        let h = parse_head("HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, chunked").unwrap();
        assert_eq!(
            (h.code, h.reason.as_str(), h.chunked),
            (404, "Not Found", true)
        );
        assert!(parse_head("SSH-2.0-OpenSSH").is_err());
    }
}
