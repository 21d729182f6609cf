//! The plain-HTTP server (Knative, local runs): HTTP/1.1 and h2c on one
//! port, with the limits a public port needs.
//!
//! - A connection must send a request's headers within `header_timeout`,
//!   also while it idles between requests (hyper starts that timer when a
//!   connection goes idle), so slow or silent connections are closed.
//! - A response that the client stops reading for `write_timeout` closes
//!   its connection.
//! - At most `max_connections` connections: past that, new ones get a 503
//!   with `Retry-After` and are closed.
//! - On SIGTERM or SIGINT the listener closes, idle connections close,
//!   requests in flight finish, and after `shutdown_grace` whatever is left
//!   is dropped: shutdown ends within the grace period whatever the clients do.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use lambda_http::tower::ServiceExt as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::StartError;

/// Where and how the server listens.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `MR_BIND` (default 127.0.0.1 without authentication, else 0.0.0.0).
    pub bind: IpAddr,
    /// `PORT`.
    pub port: u16,
    /// `MR_MAX_CONNECTIONS`.
    pub max_connections: usize,
    /// `MR_HEADER_TIMEOUT_SECS`: to send a request's headers, and to idle between requests.
    pub header_timeout: Duration,
    /// How long a response may wait for the client to read it.
    pub write_timeout: Duration,
    /// `MR_SHUTDOWN_GRACE_SECS`.
    pub shutdown_grace: Duration,
}

/// The body of the answer to a connection over the cap.
const TOO_MANY: &str =
    "{\"code\":\"Service Unavailable\",\"message\":\"too many connections; retry shortly\"}";

/// Serve `app` until SIGTERM/SIGINT, then shut down within the grace period.
pub async fn serve(app: Router, settings: &ServerSettings) -> Result<(), StartError> {
    let listen = |cause| StartError::Listen {
        addr: format!("{}:{}", settings.bind, settings.port),
        cause,
    };
    let listener = TcpListener::bind((settings.bind, settings.port))
        .await
        .map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    tracing::info!(%addr, "model registry listening on http://{addr}");
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.header_timeout)
        .keep_alive_timeout(settings.header_timeout);
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: pause, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, builder, watcher) = (app.clone(), builder.clone(), graceful.watcher());
        let (header_timeout, write_timeout) = (settings.header_timeout, settings.write_timeout);
        tokio::spawn(async move {
            // Telling HTTP/1 from HTTP/2 waits for the first bytes, with no
            // timeout of hyper's: a connection that never sends any is
            // closed here.
            let mut first = [0u8; 1];
            if !matches!(
                tokio::time::timeout(header_timeout, stream.peek(&mut first)).await,
                Ok(Ok(1..))
            ) {
                drop(slot);
                return;
            }
            let io = TokioIo::new(StalledWrites::new(stream, write_timeout));
            let service = TowerToHyperService::new(
                app.map_request(|req: axum::http::Request<Incoming>| req.map(Body::new)),
            );
            let conn = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(open, "shutting down: finishing requests in flight");
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = settings.shutdown_grace.as_secs(),
            "grace period over: closing the connections left"
        );
    }
    Ok(())
}

/// Tell a connection over the cap to come back later, and close it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{TOO_MANY}",
            TOO_MANY.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// SIGTERM (Knative, Kubernetes) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

/// A socket whose writes fail once they have been blocked for `limit`: a
/// client that stops reading its response cannot hold the connection.
struct StalledWrites<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StalledWrites<T> {
    fn new(inner: T, limit: Duration) -> Self {
        StalledWrites {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Pending again: fail if it has been pending for too long.
    fn check<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StalledWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StalledWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
