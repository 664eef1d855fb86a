//! Guards on the served connections against clients that hold resources without using them.
//!
//! A client that sends its request head a byte at a time keeps a connection, its buffers and a task
//! for as long as it likes; enough of them exhaust the file descriptors. So each connection must
//! deliver its request head within a deadline ([`HeadDeadline`]): for HTTP/1 every request's head
//! (as hyper's `header_read_timeout` would, which `axum::serve` does not expose), for gRPC the HTTP/2
//! preface and the client's first frame. And when accepting fails because descriptors ran out, the
//! gRPC accept loop waits before retrying ([`AcceptBackoff`]) instead of spinning on the error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;

/// How a connection's request heads are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Each request's head ends at an empty line; the deadline runs from the head's first byte (from
    /// the accept, for the first request), so idle keep-alive connections are left alone.
    Http1,
    /// The 24-byte client preface and one complete frame (the client's SETTINGS).
    Http2,
}

const HTTP2_PREFACE_LEN: usize = 24;
const HTTP2_FRAME_HEADER_LEN: usize = 9;

#[derive(Debug)]
enum Head {
    /// HTTP/1, inside a head: how many bytes of the closing `\r\n\r\n` the last bytes matched.
    Http1 { matched: u8 },
    /// HTTP/1, past a head and until the response: the body, which has no deadline here.
    Http1Body,
    /// HTTP/1, response written: the next head starts with the next byte read.
    Http1Between,
    /// HTTP/2: bytes of preface and first frame seen, the first frame's header, and how many bytes
    /// the preface and that frame take in all (known once its header is in).
    Http2 {
        seen: usize,
        header: [u8; HTTP2_FRAME_HEADER_LEN],
        need: Option<usize>,
    },
    /// HTTP/2 after the first frame: h2 bounds the rest.
    Done,
}

