//! `tenancy: dedicated`: the gateway checks a request (key, standing, limits, metering) and
//! forwards it to one of the application's instances. Against real upstreams: instances of the
//! real server in instance mode (`only_app`), and a scripted upstream for what the server
//! itself would never do (hang, stream on cue, report what reached it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use authsome_domain::keys::signing;
use authsome_gateway::forward::ForwardKey;
use authsome_gateway::proxy::ProxySettings;
use authsome_server::HttpSettings;
use serde_json::{json, Value};

use crate::helpers::{assert_error, reserve_port, spawn_instance, spawn_with, TestApp};

/// A gateway whose health checks and timeouts are quick enough for a test.
pub(crate) async fn gateway() -> TestApp {
    spawn_with(HttpSettings {
        proxy: ProxySettings {
            connect_timeout: Duration::from_millis(500),
            response_timeout: Duration::from_millis(700),
            health_interval: Duration::from_millis(100),
            unhealthy_after: 2,
            // The instances of these tests listen on loopback, which must be listed.
            policy: authsome_domain::egress::EgressPolicy::parse("127.0.0.0/8").unwrap(),
        },
        ..HttpSettings::default()
    })
    .await
}

/// A dedicated application and its keys.
pub(crate) struct Dedicated {
    pub app: String,
    pub pk: String,
    pub sk: String,
    pub sk_id: String,
    /// The workspace owner's session token.
    pub owner: String,
}

