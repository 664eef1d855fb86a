//! ModelInfer of a prepared request on an HTTP/2 connection of its own, driven through h2 itself.
//!
//! Through tonic's `Channel` one call passes four tasks: the caller's, the tower buffer's worker
//! (the channel is a queue in front of the connection), the connection's, and the one hyper spawns
//! per request to wait for the response head; each hand-over is a wake-up and, across threads, a
//! futex call. Here the caller opens the stream, sends the prepared bytes and reads the answer
//! itself, and the connection's task is the only other one involved. Plaintext targets only (TLS
//! stays on the channel); the connection is made on first use and again after it fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h2::client::SendRequest;
use tonic::codegen::http::{self, HeaderValue, Uri, header};
use tonic::{Code, Status};

use super::connect::{CONNECTION_WINDOW_BYTES, MAX_FRAME_BYTES, STREAM_WINDOW_BYTES};
use super::error::{Direction, Limits, TritonError, error_chain};

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";
/// gRPC's message prefix: a compression flag and a big-endian length.
const PREFIX: usize = 5;

/// One live connection: its sender, and whether its task still runs.
#[derive(Clone)]
struct Live {
    sender: SendRequest<Bytes>,
    open: Arc<AtomicBool>,
}

/// A lazily made HTTP/2 connection for ModelInfer, shared by a client's clones.
pub(super) struct Direct {
    address: String,
    uri: Uri,
    connect_timeout: Duration,
    limits: Limits,
    live: Mutex<Option<Live>>,
    /// Held while connecting, so that concurrent first calls make one connection, not many.
    connecting: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct").field("uri", &self.uri).finish()
    }
}

impl Direct {
    /// `uri` is the target's, `http://HOST:PORT/`, as [`super::connect::endpoint_uri`] made it.
    pub(super) fn new(
        address: &str,
        uri: &Uri,
        connect_timeout: Duration,
        limits: Limits,
    ) -> Direct {
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static(MODEL_INFER));
        Direct {
            address: address.to_owned(),
            uri: Uri::from_parts(parts).unwrap_or_else(|_| uri.clone()),
            connect_timeout,
            limits,
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Option<Live> {
        let live = self.live.lock().ok()?;
        live.as_ref()
            .filter(|l| l.open.load(Ordering::Acquire))
            .cloned()
    }

    async fn sender(&self) -> Result<Live, TritonError> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _one = self.connecting.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let live = self.connect().await?;
        if let Ok(mut slot) = self.live.lock() {
            *slot = Some(live.clone());
        }
        Ok(live)
    }

