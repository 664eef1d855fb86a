//! Errors of the Triton client, keyed the way Triton and gRPC name them.
//!
//! The engine counts errors by name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, …) and decides "disconnected"
//! from [`TritonError::is_connection_error`], so every failure, whether the server said it or the
//! transport did, maps onto one of gRPC's status codes.

use std::path::PathBuf;
use std::time::Duration;

use tonic::Code;

use super::capabilities::Extension;

/// Which way a message that broke a size limit was travelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A request we were about to send.
    Request,
    /// A response the server sent.
    Response,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Request => "request",
            Self::Response => "response",
        })
    }
}

/// A failed call or connection to a Triton server.
#[derive(Debug, thiserror::Error)]
pub enum TritonError {
    /// The server (or the gRPC layer) answered with a status; `message` is Triton's own wording.
    #[error("{}: {message}", code_name(*code))]
    Status { code: Code, message: String },
    /// The server address is not a usable `HOST:PORT` or `http(s)://HOST:PORT`.
    #[error("invalid Triton address '{address}': {reason}")]
    InvalidAddress { address: String, reason: String },
    /// TLS settings are incomplete or a certificate file is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// A certificate or key file could not be read.
    #[error("TLS: cannot read {}: {source}", path.display())]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No connection could be established (refused, unreachable, TLS handshake failed, …).
    #[error("cannot connect to {address}: {message}")]
    Connect { address: String, message: String },
    /// The connection failed during a call (reset, TLS alert, protocol error): tonic reports these as
    /// `UNKNOWN: transport error`, gRPC's C++ client as `UNAVAILABLE`, which is what they count as.
    #[error("connection failed: {message}")]
    Transport { message: String },
    /// The server closed the HTTP/2 connection (GOAWAY, e.g. its rapid-reset guard after a stall)
    /// and the requests on it were never served. h2 reports a GOAWAY by its reason code,
    /// which tonic maps as if the server had refused one request (`ENHANCE_YOUR_CALM` becomes
    /// `RESOURCE_EXHAUSTED`), naming overload where the cause is a lost connection.
    #[error("connection closed by the server: {message}")]
    ConnectionClosed { message: String },
    /// Connecting took longer than the connect timeout.
    #[error("connecting to {address} timed out after {}", humantime::format_duration(*after))]
    ConnectTimeout { address: String, after: Duration },
    /// The call's deadline passed before the response arrived.
    #[error("deadline of {} exceeded", humantime::format_duration(*after))]
    Timeout { after: Duration },
    /// A message exceeded the configured size limit, so it was refused before being buffered.
    #[error("{direction} larger than the {limit} byte limit: {message}")]
    MessageTooLarge {
        direction: Direction,
        limit: usize,
        message: String,
    },
    /// The server does not offer this Triton extension (it answered `UNIMPLEMENTED`, or left the
    /// extension out of ServerMetadata's list): a plain KServe-v2 server, such as MLServer.
    #[error("the server does not implement Triton's {} extension ({call}){}", extension.name(), detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Unsupported {
        extension: Extension,
        call: &'static str,
        /// The server's own words, when it answered.
        detail: Option<String>,
    },
    /// The server answered, but without something Triton always sends.
    #[error("malformed response to {call}: {reason}")]
    Protocol { call: &'static str, reason: String },
}

