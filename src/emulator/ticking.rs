//! Served connections that lend their reads and writes to the emulator's clock.
//!
//! Under a saturating load the clock waits its turn for a core, so most completions are
//! delivered by whoever passes by the sim (see `realtime`). Request handlers pass only as a request
//! starts and ends; the connection tasks that read requests and write responses run far more often.
//! So every read and write on a served gRPC or HTTP connection first delivers whatever has come
//! due. With nothing due that is a clock read and an atomic load, and under a saturating closed
//! loop it keeps completions close to their modelled times when the clock cannot run.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::emulator::guard::{self, Framing, HeadDeadline};
use crate::emulator::realtime::Ticker;

/// A connection whose I/O ticks the clock.
pub(crate) struct Ticking<T> {
    io: T,
    ticker: Ticker,
}

impl<T> Ticking<T> {
    pub(crate) fn new(io: T, ticker: Ticker) -> Ticking<T> {
        Ticking { io, ticker }
    }
}

/// A served TCP connection: ticking, with a deadline for its request heads.
pub(crate) type Served = Ticking<HeadDeadline<TcpStream>>;

/// Accepted gRPC connections, ticking (see [`guard::accept_http2`] for the rest).
pub(crate) fn incoming(
    listener: TcpListener,
    ticker: Ticker,
    head_timeout: Duration,
) -> impl Stream<Item = io::Result<Served>> {
    guard::accept_http2(listener, head_timeout)
        .map(move |accepted| accepted.map(|io| Ticking::new(io, ticker.clone())))
}

/// A listener for `axum::serve` (HTTP/1) whose connections tick and must send each request's head
/// within `head_timeout`.
pub(crate) struct TickingListener {
    listener: TcpListener,
    ticker: Ticker,
    head_timeout: Duration,
}

impl TickingListener {
    pub(crate) fn new(
        listener: TcpListener,
        ticker: Ticker,
        head_timeout: Duration,
    ) -> TickingListener {
        TickingListener {
            listener,
            ticker,
            head_timeout,
        }
    }
}

impl axum::serve::Listener for TickingListener {
    type Io = Served;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop: it retries and backs off on errors such as running out of fds.
        let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        let guarded = HeadDeadline::new(io, Framing::Http1, self.head_timeout);
        (Ticking::new(guarded, self.ticker.clone()), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

impl Connected for Served {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.get_ref().connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Ticking<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.ticker.catch_up();
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Ticking<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.ticker.catch_up();
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.ticker.catch_up();
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot::error::TryRecvError;

    use super::*;
    use crate::catalog::Catalog;
    use crate::emulator::realtime::RealTime;
    use crate::emulator::sim::ModelSetup;

    /// A clock with no driver thread and one tiny model with a request in flight that the modelled
    /// GPU has already finished: nobody has delivered it yet.
    fn finished_but_undelivered() -> (
        RealTime,
        tokio::sync::oneshot::Receiver<crate::emulator::sim::Completion>,
    ) {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let clock = RealTime::without_driver(crate::emulator::sim::gpu_setup(
            catalog.gpu("t4").expect("t4"),
        ))
        .expect("clock starts");
        let id = clock
            .load(ModelSetup {
                name: "tiny".into(),
                alpha_ms: 0.01,
                beta_ms: 0.001,
                max_batch: 1,
                instances: 1,
                dynamic_batching: None,
                memory_bytes: 0,
                input_bytes_per_image: 0,
                output_bytes_per_image: 0,
            })
            .expect("fits");
        let mut done = clock.submit(id, 1, 0).expect("submits");
        // Eleven microseconds of modelled work, ninety times over.
        std::thread::sleep(Duration::from_millis(1));
        assert!(matches!(done.try_recv(), Err(TryRecvError::Empty)));
        (clock, done)
    }

    #[tokio::test]
    async fn reading_a_served_connection_delivers_what_has_come_due() {
        let (clock, mut done) = finished_but_undelivered();
        let (mut client, server) = tokio::io::duplex(64);
        let mut served = Ticking::new(server, clock.ticker());
        client.write_all(b"request").await.expect("writes");
        let mut buf = [0u8; 16];
        let n = served.read(&mut buf).await.expect("reads");
        assert_eq!(&buf[..n], b"request", "the bytes pass through unchanged");
        let completion = done.try_recv().expect("the read delivered the completion");
        assert!(completion.ok);
    }

    #[tokio::test]
    async fn writing_a_served_connection_delivers_what_has_come_due() {
        let (clock, mut done) = finished_but_undelivered();
        let (mut client, server) = tokio::io::duplex(64);
        let mut served = Ticking::new(server, clock.ticker());
        served.write_all(b"response").await.expect("writes");
        let mut buf = [0u8; 16];
        let n = client.read(&mut buf).await.expect("reads");
        assert_eq!(&buf[..n], b"response");
        assert!(
            done.try_recv()
                .expect("the write delivered the completion")
                .ok
        );
    }
}
