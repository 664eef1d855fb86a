//! How to reach a Triton server: the connection options, and the endpoint they build (address,
//! scheme, timeouts, TLS, HTTP/2 windows), checked before anything is dialled.

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Uri};

use super::error::{Limits, TritonError, error_chain};
use crate::vocab::spec::{TlsSpec, Transport};

/// Default cap on a response: room for a batch of large CNN outputs, far below what would hurt.
pub const DEFAULT_MAX_DECODE_BYTES: usize = 64 * 1024 * 1024;
/// Default cap on a request: a batch of 64 FP32 224×224 images is ~38 MiB.
pub const DEFAULT_MAX_ENCODE_BYTES: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows and frame size for megabyte tensors: with the protocol's defaults
/// (64 KiB windows, 16 KiB frames) one 0.6 MB image takes dozens of frames and window updates each
/// way, and the syscalls and wake-ups for them cost more CPU than the bytes.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
pub const CONNECTION_WINDOW_BYTES: u32 = 64 << 20;
/// HTTP/2's largest frame is 2^24 − 1 bytes; 1 MiB holds a CNN image in one frame.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// How to reach a Triton server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// `HOST:PORT`, or a URL `http://HOST:PORT` / `https://HOST:PORT`.
    pub address: String,
    /// Bound on establishing (and re-establishing) the connection.
    pub connect_timeout: Duration,
    /// Deadline for each call unless the call gives its own; `None` waits indefinitely.
    pub request_timeout: Option<Duration>,
    /// Connect over TLS with these settings; implies `https`.
    pub tls: Option<TlsOptions>,
    /// Largest response accepted. The length prefix is checked before any buffer is reserved, so a
    /// hostile or broken server cannot make the client allocate more than this per message.
    pub max_decode_bytes: usize,
    /// Largest request sent; a larger one fails locally without touching the network.
    pub max_encode_bytes: usize,
    /// How the tenants' requests carry their tensors (shared memory only to a server on this machine).
    pub transport: Transport,
    /// The send path as first shipped: HTTP/2's default windows and frames, and each request encoded
    /// afresh. Kept so that the client-cost benchmark measures what the current path saves.
    pub legacy_grpc: bool,
}

impl ConnectOptions {
    /// Options for `address` with the defaults: 5 s connect timeout, 30 s per call, no TLS, 64 MiB
    /// message limits.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Some(Duration::from_secs(30)),
            tls: None,
            max_decode_bytes: DEFAULT_MAX_DECODE_BYTES,
            max_encode_bytes: DEFAULT_MAX_ENCODE_BYTES,
            transport: Transport::Grpc,
            legacy_grpc: false,
        }
    }

    pub(super) fn limits(&self) -> Limits {
        Limits {
            max_decode: self.max_decode_bytes,
            max_encode: self.max_encode_bytes,
        }
    }
}

/// TLS for a remote Triton. Perseus carries no system trust store, so the server's CA is always given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// PEM file with the CA certificate(s) that signed the server's certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate, for servers that require mutual TLS (needs `key_file`).
    pub cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<std::path::PathBuf>,
    /// Name to verify the server's certificate against, when it differs from the address's host.
    pub domain: Option<String>,
}

impl From<&TlsSpec> for TlsOptions {
    fn from(spec: &TlsSpec) -> Self {
        Self {
            ca_file: spec.ca_file.clone(),
            cert_file: spec.cert_file.clone(),
            key_file: spec.key_file.clone(),
            domain: spec.domain.clone(),
        }
    }
}

/// Builds the endpoint: validates the address, picks the scheme from the TLS settings, applies the
/// timeouts. Connection-level failures come later, from `connect`.
pub(super) fn endpoint(opts: &ConnectOptions) -> Result<Endpoint, TritonError> {
    let uri = endpoint_uri(&opts.address, opts.tls.is_some())?;
    let invalid = |err: tonic::transport::Error| TritonError::InvalidAddress {
        address: opts.address.clone(),
        reason: error_chain(&err),
    };
    let mut endpoint = Endpoint::from_shared(uri.to_string())
        .map_err(invalid)?
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true);
    if !opts.legacy_grpc {
        endpoint = endpoint
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
            .max_frame_size(MAX_FRAME_BYTES);
    }
    if uri.scheme_str() == Some("https") {
        let tls = opts.tls.clone().unwrap_or_default();
        endpoint = endpoint
            .tls_config(tls_config(&tls)?)
            .map_err(|err| TritonError::Tls(error_chain(&err)))?;
    }
    Ok(endpoint)
}