    async fn connect(&self) -> Result<Live, TritonError> {
        let authority = self.uri.authority().map_or("", |a| a.as_str()).to_owned();
        let failed = |message: String| TritonError::Connect {
            address: self.address.clone(),
            message,
        };
        let dial = async {
            let tcp = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .map_err(|e| failed(error_chain(&e)))?;
            let _ = tcp.set_nodelay(true);
            h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW_BYTES)
                .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
                .max_frame_size(MAX_FRAME_BYTES)
                .handshake::<_, Bytes>(tcp)
                .await
                .map_err(|e| failed(error_chain(&e)))
        };
        let (sender, connection) = match tokio::time::timeout(self.connect_timeout, dial).await {
            Ok(made) => made?,
            Err(_) => {
                return Err(TritonError::ConnectTimeout {
                    address: self.address.clone(),
                    after: self.connect_timeout,
                });
            }
        };
        // Where the load generator's clock is a thread, it queues requests on this connection from
        // outside the runtime: a doorbell spares each a second worker's wake-up (see
        // `crate::timing::doorbell`).
        let connection =
            crate::timing::doorbell::guarded(connection).map_err(|e| TritonError::Connect {
                address: self.address.clone(),
                message: error_chain(&e),
            })?;
        let open = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&open);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("ModelInfer connection ended: {e}");
            }
            flag.store(false, Ordering::Release);
        });
        Ok(Live { sender, open })
    }

    /// Sends `framed` (a message with its gRPC prefix) and returns the answer's message size.
    pub(super) async fn infer(
        &self,
        framed: Bytes,
        timeout: Duration,
    ) -> Result<usize, TritonError> {
        match tokio::time::timeout(timeout, self.exchange(framed, timeout)).await {
            Ok(done) => done,
            Err(_) => Err(TritonError::Timeout { after: timeout }),
        }
    }

    async fn exchange(&self, framed: Bytes, timeout: Duration) -> Result<usize, TritonError> {
        let live = self.sender().await?;
        let limits = self.limits;
        let fail = |e: h2::Error| {
            TritonError::from_status(Status::from_error(Box::new(e)), Some(timeout), limits)
        };
        let mut sender = live.sender.ready().await.map_err(fail)?;
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        if let Ok(value) = HeaderValue::from_str(&grpc_timeout(timeout)) {
            headers.insert("grpc-timeout", value);
        }
        let (response, mut body) = sender.send_request(request, false).map_err(fail)?;
        body.send_data(framed, true).map_err(fail)?;
        let response = response.await.map_err(fail)?;
        let (head, mut answer) = response.into_parts();
        let status_of = |map: &http::HeaderMap| Status::from_header_map(map);
        if let Some(status) = status_of(&head.headers) {
            // A trailers-only answer: the status came with the head.
            return match status.code() {
                Code::Ok => Ok(0),
                _ => Err(TritonError::from_status(status, Some(timeout), limits)),
            };
        }
        if head.status != http::StatusCode::OK {
            return Err(TritonError::Status {
                code: Code::Unknown,
                message: format!("HTTP status {} without a gRPC status", head.status),
            });
        }
        let mut received = 0usize;
        let mut prefix = Vec::with_capacity(PREFIX);
        while let Some(chunk) = answer.data().await {
            let chunk = chunk.map_err(fail)?;
            let _ = answer.flow_control().release_capacity(chunk.len());
            received += chunk.len();
            if prefix.len() < PREFIX {
                let take = (PREFIX - prefix.len()).min(chunk.len());
                prefix.extend_from_slice(&chunk[..take]);
                if prefix.len() == PREFIX {
                    let len = (&prefix[1..]).get_u32() as usize;
                    if len > limits.max_decode {
                        return Err(TritonError::MessageTooLarge {
                            direction: Direction::Response,
                            limit: limits.max_decode,
                            message: format!(
                                "Error, decoded message length too large: found {len} bytes, \
                                 the limit is: {} bytes",
                                limits.max_decode
                            ),
                        });
                    }
                }
            }
        }
        let trailers = answer.trailers().await.map_err(fail)?;
        match trailers.as_ref().and_then(status_of) {
            Some(status) if status.code() == Code::Ok => Ok(received.saturating_sub(PREFIX)),
            Some(status) => Err(TritonError::from_status(status, Some(timeout), limits)),
            None => Err(TritonError::Protocol {
                call: "ModelInfer",
                reason: "the answer ended without a grpc-status".into(),
            }),
        }
    }
}

/// gRPC's `grpc-timeout`: at most eight digits and a unit, the finest unit that fits.
fn grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let ns = timeout.as_nanos();
    for (per, unit) in units {
        let n = ns.div_ceil(per);
        if n <= MAX {
            return format!("{n}{unit}");
        }
    }
    format!("{MAX}H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_take_the_finest_unit_that_fits_eight_digits() {
        assert_eq!(grpc_timeout(Duration::from_millis(100)), "100000u");
        assert_eq!(grpc_timeout(Duration::from_micros(5)), "5000n");
        assert_eq!(grpc_timeout(Duration::from_secs(30)), "30000000u");
        assert_eq!(grpc_timeout(Duration::from_secs(300)), "300000m");
        assert_eq!(
            grpc_timeout(Duration::from_secs(1 << 40)),
            format!("{}H", 99_999_999)
        );
    }
}
