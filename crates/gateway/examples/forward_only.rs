//! The gateway's HTTP path with none of its checks: hyper's HTTP/1.1 server (with the header
//! read timeout the server sets) handing every request to [`Proxy::forward`], on one thread.
//! `scripts/bench-gateway.sh` runs it beside the real gateway, so that each run shows what
//! hyper and the forwarding client cost on that host before any key check, rate limit,
//! metering or signed assertion.
//!
//! `cargo run --release -p authsome-gateway --example forward_only -- LISTEN UPSTREAM_URL`

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use authsome_gateway::proxy::{Outgoing, Proxy, ProxySettings};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        return Err("usage: forward_only LISTEN_ADDRESS UPSTREAM_URL".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        // The one upstream given is the one destination allowed (loopback included).
        let host = upstream
            .parse::<http::Uri>()?
            .host()
            .unwrap_or_default()
            .to_owned();
        let proxy = Proxy::new(ProxySettings {
            policy: authsome_domain::egress::EgressPolicy::parse(&host)?,
            ..ProxySettings::default()
        });
        let upstreams: Arc<[String]> = Arc::from([upstream]);
        loop {
            let (tcp, _) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            let (proxy, upstreams) = (proxy.clone(), upstreams.clone());
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let (proxy, upstreams) = (proxy.clone(), upstreams.clone());
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body.collect().await.map(|b| b.to_bytes());
                    let response = match body {
                        Ok(body) => proxy
                            .forward::<Full<Bytes>>(&upstreams, parts, Outgoing::Buffered(body))
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    Ok::<_, Infallible>(match response {
                        Ok(response) => response.map(|b| b.boxed()),
                        Err(e) => {
                            let mut bad = hyper::Response::new(
                                Full::new(Bytes::from(e)).map_err(|n| match n {}).boxed(),
                            );
                            *bad.status_mut() = http::StatusCode::BAD_GATEWAY;
                            bad
                        }
                    })
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(75))
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    })
}
