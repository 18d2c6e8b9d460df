//! The HTTP server, and a shutdown that drops no request a client managed to send.
//!
//! When `signal` fires, `/health/readiness` fails at once (it reads the same token) and every response
//! carries `Connection: close`, so keep-alive clients open a new connection for their next request: through a
//! Service, that lands on another replica once the endpoint is gone. Meanwhile this server keeps accepting for
//! `delay`, the time load balancers take to stop routing here. Then it takes every connection the kernel has
//! already queued (closing the listener would reset them), closes the listener, and lets each connection
//! finish its request within `drain_deadline`: hyper's graceful shutdown closes idle keep-alive connections
//! and answers busy ones, and fresh ones' first request, with `Connection: close`.
//!
//! Not `axum::serve`: its graceful shutdown drops the listen backlog and cancels connections whose first
//! request is not read yet (hyper-util's auto builder aborts its protocol sniffing), so clients that had
//! connected a moment before see a reset. HTTP/1 only, as before (axum is built without `http2`).
//!
//! No client holds a connection for free ([`ConnectionLimits`]): a request head must arrive within the header
//! timeout of the connection opening or of its previous response (so an idle keep-alive connection is closed
//! after that long too), a connection on which no byte moves either way for the idle timeout is closed (a
//! stalled upload, a client that stops reading its response), and at most `max_connections` are open: beyond
//! that new connections wait in the listen backlog until one closes.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// When and how the server stops.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Fires on SIGTERM: readiness fails and keep-alive ends from then on.
    pub signal: CancellationToken,
    /// How long to keep accepting after `signal`.
    pub delay: Duration,
    /// How long in-flight requests may take once the listener is closed; then their connections are cut.
    pub drain_deadline: Duration,
}

/// What one client may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// How long a request head may take to arrive, counted from the connection opening or from the
    /// previous response: it also closes idle keep-alive connections.
    pub header_timeout: Duration,
    /// A connection on which no byte is read or written for this long is closed (keep it above the write
    /// timeout, the longest a handler waits without sending).
    pub idle_timeout: Duration,
    /// Open connections at most; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` has run its course. Each request carries the peer's