/// A connection that must deliver its request heads within `timeout`; past it, reads fail with
/// `TimedOut` and the server closes the connection.
pub(crate) struct HeadDeadline<T> {
    io: T,
    timeout: Duration,
    head: Head,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<T> HeadDeadline<T> {
    pub(crate) fn new(io: T, framing: Framing, timeout: Duration) -> HeadDeadline<T> {
        let head = match framing {
            Framing::Http1 => Head::Http1 { matched: 0 },
            Framing::Http2 => Head::Http2 {
                seen: 0,
                header: [0; HTTP2_FRAME_HEADER_LEN],
                need: None,
            },
        };
        HeadDeadline {
            io,
            timeout,
            head,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
        }
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.io
    }

    /// Follows the bytes read through the head, arming and disarming the deadline.
    fn observe(&mut self, bytes: &[u8]) {
        // The common case, once the heads are in: nothing to follow.
        if bytes.is_empty() || matches!(self.head, Head::Done | Head::Http1Body) {
            return;
        }
        if matches!(self.head, Head::Http1Between) {
            self.head = Head::Http1 { matched: 0 };
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
        match &mut self.head {
            Head::Http1 { matched } => {
                for &b in bytes {
                    *matched = match (*matched, b) {
                        (0 | 2, b'\r') => *matched + 1,
                        (1 | 3, b'\n') => *matched + 1,
                        (_, b'\r') => 1,
                        _ => 0,
                    };
                    if *matched == 4 {
                        self.head = Head::Http1Body;
                        self.deadline = None;
                        return;
                    }
                }
            }
            Head::Http2 { seen, header, need } => {
                for &b in bytes {
                    let at = *seen;
                    *seen += 1;
                    if let Some(i) = at.checked_sub(HTTP2_PREFACE_LEN)
                        && i < HTTP2_FRAME_HEADER_LEN
                    {
                        header[i] = b;
                        if i == HTTP2_FRAME_HEADER_LEN - 1 {
                            let len = (usize::from(header[0]) << 16)
                                | (usize::from(header[1]) << 8)
                                | usize::from(header[2]);
                            *need = Some(HTTP2_PREFACE_LEN + HTTP2_FRAME_HEADER_LEN + len);
                        }
                    }
                    if need.is_some_and(|n| *seen >= n) {
                        self.head = Head::Done;
                        self.deadline = None;
                        return;
                    }
                }
            }
            Head::Http1Body | Head::Http1Between | Head::Done => {}
        }
    }

    /// A response ends the HTTP/1 request it answers (an interim `100 Continue` does not).
    fn wrote(&mut self, bytes: &[u8]) {
        if matches!(self.head, Head::Http1Body)
            && !bytes.is_empty()
            && !bytes.starts_with(b"HTTP/1.1 1")
        {
            self.head = Head::Http1Between;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Polling the timer also registers the connection's task to be woken when it fires.
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the request head did not arrive within {:?}", this.timeout),
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.observe(&buf.filled()[before..]);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.wrote(&buf[..n]);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let (Poll::Ready(Ok(n)), Some(first)) = (&polled, bufs.iter().find(|b| !b.is_empty())) {
            let n = (*n).min(first.len());
            this.wrote(&first[..n]);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long to wait after a failed accept. Out of descriptors (EMFILE, ENFILE) or memory, `accept`
/// fails again at once until something closes, so retrying straight away spins a core: wait,
/// doubling up to a second, and start again from the shortest wait after a success. An error
/// about one pending connection (aborted or reset before it was accepted) says nothing about the
/// next, so the loop retries at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> AcceptBackoff {
        AcceptBackoff {
            next: ACCEPT_BACKOFF_MIN,
        }
    }
}

impl AcceptBackoff {
    /// The wait before the next accept; `None` to retry at once.
    pub(crate) fn after_error(&mut self, err: &io::Error) -> Option<Duration> {
        use io::ErrorKind as K;
        if matches!(
            err.kind(),
            K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
        ) {
            return None;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(ACCEPT_BACKOFF_MAX);
        Some(wait)
    }

    pub(crate) fn accepted(&mut self) {
        self.next = ACCEPT_BACKOFF_MIN;
    }
}

/// Accepted gRPC connections (Nagle off, as a request-response protocol wants), each under a
/// deadline for its preface. Errors never reach tonic: they are waited out here.
pub(crate) fn accept_http2(
    listener: TcpListener,
    timeout: Duration,
) -> impl Stream<Item = io::Result<HeadDeadline<TcpStream>>> {
    futures::stream::unfold(
        (listener, AcceptBackoff::default()),
        move |(listener, mut backoff)| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        backoff.accepted();
                        // Only latency depends on it; a socket that refuses still serves.
                        let _ = stream.set_nodelay(true);
                        let guarded = HeadDeadline::new(stream, Framing::Http2, timeout);
                        return Some((Ok(guarded), (listener, backoff)));
                    }
                    Err(e) => {
                        if let Some(wait) = backoff.after_error(&e) {
                            tracing::warn!(
                                "emulator gRPC accept failed ({e}); retrying in {wait:?}"
                            );
                            tokio::time::sleep(wait).await;
                        }
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn running_out_of_descriptors_backs_off_up_to_a_second() {
        let mut backoff = AcceptBackoff::default();
        let emfile = io::Error::from_raw_os_error(24);
        let waits: Vec<Duration> = (0..12)
            .map(|_| backoff.after_error(&emfile).unwrap())
            .collect();
        assert_eq!(waits[0], ACCEPT_BACKOFF_MIN);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), ACCEPT_BACKOFF_MAX);
        let enfile = io::Error::from_raw_os_error(23);
        assert_eq!(backoff.after_error(&enfile), Some(ACCEPT_BACKOFF_MAX));
        backoff.accepted();
        assert_eq!(backoff.after_error(&emfile), Some(ACCEPT_BACKOFF_MIN));
    }

    #[test]
    fn an_aborted_connection_is_retried_at_once() {
        let mut backoff = AcceptBackoff::default();
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(backoff.after_error(&aborted), None);
    }

    /// Drives `guarded` reads until it fails, recording whether the failure was the deadline.
    async fn read_until_error<T: AsyncRead + Unpin>(guarded: &mut HeadDeadline<T>) -> io::Error {
        let mut buf = [0u8; 64];
        loop {
            match guarded.read(&mut buf).await {
                Ok(0) => return io::Error::from(io::ErrorKind::UnexpectedEof),
                Ok(_) => continue,
                Err(e) => return e,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_that_never_ends_times_out() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = HeadDeadline::new(server, Framing::Http1, Duration::from_secs(10));
        client
            .write_all(b"GET /v2 HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let err = read_until_error(&mut guarded).await;
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn complete_heads_disarm_and_the_next_head_rearms() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = HeadDeadline::new(server, Framing::Http1, Duration::from_secs(10));
        // The head split across reads, with a lone CR in it, still ends where it ends.
        client
            .write_all(b"POST /x HTTP/1.1\r\nA: \r")
            .await
            .unwrap();
        let mut buf = [0u8; 22];
        guarded.read_exact(&mut buf).await.unwrap();
        client.write_all(b"b\r\n\r\nbody").await.unwrap();
        let mut buf = [0u8; 9];
        guarded.read_exact(&mut buf).await.unwrap();
        // The body and an idle keep-alive connection after the response have no deadline.
        tokio::time::sleep(Duration::from_secs(60)).await;
        guarded.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        client.write_all(b"more body").await.unwrap();
        assert!(guarded.read(&mut buf).await.is_ok());
        // That byte started a new head, which now has ten seconds.
        let err = read_until_error(&mut guarded).await;
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_preface_and_first_frame_disarm_the_deadline() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = HeadDeadline::new(server, Framing::Http2, Duration::from_secs(10));
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // A SETTINGS frame with one 6-byte setting.
        hello.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        client.write_all(&hello).await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(guarded.read(&mut buf).await.unwrap(), hello.len());
        tokio::time::sleep(Duration::from_secs(60)).await;
        client.write_all(b"x").await.unwrap();
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_http2_preface_times_out() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = HeadDeadline::new(server, Framing::Http2, Duration::from_secs(10));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0")
            .await
            .unwrap();
        let err = read_until_error(&mut guarded).await;
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
}