impl TritonError {
    /// The gRPC status name this failure counts under, as Triton's clients report it.
    ///
    /// Local failures borrow the code a gRPC C++ client would give them: a refused or timed-out
    /// connection is `UNAVAILABLE`, an expired deadline `DEADLINE_EXCEEDED`, an oversized message
    /// `RESOURCE_EXHAUSTED`, bad settings `INVALID_ARGUMENT`.
    pub fn code_name(&self) -> &'static str {
        code_name(self.code())
    }

    /// The gRPC status code this failure corresponds to (see [`Self::code_name`]).
    pub fn code(&self) -> Code {
        match self {
            Self::Status { code, .. } => *code,
            Self::InvalidAddress { .. } | Self::Tls(_) | Self::TlsFile { .. } => {
                Code::InvalidArgument
            }
            Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Transport { .. }
            | Self::ConnectionClosed { .. } => Code::Unavailable,
            Self::Timeout { .. } => Code::DeadlineExceeded,
            Self::MessageTooLarge { .. } => Code::ResourceExhausted,
            Self::Protocol { .. } => Code::Internal,
            Self::Unsupported { .. } => Code::Unimplemented,
        }
    }

    /// Whether the server is unreachable rather than refusing this one request: the engine then shows
    /// "disconnected" and keeps retrying instead of counting a tenant error.
    pub fn is_connection_error(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::ConnectTimeout { .. })
            || self.code() == Code::Unavailable
    }

    /// The message Triton sent with a status, if this error came from the server.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Self::Status { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Classifies a status returned by a call, recognising the ones tonic raises locally.
    ///
    /// `timeout` is the deadline the call was sent with: tonic reports its own expiry as a
    /// `CANCELLED` status, which would otherwise be indistinguishable from a cancelled request.
    pub(crate) fn from_status(
        status: tonic::Status,
        timeout: Option<Duration>,
        limits: Limits,
    ) -> Self {
        let message = status.message();
        if let Some(after) = timeout
            && status.code() == Code::Cancelled
            && message == tonic::TimeoutExpired(()).to_string()
        {
            return Self::Timeout { after };
        }
        if status.code() == Code::OutOfRange {
            if message.starts_with("Error, decoded message length too large") {
                return Self::MessageTooLarge {
                    direction: Direction::Response,
                    limit: limits.max_decode,
                    message: message.to_owned(),
                };
            }
            if message.starts_with("Error, encoded message length too large") {
                return Self::MessageTooLarge {
                    direction: Direction::Request,
                    limit: limits.max_encode,
                    message: message.to_owned(),
                };
            }
        }
        // Statuses from the server never carry a source; one built by tonic from a local transport
        // failure does, and the reason is only in that source.
        if let Some(source) = std::error::Error::source(&status)
            && let Some(closed) = closed_by_server(source)
        {
            return Self::ConnectionClosed {
                message: format!("{closed}; its requests were not served"),
            };
        }
        if status.code() == Code::Unknown
            && let Some(source) = std::error::Error::source(&status)
        {
            let cause = error_chain(source);
            let message = if cause.starts_with(message) {
                cause
            } else {
                format!("{message}: {cause}")
            };
            return Self::Transport { message };
        }
        Self::Status {
            code: status.code(),
            message: message.to_owned(),
        }
    }
}

/// What a local failure's chain says when the server ended the HTTP/2 connection with a GOAWAY.
fn closed_by_server(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>()
            && h2.is_go_away()
            && h2.is_remote()
        {
            let reason = h2.reason().map(|r| format!(" ({r:?})")).unwrap_or_default();
            return Some(format!("GOAWAY{reason}"));
        }
        source = e.source();
    }
    None
}

/// The message size limits a client was built with, kept to report them in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub max_decode: usize,
    pub max_encode: usize,
}