/// `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info` would give it.
pub async fn serve(listener: TcpListener, router: Router, shutdown: Shutdown, limits: ConnectionLimits) {
    let Shutdown { signal, delay, drain_deadline } = shutdown;
    let drain = CancellationToken::new();
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let spawn = |connections: &mut JoinSet<()>,
                 stream: TcpStream,
                 peer: SocketAddr,
                 slot: Option<OwnedSemaphorePermit>| {
        let conn = connection(stream, peer, router.clone(), signal.clone(), drain.clone(), limits);
        connections.spawn(async move {
            conn.await;
            drop(slot);
        });
    };
    // A free slot first, then the next connection: at the cap, clients wait in the backlog.
    let accept = || async {
        let slot = slots.clone().acquire_owned().await.ok();
        (slot, listener.accept().await)
    };

    let stop_accepting = async {
        signal.cancelled().await;
        tracing::info!(
            ?delay,
            "shutting down: /health/readiness fails from now on; still serving until load balancers stop \
             routing here, then draining"
        );
        tokio::time::sleep(delay).await;
    };
    tokio::pin!(stop_accepting);
    loop {
        tokio::select! {
            _ = &mut stop_accepting => break,
            (slot, accepted) = accept() => match accepted {
                Ok((stream, peer)) => spawn(&mut connections, stream, peer, slot),
                Err(error) => accept_error(error).await,
            },
            // Reap finished connections so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }

    // Connections whose handshake the kernel completed are waiting in the backlog; their clients may have
    // sent a request already. Take them all before closing, or closing the listener resets them.
    let mut backlog = 0usize;
    match listener.into_std() {
        Ok(listener) => loop {
            match listener.accept().and_then(|(stream, peer)| {
                stream.set_nonblocking(true)?;
                Ok((TcpStream::from_std(stream)?, peer))
            }) {
                Ok((stream, peer)) => {
                    backlog += 1;
                    // Answered with `Connection: close` whatever the cap: refusing them would reset them.
                    spawn(&mut connections, stream, peer, None);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not take the last queued connections");
                    break;
                }
            }
        },
        Err(error) => tracing::warn!(%error, "could not take the last queued connections"),
    }

    tracing::info!(
        open = connections.len(),
        from_backlog = backlog,
        "stopped accepting; draining in-flight requests"
    );
    drain.cancel();
    let drained =
        tokio::time::timeout(drain_deadline, async { while connections.join_next().await.is_some() {} })
            .await;
    if drained.is_err() {
        tracing::warn!(
            left = connections.len(),
            "in-flight requests did not finish within {drain_deadline:?}; closing them"
        );
        connections.abort_all();
    } else {
        tracing::info!("drained");
    }
}

/// One HTTP/1 connection, until the client closes it or the drain asks it to finish.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    signal: CancellationToken,
    drain: CancellationToken,
    limits: ConnectionLimits,
) {
    let stream = Tracked::new(stream);
    let activity = stream.activity.clone();
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let signal = signal.clone();
        let response = router.clone().oneshot(request);
        async move {
            let mut response = response.await?;
            if signal.is_cancelled() {
                // The client's next request then opens a new connection, which the Service routes to a
                // replica that is not going away.
                response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let idle = activity.stalled(limits.idle_timeout);
    tokio::pin!(idle);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = &mut idle => {
            tracing::debug!(%peer, "closing a connection on which nothing moved for the idle timeout");
            return;
        }
        _ = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn => result,
                _ = idle => return,
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %peer, "connection ended with an error");
    }
}

/// When a connection last moved a byte, in milliseconds since it opened.
struct Activity {
    opened: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms.store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn stalled(self: Arc<Self>, idle: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// A stream that records when a byte last moved.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    fn new(inner: TcpStream) -> Tracked {
        Tracked { inner, activity: Arc::new(Activity { opened: Instant::now(), last_ms: AtomicU64::new(0) }) }
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Errors of one incoming connection (it went away before we took it); the listener is fine.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Out of file descriptors and the like: wait a little instead of spinning, as `axum::serve` does.
async fn accept_error(error: io::Error) {
    if is_connection_error(&error) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::mpsc;

    use super::*;

    const REQUEST: &[u8] = b"GET /ok HTTP/1.1\r\nhost: test\r\n\r\n";

    fn app(started: mpsc::UnboundedSender<()>) -> Router {
        Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/body",
                axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/slow",
                get(move || {
                    let _ = started.send(());
                    async {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        "slow"
                    }
                }),
            )
    }

    async fn bind() -> (TcpListener, SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        (listener, addr, CancellationToken::new())
    }

    /// Reads one response whose body ends with `end`, leaving the connection open.
    async fn read_response(stream: &mut TcpStream, end: &str) -> String {
        let mut text = String::new();
        let mut buf = [0u8; 1024];
        while !text.ends_with(end) {
            let read = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await;
            let n = read.expect("a response within 20 s").expect("read");
            assert!(n > 0, "closed before the response ended: {text:?}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        text
    }

    /// Reads until the server closes the connection (bounded, so a server that keeps it open fails the test).
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut text = String::new();
        tokio::time::timeout(Duration::from_secs(20), stream.read_to_string(&mut text))
            .await
            .expect("the server closes the connection")
            .expect("a response, not a reset");
        text
    }

    #[tokio::test]
    async fn connections_queued_when_the_listener_closes_are_answered_not_reset() {
        let (listener, addr, signal) = bind().await;
        // The kernel completes these handshakes and buffers the requests; nothing has accepted them yet.
        let mut clients = Vec::new();
        for _ in 0..8 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(REQUEST).await.expect("send");
            clients.push(stream);
        }
        signal.cancel();
        let shutdown = Shutdown { signal, delay: Duration::ZERO, drain_deadline: Duration::from_secs(30) };
        let (tx, _rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, app(tx), shutdown, ConnectionLimits::default()));
        for mut stream in clients {
            let text = read_to_close(&mut stream).await;
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            assert!(text.contains("connection: close"), "{text}");
        }
        tokio::time::timeout(Duration::from_secs(20), server).await.expect("drained").expect("server task");
        assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed");
    }

    #[tokio::test]
    async fn during_the_delay_responses_end_keep_alive_and_new_connections_are_served() {
        let (listener, addr, signal) = bind().await;
        let shutdown = Shutdown {
            signal: signal.clone(),
            delay: Duration::from_secs(60),
            drain_deadline: Duration::from_secs(30),
        };
        let (tx, _rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, app(tx), shutdown, ConnectionLimits::default()));
        let mut before = TcpStream::connect(addr).await.expect("connect");
        before.write_all(REQUEST).await.expect("send");
        let text = read_response(&mut before, "ok").await;
        assert!(!text.contains("connection: close"), "keep-alive before the signal: {text}");

        signal.cancel();
        // The kept-alive connection answers its next request, then closes; so does a new one.
        before.write_all(REQUEST).await.expect("send again");
        let text = read_to_close(&mut before).await;
        assert!(text.starts_with("HTTP/1.1 200") && text.contains("connection: close"), "{text}");
        let mut fresh = TcpStream::connect(addr).await.expect("still accepting during the delay");
        fresh.write_all(REQUEST).await.expect("send");
        let text = read_to_close(&mut fresh).await;
        assert!(text.starts_with("HTTP/1.1 200") && text.contains("connection: close"), "{text}");
        server.abort();
    }

    #[tokio::test]
    async fn the_drain_finishes_busy_connections_and_closes_idle_ones_at_once() {
        let (listener, addr, signal) = bind().await;
        let shutdown = Shutdown {
            signal: signal.clone(),
            delay: Duration::ZERO,
            drain_deadline: Duration::from_secs(60),
        };
        let (tx, mut started) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, app(tx), shutdown, ConnectionLimits::default()));
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        idle.write_all(REQUEST).await.expect("send");
        read_response(&mut idle, "ok").await;
        let mut busy = TcpStream::connect(addr).await.expect("connect");
        busy.write_all(b"GET /slow HTTP/1.1\r\nhost: test\r\n\r\n").await.expect("send");
        started.recv().await.expect("the slow handler runs");

        signal.cancel();
        let text = read_to_close(&mut busy).await;
        assert!(text.starts_with("HTTP/1.1 200") && text.ends_with("slow"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
        assert_eq!(read_to_close(&mut idle).await, "", "the idle connection is closed, with nothing sent");
        // Well before the 60 s deadline: nothing waits for the idle connection.
        tokio::time::timeout(Duration::from_secs(20), server).await.expect("drained").expect("server task");
    }

    fn limits(header: u64, idle: u64, max: usize) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: Duration::from_secs(header),
            idle_timeout: Duration::from_secs(idle),
            max_connections: max,
        }
    }

    fn never() -> Shutdown {
        Shutdown {
            signal: CancellationToken::new(),
            delay: Duration::ZERO,
            drain_deadline: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn a_request_head_that_never_completes_is_cut_and_so_is_an_idle_keep_alive_connection() {
        let (listener, addr, _) = bind().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, app(tx), never(), limits(1, 600, 16)));
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        slow.write_all(b"GET /ok HTTP/1.1\r\nhost: te").await.expect("send part of a head");
        read_to_close(&mut slow).await;
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        idle.write_all(REQUEST).await.expect("send");
        read_response(&mut idle, "ok").await;
        read_to_close(&mut idle).await;
        server.abort();
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_after_the_idle_timeout() {
        let (listener, addr, _) = bind().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, app(tx), never(), limits(600, 1, 16)));
        let mut stalled = TcpStream::connect(addr).await.expect("connect");
        let head = b"POST /body HTTP/1.1\r\nhost: test\r\ncontent-length: 100\r\n\r\nabc";
        stalled.write_all(head).await.expect("send a head and 3 of 100 body bytes");
        let text = read_to_close(&mut stalled).await;
        assert!(!text.starts_with("HTTP/1.1 200"), "{text}");
        server.abort();
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_until_one_closes() {
        let (listener, addr, _) = bind().await;
        let (tx, _rx) = mpsc::unbounded_channel();
        let server = tokio::spawn(serve(listener, app(tx), never(), limits(600, 600, 2)));
        let mut first = TcpStream::connect(addr).await.expect("connect");
        first.write_all(REQUEST).await.expect("send");
        read_response(&mut first, "ok").await;
        let mut second = TcpStream::connect(addr).await.expect("connect");
        second.write_all(REQUEST).await.expect("send");
        read_response(&mut second, "ok").await;
        // The kernel completes the handshake; the server does not take the connection while both slots
        // are held.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        third.write_all(REQUEST).await.expect("send");
        let mut buf = [0u8; 64];
        let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
        assert!(waited.is_err(), "a third connection was served beyond the cap of 2");
        drop(first);
        read_response(&mut third, "ok").await;
        server.abort();
    }
}
