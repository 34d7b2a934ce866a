//! Serving connections: HTTP/1.1 with limits on what one client can hold.
//!
//! opsbot's endpoints face the internet (Slack and Discord call them), so a client that opens
//! connections and sends nothing, or sends a request a byte at a time, must not be able to hold
//! the server's sockets and memory. [`HttpLimits`] bounds all three ways of doing it:
//!
//! - a request's head must arrive within `header_timeout` (hyper's header-read timer, which also
//!   closes a kept-alive connection that stays idle that long);
//! - its body must arrive whole within `body_timeout` of the head ([`Deadline`]): reading it
//!   then fails with [`BodyTooSlow`], which the endpoints answer 408;
//! - at most `max_connections` connections are served at once; further ones wait in the
//!   listen backlog until one closes;
//! - a connection is closed once [`MAX_CONNECTION_AGE`] old, and when the server stops, after
//!   its request in flight, which gets at most [`CLOSE_GRACE`] (a client that reads no answer
//!   holds neither a connection nor the server's stop for ever).
//!
//! HTTP/1.1 only: what Slack, Discord, Alertmanager, Prometheus and kubelet probes speak.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::HttpLimits;

/// A connection is closed (gracefully: after its request in flight) once this old; clients
/// open another. Bounds how long any one client holds a connection.
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);
/// How long a connection being closed (for its age, or because the server stops) may take to
/// finish its request in flight before it is cut.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// A running HTTP server.
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Binds `listen` (port 0 picks a free port) and serves `router` within `limits` until
    /// [`RunningServer::stop`].
    pub async fn start(
        listen: SocketAddr,
        router: Router,
        limits: HttpLimits,
    ) -> std::io::Result<RunningServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        // Routes are made into services once, here: a clone per connection is then a reference
        // count, not a rebuilt route table.
        let body_timeout = limits.body_timeout;
        let router = router
            .with_state(())
            .layer(tower::util::MapRequestLayer::new(move |req: Request| {
                req.map(|body| Body::new(Deadline::new(body, body_timeout)))
            }));
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let task = tokio::spawn(accept(listener, router, limits, slots, stop.clone()));
        tracing::info!(%addr, "listening");
        Ok(RunningServer { addr, stop, task })
    }

    /// Stops accepting connections, lets open requests finish, and returns.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop.cancel();
        self.task.await.map_err(std::io::Error::other)
    }
}

/// Accepts connections until `stop`, at most `slots` at a time, then waits for the open ones
/// to finish their requests (at most [`CLOSE_GRACE`]).
async fn accept(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
) {
    let connections = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let service = TowerToHyperService::new(
            router
                .clone()
                .map_request(|req: Request<_>| req.map(Body::new)),
        );
        let conn = http.serve_connection(TokioIo::new(stream), service);
        connections.spawn(serve(conn, stop.clone(), slot));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// Serves one connection until it ends, it is [`MAX_CONNECTION_AGE`] old, or the server
/// stops; then lets its request in flight finish, for at most [`CLOSE_GRACE`] (a client that
/// reads no answer must not hold the connection, or the server's stop, for ever).
async fn serve<S>(
    conn: hyper::server::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, S>,
    stop: CancellationToken,
    slot: tokio::sync::OwnedSemaphorePermit,
) where
    S: hyper::service::HttpService<hyper::body::Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as http_body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => Some(ended),
        () = tokio::time::sleep(MAX_CONNECTION_AGE) => None,
        () = stop.cancelled() => None,
    };
    let ended = match ended {
        Some(ended) => Some(ended),
        None => {
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(CLOSE_GRACE, conn).await.ok()
        }
    };
    match ended {
        Some(Err(e)) => tracing::debug!(error = %e, "HTTP connection ended with an error"),
        None => tracing::debug!("HTTP connection cut: its request did not finish in time"),
        Some(Ok(())) => {}
    }
    drop(slot);
}

/// A failed accept: a connection reset before it was taken is nothing; anything else (out of
/// file descriptors) is logged, and accepting pauses a second for descriptors to free up.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "could not accept a connection; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A request body did not arrive whole within the server's body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
pub struct BodyTooSlow(pub Duration);

impl BodyTooSlow {
    /// Whether `error`, or an error it was caused by, is a [`BodyTooSlow`].
    pub fn caused(error: &(dyn std::error::Error + 'static)) -> bool {
        std::iter::successors(Some(error), |e| e.source()).any(|e| e.is::<BodyTooSlow>())
    }
}

/// A body that fails with [`BodyTooSlow`] when it has not ended by its deadline, however
/// steadily its bytes trickle in (a timeout between frames would let one byte every few
/// seconds hold a connection for ever).
struct Deadline {
    body: Body,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Deadline {
    fn new(body: Body, timeout: Duration) -> Deadline {
        Deadline {
            body,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_body_trickling_past_its_deadline_fails_as_too_slow() {
        // A byte every 20 ms, for ever: every gap is short, the whole is not.
        let trickle = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
        });
        let body = Deadline::new(Body::from_stream(trickle), Duration::from_millis(200));
        let err = body.collect().await.expect_err("the deadline passes");
        assert!(BodyTooSlow::caused(&err), "{err}");
        assert_eq!(
            err.to_string(),
            "the request body did not arrive within 200ms"
        );
    }

    #[tokio::test]
    async fn a_body_that_ends_in_time_is_read_whole() {
        let chunks =
            futures::stream::iter(["a", "b", "c"].map(|s| Ok::<_, std::io::Error>(Bytes::from(s))));
        let body = Deadline::new(Body::from_stream(chunks), Duration::from_secs(10));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
    }
}