/// `HOST:PORT` becomes `http://HOST:PORT` (or `https://` with TLS); a URL keeps its scheme, which must
/// agree with the TLS settings. A port is required: Triton's gRPC port (8001) is not HTTP's default.
pub(crate) fn endpoint_uri(address: &str, tls: bool) -> Result<Uri, TritonError> {
    let invalid = |reason: &str| TritonError::InvalidAddress {
        address: address.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty; expected HOST:PORT"));
    }
    let text = if trimmed.contains("://") {
        trimmed.to_owned()
    } else if tls {
        format!("https://{trimmed}")
    } else {
        format!("http://{trimmed}")
    };
    let uri: Uri = text
        .parse()
        .map_err(|err: tonic::codegen::http::uri::InvalidUri| {
            invalid(&format!("{err}; expected HOST:PORT"))
        })?;
    match uri.scheme_str() {
        Some("http") if tls => {
            return Err(invalid("http:// address with TLS settings; use https://"));
        }
        Some("http" | "https") => {}
        _ => return Err(invalid("scheme must be http:// or https://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host; expected HOST:PORT"));
    }
    if uri.port_u16().is_none() {
        return Err(invalid(
            "no port; expected HOST:PORT (Triton's gRPC port is usually 8001)",
        ));
    }
    if uri
        .path_and_query()
        .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    {
        return Err(invalid("a gRPC address has no path; expected HOST:PORT"));
    }
    Ok(uri)
}

fn tls_config(tls: &TlsOptions) -> Result<ClientTlsConfig, TritonError> {
    let Some(ca_file) = &tls.ca_file else {
        return Err(TritonError::Tls(
            "a CA file is required (Perseus carries no system trust store)".to_owned(),
        ));
    };
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(TritonError::Tls(
                "a client certificate needs its key file too".to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(TritonError::Tls(
                "a client key needs its certificate file too".to_owned(),
            ));
        }
    };
    let mut config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_pem(ca_file)?));
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(read_pem(cert)?, read_pem(key)?));
    }
    if let Some(domain) = &tls.domain {
        config = config.domain_name(domain.clone());
    }
    Ok(config)
}

fn read_pem(path: &Path) -> Result<Vec<u8>, TritonError> {
    let pem = std::fs::read(path).map_err(|source| TritonError::TlsFile {
        path: path.to_owned(),
        source,
    })?;
    if !pem
        .windows(b"-----BEGIN ".len())
        .any(|w| w == b"-----BEGIN ")
    {
        return Err(TritonError::Tls(format!(
            "{} is not a PEM file",
            path.display()
        )));
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_gets_a_scheme_from_the_tls_settings() {
        assert_eq!(
            endpoint_uri("localhost:8001", false).unwrap().to_string(),
            "http://localhost:8001/"
        );
        assert_eq!(
            endpoint_uri("triton.example:443", true)
                .unwrap()
                .to_string(),
            "https://triton.example:443/"
        );
        assert_eq!(
            endpoint_uri("[::1]:8001", false).unwrap().host(),
            Some("[::1]")
        );
        assert_eq!(
            endpoint_uri(" http://127.0.0.1:9000 ", false)
                .unwrap()
                .port_u16(),
            Some(9000)
        );
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (address, tls, expected) in [
            ("", false, "empty"),
            ("localhost", false, "no port"),
            ("http://localhost", false, "no port"),
            ("grpc://localhost:8001", false, "scheme"),
            ("http://localhost:8001", true, "with TLS settings"),
            ("localhost:8001/v2", false, "no path"),
            ("local host:8001", false, "expected HOST:PORT"),
        ] {
            let err = endpoint_uri(address, tls).expect_err(address);
            assert!(
                matches!(err, TritonError::InvalidAddress { .. }),
                "{address}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains(expected), "{address}: {text}");
            assert!(text.contains(address.trim()), "{address}: {text}");
        }
    }

    #[test]
    fn tls_settings_are_checked_before_connecting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let not_pem = dir.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").unwrap();

        let with = |tls: TlsOptions| ConnectOptions {
            tls: Some(tls),
            ..ConnectOptions::new("triton.example:8001")
        };
        let err = endpoint(&with(TlsOptions::default())).unwrap_err();
        assert!(err.to_string().contains("CA file is required"), "{err}");

        let err = endpoint(&with(TlsOptions {
            ca_file: Some(missing.clone()),
            ..TlsOptions::default()
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TritonError::TlsFile { path, .. } if *path == missing),
            "{err}"
        );

        let err = endpoint(&with(TlsOptions {
            ca_file: Some(not_pem.clone()),
            ..TlsOptions::default()
        }))
        .unwrap_err();
        assert!(err.to_string().contains("not a PEM file"), "{err}");
        assert_eq!(err.code_name(), "INVALID_ARGUMENT");

        let err = endpoint(&with(TlsOptions {
            ca_file: Some(not_pem.clone()),
            cert_file: Some(not_pem),
            ..TlsOptions::default()
        }))
        .unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
    }
}