/// A tenant whose keys may send many requests a second, and a dedicated development
/// application forwarded to `upstreams`.
pub(crate) async fn dedicated_app(gw: &TestApp, upstreams: &[String]) -> Dedicated {
    let tenant = gw.tenant("Dedicated Co").await;
    let root = gw.root_token().await;
    let r = gw
        .patch(
            &format!("/control/v1/admin/workspaces/{}", tenant.ws),
            &root,
            json!({"plan": "enterprise", "limits": {"requestsPerSecondPerKey": 100000}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The tenant asks for a dedicated application; a platform operator points it at its
    // instances.
    let r = gw
        .post(
            &format!("/control/v1/workspaces/{}/applications", tenant.ws),
            &tenant.owner_token,
            json!({"name": "Dedicated", "environment": "development", "tenancy": "dedicated"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["tenancy"], "dedicated");
    let app = r.body["id"].as_str().unwrap().to_owned();
    let r = gw
        .patch(
            &format!("/control/v1/admin/applications/{app}"),
            &root,
            json!({"upstreams": upstreams}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (_, pk) = gw.key(&tenant.owner_token, &app, "publishable").await;
    let (sk_id, sk) = gw.key(&tenant.owner_token, &app, "secret").await;
    Dedicated {
        app,
        pk,
        sk,
        sk_id,
        owner: tenant.owner_token,
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_dedicated_application_is_served_by_its_instances_through_the_gateway() {
    let gw = gateway().await;
    let ports = [reserve_port(), reserve_port()];
    let upstreams: Vec<String> = ports
        .iter()
        .map(|p| format!("http://{}", p.local_addr().unwrap()))
        .collect();
    let Dedicated {
        app, pk, sk, sk_id, ..
    } = dedicated_app(&gw, &upstreams).await;
    let [first, second] = ports;
    let mut one = spawn_instance(&gw, &app, first);
    let two = spawn_instance(&gw, &app, second);

    // The whole flow, through the gateway.
    let signup = gw
        .client
        .post(format!("{}/v1/{app}/auth/signup", gw.base))
        .header("X-Publishable-Key", &pk)
        // Spoofed addresses and gateway headers are dropped at the gateway.
        .header("X-Forwarded-For", "6.6.6.6")
        .header("X-Real-IP", "6.6.6.6")
        .header("X-AuthSome-Forwarded", "v1 forged")
        .json(&json!({"email": "ada@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    let request_id = signup.headers()["x-authsome-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let signup = TestApp::read(signup).await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    assert_eq!(signup.headers["x-authsome-app-id"], app.as_str());
    assert!(signup.headers.contains_key("x-ratelimit-limit"));
    let user = signup.body["user"]["id"].as_str().unwrap().to_owned();
    let token = signup.body["session"]["token"].as_str().unwrap().to_owned();
    let refresh = signup.body["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(request_id.starts_with("req_"));

    let me = gw.get(&format!("/v1/{app}/me"), &token).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["id"], user.as_str());
    let r = gw
        .call(
            reqwest::Method::POST,
            &format!("/v1/{app}/auth/refresh"),
            Some(&pk),
            Some(json!({"refreshToken": refresh})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The instance saw the client's address, as the gateway vouched for it, not the spoof.
    let sessions = gw
        .get(&format!("/v1/{app}/users/{user}/sessions"), &sk)
        .await;
    assert_eq!(sessions.status, 200, "{}", sessions.body);
    assert_eq!(
        sessions.body["data"][0]["ip"], "127.0.0.1",
        "{}",
        sessions.body
    );
    let jwks = gw
        .client
        .get(format!("{}/v1/{app}/.well-known/jwks.json", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200);
    // Issuer is the deployment's public URL, whichever process signed.
    let discovery = gw
        .client
        .get(format!(
            "{}/v1/{app}/.well-known/openid-configuration",
            gw.base
        ))
        .send()
        .await
        .unwrap();
    let discovery: Value = discovery.json().await.unwrap();
    assert_eq!(discovery["issuer"], format!("{}/v1/{app}", gw.base));

    // Keys are checked at the gateway: a bad one never reaches an instance.
    let before = one.hits() + two.hits();
    let r = gw
        .get(&format!("/v1/{app}/users"), "sk_test_notarealkeyatall")
        .await;
    assert_error(&r, 401, "unauthorized");
    let r = gw.get(&format!("/v1/{app}/users"), &pk).await;
    assert_error(&r, 403, "forbidden");
    assert_eq!(
        one.hits() + two.hits(),
        before + 1,
        "only the scope check is the instance's"
    );

    // A request signed with the secret key (CONTRACT.md) is verified, and its signature
    // spent, at the gateway; the instance takes the gateway's word for the key.
    let path = format!("/v1/{app}/users");
    let body = json!({"email": "signed@example.com"}).to_string();
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = signing::sign(
        &sk,
        "POST",
        &path,
        &ts,
        &signing::body_digest(body.as_bytes()),
    );
    let send_signed = |sent: &str| {
        gw.client
            .post(format!("{}{path}", gw.base))
            .header("X-Api-Key-Id", &sk_id)
            .header("X-Timestamp", &ts)
            .header("X-Signature", &signature)
            .header("Content-Type", "application/json")
            .body(sent.to_owned())
            .send()
    };
    let created = TestApp::read(send_signed(&body).await.unwrap()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["email"], "signed@example.com");
    let replayed = TestApp::read(send_signed(&body).await.unwrap()).await;
    assert_error(&replayed, 401, "unauthorized");
    let tampered = TestApp::read(
        send_signed(&json!({"email": "evil@example.com"}).to_string())
            .await
            .unwrap(),
    )
    .await;
    assert_error(&tampered, 401, "unauthorized");

    // Idempotency-Key through the gateway: recorded once, replayed once.
    let idempotent = || {
        gw.client
            .post(format!("{}/v1/{app}/users", gw.base))
            .bearer_auth(&sk)
            .header("Idempotency-Key", "create-grace")
            .json(&json!({"email": "grace@example.com"}))
            .send()
    };
    let first = TestApp::read(idempotent().await.unwrap()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = TestApp::read(idempotent().await.unwrap()).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");

    // Round robin: both instances serve.
    for _ in 0..10 {
        assert_eq!(gw.get(&format!("/v1/{app}/users"), &sk).await.status, 200);
    }
    assert!(
        one.hits() >= 3 && two.hits() >= 3,
        "{} / {}",
        one.hits(),
        two.hits()
    );

    // An instance believes only the gateway: straight to it, a forged assertion is refused,
    // other applications and the control plane do not exist there, and a request without an
    // assertion goes through the whole entry point (its own key check).
    let client = reqwest::Client::new();
    let forged = client
        .get(format!("{}/v1/{app}/users", two.base))
        .bearer_auth(&sk)
        .header(
            "X-AuthSome-Forwarded",
            format!("v1 t=1 app={app} rid=req_x ip=1.2.3.4 key=- sig=00"),
        )
        .send()
        .await
        .unwrap();
    let forged = TestApp::read(forged).await;
    assert_error(&forged, 401, "unauthorized");
    let direct = client
        .get(format!("{}/v1/{app}/users", two.base))
        .bearer_auth(&sk)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
    let direct = client
        .get(format!("{}/v1/{app}/users", two.base))
        .bearer_auth("sk_test_notarealkeyatall")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);
    let other = gw
        .application(&gw.root_token().await, &gw.root_ws, "development")
        .await;
    for path in [format!("/v1/{other}"), "/control/v1/workspaces".to_owned()] {
        let r = client
            .get(format!("{}{path}", two.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(
        client
            .get(format!("{}/health", two.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Forwarded requests and the instances' health show in the metrics.
    let text = gw
        .client
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(r#"route="forwarded",status="200""#), "{text}");
    assert!(
        text.contains("authsome_upstreams{state=\"healthy\"} 2"),
        "{text}"
    );

    // One instance dies: every request still succeeds (the first one retried on the other).
    one.stop();
    for i in 0..6 {
        let r = gw.get(&format!("/v1/{app}/users"), &sk).await;
        assert_eq!(r.status, 200, "GET {i}: {}", r.body);
        let r = gw
            .call(
                reqwest::Method::POST,
                &format!("/v1/{app}/auth/signin"),
                Some(&pk),
                Some(json!({"email": "ada@example.com", "password": "correct horse battery"})),
            )
            .await;
        assert_eq!(r.status, 200, "POST {i}: {}", r.body);
    }
    // Both gone: 503 with the error body.
    let mut two = two;
    two.stop();
    let r = gw.get(&format!("/v1/{app}/users"), &sk).await;
    assert_error(&r, 503, "service_unavailable");
    eventually("both instances are out of rotation", async || {
        gw.state.proxy.health().iter().all(|(_, healthy)| !healthy)
    })
    .await;
    let r = gw.get(&format!("/v1/{app}/users"), &sk).await;
    assert_error(&r, 503, "service_unavailable");
    assert_eq!(r.headers["retry-after"], "1");

    // One comes back on its address: the health check returns it to rotation.
    let again = std::net::TcpListener::bind(upstreams[0].trim_start_matches("http://")).unwrap();
    again.set_nonblocking(true).unwrap();
    let _one = spawn_instance(&gw, &app, again);
    eventually("the instance is back in rotation", async || {
        gw.get(&format!("/v1/{app}/users"), &sk).await.status == 200
    })
    .await;
}

/// What the scripted upstream saw of the last request to `/echo`.
#[derive(Default)]
struct Seen {
    headers: Vec<(String, String)>,
    path: String,
    method: String,
}

struct Scripted {
    base: String,
    seen: Arc<std::sync::Mutex<Seen>>,
    healthy: Arc<AtomicBool>,
    /// Lets `/stream` send its second chunk.
    release: Arc<tokio::sync::Notify>,
    /// Told when `/upload` has received its first chunk.
    first_chunk: Arc<tokio::sync::Notify>,
}

async fn scripted_upstream() -> Scripted {
    use axum::body::{Body, Bytes};
    use axum::extract::Request;
    use axum::routing::{any, get, post};
    use futures_util::StreamExt;

    let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
    let healthy = Arc::new(AtomicBool::new(true));
    let release = Arc::new(tokio::sync::Notify::new());
    let first_chunk = Arc::new(tokio::sync::Notify::new());
    let router = axum::Router::new()
        .route(
            "/health",
            get({
                let healthy = healthy.clone();
                move || {
                    let healthy = healthy.clone();
                    async move {
                        if healthy.load(Ordering::SeqCst) {
                            axum::http::StatusCode::OK
                        } else {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE
                        }
                    }
                }
            }),
        )
        .route(
            "/v1/{app}/echo",
            any({
                let seen = seen.clone();
                move |request: Request| {
                    let seen = seen.clone();
                    async move {
                        let mut s = seen.lock().unwrap();
                        s.headers = request
                            .headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect();
                        s.path = request.uri().to_string();
                        s.method = request.method().to_string();
                        axum::Json(json!({"ok": true}))
                    }
                }
            }),
        )
        .route(
            "/v1/{app}/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/v1/{app}/stream",
            get({
                let release = release.clone();
                move || {
                    let release = release.clone();
                    async move {
                        let chunks = futures_util::stream::once(async {
                            Ok::<_, std::io::Error>(Bytes::from("first;"))
                        })
                        .chain(futures_util::stream::once(async move {
                            release.notified().await;
                            Ok(Bytes::from("second"))
                        }));
                        Body::from_stream(chunks)
                    }
                }
            }),
        )
        .route(
            "/v1/{app}/upload",
            post({
                let first_chunk = first_chunk.clone();
                move |request: Request| {
                    let first_chunk = first_chunk.clone();
                    async move {
                        let mut body = request.into_body().into_data_stream();
                        let mut total = 0;
                        let mut chunks = 0;
                        while let Some(chunk) = body.next().await {
                            total += chunk.unwrap().len();
                            chunks += 1;
                            if chunks == 1 {
                                first_chunk.notify_one();
                            }
                        }
                        axum::Json(json!({"bytes": total}))
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Scripted {
        base,
        seen,
        healthy,
        release,
        first_chunk,
    }
}

#[tokio::test]
async fn the_proxy_cleans_headers_streams_both_ways_and_enforces_timeouts() {
    let gw = gateway().await;
    let up = scripted_upstream().await;
    let Dedicated { app, pk, sk, .. } = dedicated_app(&gw, std::slice::from_ref(&up.base)).await;

    // Header hygiene, and the gateway's assertion.
    let r = gw
        .client
        .request(
            reqwest::Method::PUT,
            format!("{}/v1/{app}/echo?x=1", gw.base),
        )
        .bearer_auth(&sk)
        .header("Connection", "keep-alive, X-Hop-Secret")
        .header("X-Hop-Secret", "must not cross")
        .header("X-Forwarded-For", "6.6.6.6")
        .header("Forwarded", "for=6.6.6.6")
        .header("X-AuthSome-App-ID", "app_spoofed")
        .header("X-Custom", "kept")
        .json(&json!({"a": 1}))
        .send()
        .await
        .unwrap();
    let request_id = r.headers()["x-authsome-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = TestApp::read(r).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["x-authsome-app-id"], app.as_str());
    assert!(r.headers.contains_key("x-ratelimit-remaining"));
    let seen = std::mem::take(&mut *up.seen.lock().unwrap());
    let header = |name: &str| {
        let all: Vec<&str> = seen
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        all
    };
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.path, format!("/v1/{app}/echo?x=1"));
    assert!(header("x-hop-secret").is_empty());
    assert!(header("forwarded").is_empty());
    assert_eq!(header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header("x-authsome-app-id"), [app.as_str()]);
    assert_eq!(header("x-authsome-request-id"), [request_id.as_str()]);
    assert_eq!(header("x-custom"), ["kept"]);
    assert_eq!(header("authorization"), [format!("Bearer {sk}").as_str()]);
    assert_eq!(header("host"), [up.base.trim_start_matches("http://")]);
    let assertion = header("x-authsome-forwarded");
    assert_eq!(assertion.len(), 1);
    let key = ForwardKey::new(
        gw.state
            .identity
            .master_key()
            .derive(b"authsome.gateway.forward.v1"),
    );
    let now = chrono::Utc::now().timestamp() as u64;
    let vouched = key
        .verify(assertion[0], "PUT", &format!("/v1/{app}/echo?x=1"), now)
        .expect("the assertion verifies under the deployment's key");
    assert_eq!(vouched.app_id, app);
    assert_eq!(vouched.request_id, request_id);
    assert_eq!(vouched.client_ip, "127.0.0.1");
    assert_eq!(
        vouched.key_hash,
        Some(
            authsome_domain::keys::parse_key(&sk)
                .unwrap()
                .hash()
                .to_hex()
        )
    );

    // The response streams: the first chunk arrives while the upstream still holds the second.
    let mut response = gw
        .client
        .get(format!("{}/v1/{app}/stream", gw.base))
        .header("X-Publishable-Key", &pk)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .expect("the first chunk arrives before the upstream finishes")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    up.release.notify_one();
    let rest = response.text().await.unwrap();
    assert_eq!(rest, "second");

    // The request body streams too: the upstream reads the first chunk before the client has
    // sent the second.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let upload = tokio::spawn({
        let request = gw
            .client
            .post(format!("{}/v1/{app}/upload", gw.base))
            .bearer_auth(&sk)
            .body(body);
        async move { request.send().await.unwrap() }
    });
    tx.send(Ok(vec![b'a'; 1000])).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), up.first_chunk.notified())
        .await
        .expect("the first chunk reaches the upstream while the client still sends");
    tx.send(Ok(vec![b'b'; 3000])).await.unwrap();
    drop(tx);
    let uploaded: Value = upload.await.unwrap().json().await.unwrap();
    assert_eq!(uploaded["bytes"], 4000);

    // Too slow: 504 after the timeout, not after the upstream's five seconds.
    let started = std::time::Instant::now();
    let r = gw.get(&format!("/v1/{app}/slow"), &sk).await;
    assert_error(&r, 504, "gateway_timeout");
    assert!(started.elapsed() < Duration::from_secs(4));

    // The upstream reports itself unhealthy: out of rotation, 503; healthy again: back.
    eventually("the upstream is back after the timeout", async || {
        gw.get(&format!("/v1/{app}/echo"), &sk).await.status == 200
    })
    .await;
    up.healthy.store(false, Ordering::SeqCst);
    eventually("an unhealthy upstream leaves rotation", async || {
        gw.get(&format!("/v1/{app}/echo"), &sk).await.status == 503
    })
    .await;
    assert_error(
        &gw.get(&format!("/v1/{app}/echo"), &sk).await,
        503,
        "service_unavailable",
    );
    up.healthy.store(true, Ordering::SeqCst);
    eventually("a healthy upstream comes back", async || {
        gw.get(&format!("/v1/{app}/echo"), &sk).await.status == 200
    })
    .await;
}

#[tokio::test]
async fn an_upstream_that_is_a_gateway_is_a_loop_not_a_hang() {
    let gw = gateway().await;
    // The application's upstream is the gateway itself.
    let Dedicated { app, sk, .. } = dedicated_app(&gw, std::slice::from_ref(&gw.base)).await;
    let r = gw.get(&format!("/v1/{app}/users"), &sk).await;
    // The refusal comes from the second pass through the gateway, with that pass's request id.
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "bad_gateway");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("loop"));
}

fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// One response read off a raw connection: status, lowercase header names, body (by
/// `Content-Length` or chunked; none for `HEAD`).
pub(crate) struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A client connection speaking HTTP/1.1 by hand, so a test controls what shares a connection.
pub(crate) struct RawClient {
    tcp: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub async fn connect(gw: &TestApp) -> Self {
        let address = gw.base.trim_start_matches("http://");
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        Self {
            tcp,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &str) {
        use tokio::io::AsyncWriteExt;
        self.tcp.write_all(bytes.as_bytes()).await.unwrap();
    }

    /// Reads more; false at the end of the connection.
    async fn fill(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), self.tcp.read(&mut chunk))
            .await
            .expect("the gateway answers within 5 s")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    pub async fn response(&mut self, head_request: bool) -> Raw {
        let (len, status, headers) = loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(len) = r.parse(&self.buf).unwrap() {
                let headers = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect::<Vec<_>>();
                break (len, r.code.unwrap(), headers);
            }
            assert!(self.fill().await, "the connection ended before a response");
        };
        self.buf.drain(..len);
        let mut raw = Raw {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request {
            return raw;
        }
        if let Some(n) = raw.header("content-length") {
            let n: usize = n.parse().unwrap();
            while self.buf.len() < n {
                assert!(self.fill().await);
            }
            raw.body = self.buf.drain(..n).collect();
        } else {
            assert_eq!(raw.header("transfer-encoding"), Some("chunked"));
            loop {
                let end = loop {
                    if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break end;
                    }
                    assert!(self.fill().await);
                };
                let line = String::from_utf8(self.buf.drain(..end + 2).collect()).unwrap();
                let size = usize::from_str_radix(line.trim(), 16).unwrap();
                while self.buf.len() < size + 2 {
                    assert!(self.fill().await);
                }
                raw.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        }
        raw
    }

    /// Whether the gateway closes the connection (nothing more to read).
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

#[tokio::test]
async fn the_gateways_own_path_serves_keep_alive_and_pipelined_requests_and_hands_the_rest_to_hyper(
) {
    let gw = gateway().await;
    let up = scripted_upstream().await;
    let Dedicated { app, pk, sk, .. } = dedicated_app(&gw, std::slice::from_ref(&up.base)).await;
    let keyed = |method: &str, path: &str, extra: &str| {
        format!("{method} /v1/{app}/{path} HTTP/1.1\r\nHost: gw.example\r\nAuthorization: Bearer {sk}\r\n{extra}\r\n")
    };
    let mut c = RawClient::connect(&gw).await;

    // A keyed request: forwarded, with the gateway's headers on the way and back.
    c.send(&keyed(
        "GET",
        "echo?x=1",
        "X-Forwarded-For: 6.6.6.6\r\nX-Custom: kept\r\n",
    ))
    .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("x-authsome-app-id"), Some(app.as_str()));
    assert!(r.header("x-ratelimit-remaining").is_some());
    let request_id = r.header("x-authsome-request-id").unwrap().to_owned();
    assert!(request_id.starts_with("req_"));
    let seen = std::mem::take(&mut *up.seen.lock().unwrap());
    let header = |name: &str| {
        seen.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(seen.path, format!("/v1/{app}/echo?x=1"));
    assert_eq!(header("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header("x-forwarded-host"), ["gw.example"]);
    assert_eq!(header("x-authsome-request-id"), [request_id.as_str()]);
    assert_eq!(header("x-custom"), ["kept"]);
    assert_eq!(header("x-authsome-forwarded").len(), 1);

    // A body given by its length reaches the instance; HEAD has no body; a chunked answer
    // streams back chunked.
    c.send(&keyed("POST", "upload", "Content-Length: 5\r\n"))
        .await;
    c.send("hello").await;
    let r = c.response(false).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&r.body).unwrap()["bytes"],
        5
    );
    c.send(&keyed("HEAD", "echo", "")).await;
    let r = c.response(true).await;
    assert_eq!(r.status, 200);
    up.release.notify_one();
    c.send(&keyed("GET", "stream", "")).await;
    let r = c.response(false).await;
    assert_eq!(r.body, b"first;second");

    // Refusals are the contract's error body, with the request's id, and keep the connection.
    c.send(&format!(
        "GET /v1/{app}/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk_test_notakeyatall\r\n\r\n"
    ))
    .await;
    let r = c.response(false).await;
    assert_eq!(r.status, 401);
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        body["error"]["requestId"].as_str(),
        r.header("x-authsome-request-id")
    );
    assert!(r.header("date").is_some());

    // Pipelined: a publishable-key request, a control-plane one (the connection goes to
    // hyper with the bytes already read) and a keyed one again, in one write, answered in turn.
    c.send(&format!(
        "GET /v1/{app}/echo HTTP/1.1\r\nHost: gw\r\nX-Publishable-Key: {pk}\r\n\r\n\
         GET /health HTTP/1.1\r\nHost: gw\r\n\r\n{}",
        keyed("GET", "echo?after=hyper", "")
    ))
    .await;
    let first = c.response(false).await;
    assert_eq!(first.status, 200);
    assert!(first.header("x-ratelimit-remaining").is_some());
    let health = c.response(false).await;
    assert_eq!(health.status, 200);
    assert!(health.header("x-authsome-app-id").is_none());
    let after = c.response(false).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.header("x-authsome-app-id"), Some(app.as_str()));
    assert_eq!(
        up.seen.lock().unwrap().path,
        format!("/v1/{app}/echo?after=hyper")
    );

    // `Connection: close` is honoured.
    let mut c = RawClient::connect(&gw).await;
    c.send(&keyed("GET", "echo", "Connection: close\r\n")).await;
    assert_eq!(c.response(false).await.status, 200);
    assert!(c.closed().await);

    // The instance being down is the gateway's 503 on this path too.
    up.healthy.store(false, Ordering::SeqCst);
    eventually("an unhealthy upstream leaves rotation", async || {
        let mut c = RawClient::connect(&gw).await;
        c.send(&keyed("GET", "echo", "")).await;
        c.response(false).await.status == 503
    })
    .await;
}

#[tokio::test]
async fn a_connection_that_sends_no_whole_head_in_time_is_closed() {
    let gw = spawn_with(HttpSettings {
        header_read_timeout: Duration::from_millis(300),
        ..HttpSettings::default()
    })
    .await;
    let mut c = RawClient::connect(&gw).await;
    c.send("GET /v1/app_01jd4v0z3c8x2m5q7w9e1r6t0y/users HTTP/1.1\r\nHost: a")
        .await;
    let started = std::time::Instant::now();
    assert!(c.closed().await);
    assert!(started.elapsed() < Duration::from_secs(3));
    // An idle one too.
    let mut c = RawClient::connect(&gw).await;
    assert!(c.closed().await);
}

#[tokio::test]
async fn a_connection_remembers_its_key_only_while_nothing_changed_and_never_for_another_key() {
    let gw = gateway().await;
    let up = scripted_upstream().await;
    let Dedicated {
        app,
        sk,
        sk_id,
        owner,
        ..
    } = dedicated_app(&gw, std::slice::from_ref(&up.base)).await;
    let (_, other_sk) = gw.key(&owner, &app, "secret").await;
    let keyed = |key: &str| {
        format!("GET /v1/{app}/echo HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n\r\n")
    };
    // The key the instance was told of, from the forwarding assertion.
    let forwarded_key = || {
        let seen = std::mem::take(&mut *up.seen.lock().unwrap());
        let assertion = seen
            .headers
            .iter()
            .find(|(k, _)| k == "x-authsome-forwarded")
            .map(|(_, v)| v.clone())
            .expect("an assertion");
        assertion
            .split(' ')
            .find_map(|f| f.strip_prefix("key="))
            .unwrap()
            .to_owned()
    };
    let hash = |key: &str| authsome_domain::keys::KeyHash::of(key).to_hex();
    let mut c = RawClient::connect(&gw).await;
    for _ in 0..2 {
        c.send(&keyed(&sk)).await;
        assert_eq!(c.response(false).await.status, 200);
        assert_eq!(forwarded_key(), hash(&sk));
    }
    // Another key on the same connection is its own: checked, and named to the instance.
    c.send(&keyed(&other_sk)).await;
    assert_eq!(c.response(false).await.status, 200);
    assert_eq!(forwarded_key(), hash(&other_sk));
    // A key one character off the remembered one is refused, and so is no key after it.
    c.send(&keyed(&sk)).await;
    assert_eq!(c.response(false).await.status, 200);
    let last = sk.chars().last().unwrap();
    let off = format!(
        "{}{}",
        &sk[..sk.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    c.send(&keyed(&off)).await;
    assert_eq!(c.response(false).await.status, 401);
    c.send(&keyed(&sk)).await;
    assert_eq!(c.response(false).await.status, 200);
    // Revoked: refused at once on the connection that just used it.
    let r = gw
        .delete(
            &format!("/control/v1/applications/{app}/keys/{sk_id}"),
            &owner,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    c.send(&keyed(&sk)).await;
    let r = c.response(false).await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    c.send(&keyed(&other_sk)).await;
    assert_eq!(c.response(false).await.status, 200);
}