/// gRPC's canonical upper-case name for a status code (`NOT_FOUND`, `UNAVAILABLE`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Renders an error with its whole source chain: tonic's transport errors say only "transport error"
/// at the top, and the useful part ("Connection refused") is several sources down.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_decode: 1024,
        max_encode: 2048,
    };

    #[test]
    fn every_code_has_grpcs_canonical_name() {
        // gRPC numbers its codes 0..=16; the names are the protocol's, in that order.
        let names = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        for (number, name) in (0..).zip(names) {
            assert_eq!(code_name(Code::from_i32(number)), name, "code {number}");
        }
    }

    #[test]
    fn server_status_keeps_code_and_tritons_message() {
        let message = "Request for unknown model: 'resnet5' is not found";
        let err = TritonError::from_status(tonic::Status::not_found(message), None, LIMITS);
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(err.code_name(), "NOT_FOUND");
        assert_eq!(err.server_message(), Some(message));
        assert_eq!(err.to_string(), format!("NOT_FOUND: {message}"));
        assert!(!err.is_connection_error());
    }

    #[test]
    fn unavailable_status_and_transport_failures_are_connection_errors() {
        let unavailable =
            TritonError::from_status(tonic::Status::unavailable("gone"), None, LIMITS);
        assert!(unavailable.is_connection_error());
        assert_eq!(unavailable.code_name(), "UNAVAILABLE");
        let refused = TritonError::Connect {
            address: "127.0.0.1:1".into(),
            message: "Connection refused".into(),
        };
        assert!(refused.is_connection_error());
        assert_eq!(refused.code_name(), "UNAVAILABLE");
        let slow = TritonError::ConnectTimeout {
            address: "10.0.0.1:8001".into(),
            after: Duration::from_secs(1),
        };
        assert!(slow.is_connection_error());
        for status in [
            tonic::Status::resource_exhausted("model does not fit"),
            tonic::Status::invalid_argument("bad shape"),
            tonic::Status::deadline_exceeded("late"),
        ] {
            assert!(!TritonError::from_status(status, None, LIMITS).is_connection_error());
        }
    }

    #[test]
    fn tonics_own_deadline_expiry_becomes_deadline_exceeded() {
        let status = tonic::Status::cancelled(tonic::TimeoutExpired(()).to_string());
        let after = Duration::from_millis(250);
        let err = TritonError::from_status(status, Some(after), LIMITS);
        assert!(matches!(err, TritonError::Timeout { after: a } if a == after));
        assert_eq!(err.code_name(), "DEADLINE_EXCEEDED");

        // Without a deadline on the call, a cancellation is just a cancellation.
        let status = tonic::Status::cancelled(tonic::TimeoutExpired(()).to_string());
        assert_eq!(
            TritonError::from_status(status, None, LIMITS).code_name(),
            "CANCELLED"
        );
    }

    #[test]
    fn oversized_messages_are_resource_exhausted_with_their_limit() {
        let status = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 5000 bytes, the limit is: 1024 bytes",
        );
        let err = TritonError::from_status(status, None, LIMITS);
        assert!(matches!(
            err,
            TritonError::MessageTooLarge {
                direction: Direction::Response,
                limit: 1024,
                ..
            }
        ));
        assert_eq!(err.code_name(), "RESOURCE_EXHAUSTED");

        let status = tonic::Status::out_of_range(
            "Error, encoded message length too large: found 5000 bytes, the limit is: 2048 bytes",
        );
        let err = TritonError::from_status(status, None, LIMITS);
        assert!(matches!(
            err,
            TritonError::MessageTooLarge {
                direction: Direction::Request,
                limit: 2048,
                ..
            }
        ));

        // A server's own OUT_OF_RANGE stays what the server said.
        let status = tonic::Status::out_of_range("sequence id out of range");
        assert_eq!(
            TritonError::from_status(status, None, LIMITS).code_name(),
            "OUT_OF_RANGE"
        );
    }

    #[test]
    fn a_local_transport_failure_is_a_connection_error_with_its_cause() {
        let cause =
            std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer sent a TLS alert");
        let status = tonic::Status::from_error(Box::new(cause));
        assert_eq!(status.code(), Code::Unknown);
        let err = TritonError::from_status(status, None, LIMITS);
        assert!(matches!(err, TritonError::Transport { .. }), "{err:?}");
        assert!(err.is_connection_error());
        assert_eq!(err.code_name(), "UNAVAILABLE");
        assert!(err.to_string().contains("peer sent a TLS alert"), "{err}");

        // The same code sent by a server is the server's answer, not a broken connection.
        let err = TritonError::from_status(tonic::Status::unknown("model crashed"), None, LIMITS);
        assert!(
            matches!(
                err,
                TritonError::Status {
                    code: Code::Unknown,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!err.is_connection_error());
    }

    /// The error a client's request gets when the server answers with GOAWAY, from a real h2
    /// exchange (the error's kind cannot be built otherwise).
    async fn goaway_error() -> h2::Error {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(server_io).await.unwrap();
            conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
            while let Some(accepted) = conn.accept().await {
                if accepted.is_err() {
                    break;
                }
            }
        });
        let (mut send, conn) = h2::client::handshake(client_io).await.unwrap();
        tokio::spawn(conn);
        let request =
            tonic::codegen::http::Request::post("/inference.GRPCInferenceService/ModelInfer")
                .body(())
                .unwrap();
        let err = match send.send_request(request, true) {
            Ok((response, _)) => response.await.unwrap_err(),
            Err(e) => e,
        };
        server.abort();
        err
    }

    #[tokio::test]
    async fn a_goaway_is_unavailable_and_says_the_server_closed_the_connection() {
        let h2_err = goaway_error().await;
        assert!(h2_err.is_go_away() && h2_err.is_remote(), "{h2_err:?}");
        let status = tonic::Status::from_error(Box::new(h2_err));
        // tonic by itself names the GOAWAY's reason code as if the server were overloaded.
        assert_eq!(status.code(), Code::ResourceExhausted);
        let err = TritonError::from_status(status, None, LIMITS);
        assert!(
            matches!(err, TritonError::ConnectionClosed { .. }),
            "{err:?}"
        );
        assert_eq!(err.code_name(), "UNAVAILABLE");
        assert!(err.is_connection_error());
        let text = err.to_string();
        assert!(text.contains("connection closed by the server"), "{text}");
        assert!(text.contains("GOAWAY (ENHANCE_YOUR_CALM)"), "{text}");

        // The server's own RESOURCE_EXHAUSTED (a model that does not fit) keeps its code.
        let fits = tonic::Status::resource_exhausted("model does not fit: 900 MiB needed");
        assert_eq!(
            TritonError::from_status(fits, None, LIMITS).code_name(),
            "RESOURCE_EXHAUSTED"
        );
    }

    #[test]
    fn error_chain_includes_the_root_cause_once() {
        let root = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused");
        let wrapped = TritonError::TlsFile {
            path: "ca.pem".into(),
            source: root,
        };
        let text = error_chain(&wrapped);
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
    }
}
