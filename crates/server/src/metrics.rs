//! Prometheus metrics (`GET /metrics`): requests by method, route and status, their latency,
//! forwarding failures, and, read when scraped, how many dedicated instances are in rotation
//! and whether this replica is draining.
//!
//! Labels are bounded: the route is the matched template (`/v1/{appId}/users`), never the raw
//! path; requests forwarded to a dedicated instance are `forwarded`, unmatched ones `unmatched`.
//! No label ever carries an id, a key or an address given by a client; a method outside
//! RFC 9110's is `OTHER`.

use std::sync::OnceLock;

use axum::http::Method;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;

pub const REQUESTS: &str = "authsome_http_requests_total";
pub const DURATION: &str = "authsome_http_request_duration_seconds";
pub const FORWARD_FAILURES: &str = "authsome_forward_failures_total";

/// The process's recorder: installed once, whatever number of servers the process runs (tests
/// run many). If another recorder was installed first, metrics render empty rather than fail.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(DURATION.to_owned()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => {
                metrics::describe_counter!(REQUESTS, "HTTP requests served, by method, route and status.");
                metrics::describe_histogram!(DURATION, "HTTP request latency in seconds, by method and route.");
                metrics::describe_counter!(FORWARD_FAILURES, "Requests a dedicated instance could not take, by reason.");
                handle
            }
            Err(e) => {
                tracing::warn!(error = %e, "a metrics recorder was already installed; /metrics stays empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// Records one served request.
pub fn request(method: &Method, route: &str, status: u16, seconds: f64) {
    let method = method_label(method);
    if route == FORWARDED_ROUTE {
        // The gateway's hot path: its handles are kept per thread, by method and status,
        // rather than looked up by their labels each time.
        FORWARDED.with(|handles| {
            let mut handles = handles.borrow_mut();
            let (counter, histogram) = handles
                .entry((method, status))
                .or_insert_with(|| handles_for(method, route, status));
            counter.increment(1);
            histogram.record(seconds);
        });
        return;
    }
    let (counter, histogram) = handles_for(method, route, status);
    counter.increment(1);
    histogram.record(seconds);
}

/// The route label of requests forwarded to a dedicated instance.
pub const FORWARDED_ROUTE: &str = "forwarded";

/// A thread's handles of forwarded requests, by method label and status.
type ForwardedHandles = authsome_domain::FastMap<(&'static str, u16), (Counter, Histogram)>;

thread_local! {
    static FORWARDED: std::cell::RefCell<ForwardedHandles> = std::cell::RefCell::new(authsome_domain::FastMap::default());
}

/// A client may send any method name: those outside RFC 9110's are counted as `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

fn handles_for(method: &str, route: &str, status: u16) -> (Counter, Histogram) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    (
        metrics::counter!(REQUESTS, &labels),
        metrics::histogram!(DURATION, &labels[..2]),
    )
}

/// The exposition text, with the gauges read now.
pub fn render(state: &AppState) -> String {
    let mut text = handle().render();
    // Counts only: an upstream's address is a tenant's (and the platform's network's) detail.
    let (healthy, unhealthy) = state.proxy.health_counts();
    text.push_str("# HELP authsome_upstreams Dedicated instances this gateway checks, by whether they are in rotation.\n");
    text.push_str("# TYPE authsome_upstreams gauge\n");
    text.push_str(&format!(
        "authsome_upstreams{{state=\"healthy\"}} {healthy}\nauthsome_upstreams{{state=\"unhealthy\"}} {unhealthy}\n"
    ));
    text.push_str("# HELP authsome_draining Whether this replica is draining for shutdown.\n");
    text.push_str("# TYPE authsome_draining gauge\n");
    text.push_str(&format!(
        "authsome_draining {}\n",
        u8::from(state.is_draining())
    ));
    text
}
