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

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
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

/// Serves `router` on `listener` until `shutdown` has run its course. Each request carries the peer's
/// `ConnectInfo<SocketAddr>`, as `into_make_service_with_connect_info` would give it.
pub async fn serve(listener: TcpListener, router: Router, shutdown: Shutdown) {
    let Shutdown { signal, delay, drain_deadline } = shutdown;
    let drain = CancellationToken::new();
    let mut connections = JoinSet::new();
    let spawn = |connections: &mut JoinSet<()>, stream: TcpStream, peer: SocketAddr| {
        connections.spawn(connection(stream, peer, router.clone(), signal.clone(), drain.clone()));
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
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => spawn(&mut connections, stream, peer),
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
                    spawn(&mut connections, stream, peer);
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
) {
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
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = drain.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, %peer, "connection ended with an error");
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
        Router::new().route("/ok", get(|| async { "ok" })).route(
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
        let server = tokio::spawn(serve(listener, app(tx), shutdown));
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
        let server = tokio::spawn(serve(listener, app(tx), shutdown));
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
        let server = tokio::spawn(serve(listener, app(tx), shutdown));
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
}
