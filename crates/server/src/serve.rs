//! The listener loop: accepts connections and serves HTTP/1.1 on each. A gateway's connection
//! starts on its own path for dedicated applications' plain customer-API requests
//! ([`crate::direct`]); from the first other request on (at once, for most connections), hyper
//! serves it, handing each request either to the hyper form of that path
//! ([`crate::gateway::forward_directly`]) or to the router.
//!
//! A connection that sends no complete request head for
//! [`HttpSettings::header_read_timeout`](crate::HttpSettings::header_read_timeout) (idle, or
//! sending one byte at a time) is closed. Graceful shutdown: when `shutdown` resolves, no
//! connection is accepted any more, each open one finishes the request it is serving and
//! closes, and [`serve`] returns once all have.
//!
//! This module must not look at what a request asks for beyond choosing between those paths.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::AppState;

/// Serves `router` (built by [`crate::router`] over `state`, possibly with more layers) on
/// `listener` until `shutdown` resolves and the open connections have finished.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let header_read_timeout = state.http.header_read_timeout;
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // That one client went away before it was accepted.
                Err(e) if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses go out as soon as they are written (no Nagle delay behind a client's ACK).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        #[cfg(feature = "direct-path")]
        let direct_state = (state.http.only_app.is_none()).then(|| state.clone());
        let state = state.clone();
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let request = request.map(Body::new);
            let state = state.clone();
            let router = router.clone();
            async move {
                #[cfg(feature = "direct-path")]
                let request = match crate::gateway::forward_directly(&state, request, peer).await {
                    Ok(response) => return Ok::<_, Infallible>(response),
                    Err(request) => request,
                };
                #[cfg(not(feature = "direct-path"))]
                let _ = &state;
                let mut request = request;
                request.extensions_mut().insert(ConnectInfo(peer));
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response)
            }
        });
        let mut stopped = stopped.clone();
        connections.spawn(async move {
            // A gateway serves dedicated applications' plain requests itself while they come;
            // hyper takes the connection from the first other request on.
            #[cfg(feature = "direct-path")]
            let io = {
                let mut tcp = tcp;
                let read = match direct_state {
                    Some(state) => {
                        match crate::direct::serve(&state, &mut tcp, peer, &mut stopped).await {
                            crate::direct::Left::Closed => return,
                            crate::direct::Left::Handoff(read) => read,
                        }
                    }
                    None => bytes::Bytes::new(),
                };
                crate::direct::Rewind::new(tcp, read)
            };
            #[cfg(not(feature = "direct-path"))]
            let io = tcp;
            let connection = hyper::server::conn::http1::Builder::new()
                // A client that does not finish sending a request head (or that keeps a
                // connection idle) this long is cut off: slow-header attacks cannot hold
                // connections open forever.
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                // Above the server's own limits (`request_id::MAX_HEADER_*`), so a head over
                // those is answered with the contract's body; only one over these hard
                // cut-offs (or a URI over hyper's 64 KiB) gets hyper's bodiless 431/414.
                .max_headers(2 * crate::request_id::MAX_HEADER_FIELDS)
                .max_buf_size(1024 * 1024)
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { stopped.wait_for(|stop| *stop).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
}
