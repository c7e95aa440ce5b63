//! Attacks a hostile tenant or an anonymous caller tried against the running server (issue 33),
//! each performed over HTTP as it was found. Those that involve storage run on every backend.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authsome_domain::egress::EgressPolicy;
use authsome_gateway::proxy::ProxySettings;
use authsome_server::HttpSettings;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dedicated::{dedicated_app, gateway, Dedicated, RawClient};
use crate::helpers::*;

/// A NUL byte in a query parameter is a bad request on every backend (Postgres text cannot
/// hold one, and used to answer 500).
async fn nul_bytes_in_query_parameters_are_refused(app: TestApp) {
    let t = app.tenant("Nul").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let (_, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    for path in [
        format!("/v1/{app_id}/users?query=%00"),
        format!("/v1/{app_id}/users?email=a%00b@example.com"),
    ] {
        assert_error(&app.get(&path, &sk).await, 400, "invalid_request");
    }
    for query in ["action=%00", "actor=acc_%00"] {
        let path = format!("/control/v1/workspaces/{}/audit?{query}", t.ws);
        assert_error(
            &app.get(&path, &t.owner_token).await,
            400,
            "invalid_request",
        );
    }
    // Ordinary values still work.
    let r = app.get(&format!("/v1/{app_id}/users?query=ada"), &sk).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A NUL character inside a JSON string is refused like any other bad value.
async fn nul_characters_in_json_bodies_are_refused(app: TestApp) {
    let t = app.tenant("Nul Body").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let (_, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    let (_, pk) = app.key(&t.owner_token, &app_id, "publishable").await;
    let cases = [
        (
            format!("/v1/{app_id}/auth/signup"),
            pk.clone(),
            json!({"email": "a\u{0}b@example.com", "password": "long enough pass"}),
        ),
        (
            format!("/v1/{app_id}/auth/signup"),
            pk.clone(),
            json!({"email": "nul@example.com", "password": "long enough\u{0} pass"}),
        ),
        (
            format!("/v1/{app_id}/auth/signin"),
            pk.clone(),
            json!({"email": "a\u{0}b@example.com", "password": "long enough pass"}),
        ),
        (
            format!("/v1/{app_id}/users"),
            sk.clone(),
            json!({"email": "m@example.com", "publicMetadata": {"k": "v\u{0}"}}),
        ),
        (
            format!("/v1/{app_id}/users"),
            sk.clone(),
            json!({"email": "m2@example.com", "name": "x\u{0}"}),
        ),
        (
            format!("/v1/{app_id}/organizations"),
            sk.clone(),
            json!({"name": "o\u{0}"}),
        ),
        (
            format!("/control/v1/workspaces/{}/members", t.ws),
            t.owner_token.clone(),
            json!({"email": "a\u{0}@example.com", "role": "viewer"}),
        ),
        (
            format!("/control/v1/workspaces/{}/applications", t.ws),
            t.owner_token.clone(),
            json!({"name": "n", "environment": "development", "config": {"k\u{0}": 1}}),
        ),
        (
            "/control/v1/auth/login".to_owned(),
            String::new(),
            json!({"email": "a\u{0}@example.com", "password": "x"}),
        ),
    ];
    for (path, key, body) in cases {
        let r = app.post(&path, &key, body.clone()).await;
        assert!(r.status < 500, "{path} {body}: {} {}", r.status, r.body);
    }
}

/// Every idempotency record as stored: (scope, body).
async fn idempotency_rows(app: &TestApp) -> Vec<(String, Option<String>)> {
    let sql = "SELECT scope, body FROM idempotency_records";
    if app.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    }
}

/// A POST with an `Idempotency-Key`.
async fn post_once(app: &TestApp, path: &str, bearer: &str, key: &str, body: Value) -> Response {
    let mut request = app
        .client
        .post(format!("{}{path}", app.base))
        .header("Idempotency-Key", key)
        .json(&body);
    if bearer.starts_with("pk_") {
        request = request.header("X-Publishable-Key", bearer);
    } else {
        request = request.bearer_auth(bearer);
    }
    TestApp::read(request.send().await.unwrap()).await
}

/// Finding 3: an idempotency record is written only after authentication, only for the
/// routes that create something, keyed by the authenticated principal, and sealed.
async fn idempotency_records_are_sealed_authenticated_and_only_for_creates(app: TestApp) {
    let t = app.tenant("Idem Attack").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let mk = app
        .post(
            &format!("/control/v1/workspaces/{}/keys", t.ws),
            &t.owner_token,
            json!({"name": "automation"}),
        )
        .await;
    assert_eq!(mk.status, 201, "{}", mk.body);
    let (mk_id, mk) = (
        mk.body["id"].as_str().unwrap().to_owned(),
        mk.body["secret"].as_str().unwrap().to_owned(),
    );
    let keys = format!("/control/v1/applications/{app_id}/keys");
    let first = post_once(&app, &keys, &mk, "create-sk", json!({"type": "secret"})).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let secret = first.body["secret"].as_str().unwrap().to_owned();
    let replay = post_once(&app, &keys, &mk, "create-sk", json!({"type": "secret"})).await;
    assert_eq!(
        (replay.status, &replay.body["secret"]),
        (201, &json!(secret))
    );
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    // At rest: sealed, not the answer.
    let rows = idempotency_rows(&app).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let (scope, body) = &rows[0];
    assert!(
        scope.starts_with(&format!("{mk_id}:")),
        "keyed by the key's id: {scope}"
    );
    let body = body.as_deref().unwrap();
    assert!(!body.contains(&secret) && !body.contains("sk_test_") && !body.contains("secret"));
    assert!(serde_json::from_str::<Value>(body).is_err());

    // Revoked, the key replays nothing: it is refused first.
    let r = app
        .delete(
            &format!("/control/v1/workspaces/{}/keys/{mk_id}", t.ws),
            &t.owner_token,
        )
        .await;
    assert!(r.status < 300, "{}", r.body);
    let replay = post_once(&app, &keys, &mk, "create-sk", json!({"type": "secret"})).await;
    assert_error(&replay, 401, "unauthorized");
    assert!(!replay.body.to_string().contains(&secret));

    // Sign-up, sign-in and refresh are never recorded: a refresh replayed with its key is a
    // refresh, not the first answer again.
    let (_, pk) = app.key(&t.owner_token, &app_id, "publishable").await;
    let (_, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    let auth = |route: &str| format!("/v1/{app_id}/auth/{route}");
    let credentials = json!({"email": "idem@example.com", "password": "idempotent horse"});
    let up = post_once(&app, &auth("signup"), &pk, "up", credentials.clone()).await;
    assert_eq!(up.status, 201, "{}", up.body);
    let again = post_once(&app, &auth("signup"), &pk, "up", credentials.clone()).await;
    assert_eq!(
        again.status, 409,
        "a second sign-up, not a replay: {}",
        again.body
    );
    let signin = post_once(&app, &auth("signin"), &pk, "in", credentials.clone()).await;
    let signin_again = post_once(&app, &auth("signin"), &pk, "in", credentials).await;
    assert_ne!(
        signin.body["session"]["token"],
        signin_again.body["session"]["token"]
    );
    let refresh = json!({"refreshToken": signin.body["session"]["refreshToken"]});
    let first = post_once(&app, &auth("refresh"), &pk, "r", refresh.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = post_once(&app, &auth("refresh"), &pk, "r", refresh).await;
    assert!(!second.headers.contains_key("idempotent-replayed"));

    // Nothing is written for a request that failed authentication, whatever its path.
    let before = idempotency_rows(&app).await.len();
    let long = format!("/control/v1/{}", "x".repeat(60_000));
    for (path, bearer) in [
        ("/control/v1/workspaces".to_owned(), "cst_junk".to_owned()),
        (keys.clone(), "wk_live_junk".to_owned()),
        (format!("/v1/{app_id}/users"), "sk_test_junk".to_owned()),
        (format!("/v1/{app_id}/users"), pk.clone()),
        (long, "junk".to_owned()),
    ] {
        let r = post_once(
            &app,
            &path,
            &bearer,
            "junk",
            json!({"email": "x@example.com"}),
        )
        .await;
        assert!(
            matches!(r.status, 401 | 403 | 404 | 414 | 431),
            "{path}: {}",
            r.status
        );
    }
    // And a customer create with the secret key is recorded under the key's id.
    let user = post_once(
        &app,
        &format!("/v1/{app_id}/users"),
        &sk,
        "u",
        json!({"email": "new@example.com"}),
    )
    .await;
    assert_eq!(user.status, 201, "{}", user.body);
    let rows = idempotency_rows(&app).await;
    assert_eq!(rows.len(), before + 1, "{rows:?}");
    assert!(
        rows.iter().all(|(scope, _)| !scope.contains("/auth/")),
        "{rows:?}"
    );
}

on_both_backends!(
    nul_bytes_in_query_parameters_are_refused,
    nul_characters_in_json_bodies_are_refused,
    idempotency_records_are_sealed_authenticated_and_only_for_creates,
    an_invitation_cannot_take_over_or_reveal_an_account,
    pending_invitations_learn_nothing_of_the_person,
    management_keys_do_not_outlive_their_members_power,
);

/// A whole response, hidden in the body of another.
const FORGED: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n\
                      {\"keys\":[{\"kid\":\"forged\"}]}";

/// A request as an upstream read it.
type HeadAndBody = (String, Vec<u8>);

/// An upstream speaking HTTP/1.1 by hand: it records every request line it gets and answers
/// `/health` with 200 and anything else with `answer`.
struct RawUpstream {
    base: String,
    requests: Arc<Mutex<Vec<String>>>,
    /// The whole head and body of each request other than a health check.
    whole: Arc<Mutex<Vec<HeadAndBody>>>,
}

impl RawUpstream {
    async fn start(answer: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let whole = Arc::new(Mutex::new(Vec::new()));
        let (seen, kept) = (requests.clone(), whole.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(Self::serve(tcp, answer.clone(), seen.clone(), kept.clone()));
            }
        });
        Self {
            base,
            requests,
            whole,
        }
    }

    async fn serve(
        mut tcp: tokio::net::TcpStream,
        answer: String,
        seen: Arc<Mutex<Vec<String>>>,
        kept: Arc<Mutex<Vec<HeadAndBody>>>,
    ) {
        let mut buf = Vec::new();
        loop {
            let end = loop {
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break p + 4;
                }
                let mut chunk = [0u8; 4096];
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .map_or(0, |v| v.parse().unwrap());
            while buf.len() < end + length {
                let mut chunk = [0u8; 4096];
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = buf[end..end + length].to_vec();
            buf.drain(..end + length);
            let line = head.lines().next().unwrap_or_default().to_owned();
            let reply = if line.starts_with("GET /health ") {
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned()
            } else {
                kept.lock().unwrap().push((head.clone(), body));
                answer.clone()
            };
            seen.lock().unwrap().push(line);
            if tcp.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// Health checks received so far.
    fn health_checks(&self) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("GET /health "))
            .count()
    }

    /// Requests other than health checks received so far.
    fn others(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.starts_with("GET /health "))
            .cloned()
            .collect()
    }
}

/// An upstream whose answers to the customer API frame themselves twice: `Content-Length: 0`
/// beside a chunked body that holds [`FORGED`].
async fn splitting_upstream() -> String {
    RawUpstream::start(format!(
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\
         Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{FORGED}\r\n0\r\n\r\n",
        FORGED.len()
    ))
    .await
    .base
}

/// Finding 2: an upstream's framing fields never stand beside a body the server frames again,
/// so what follows on a client's connection (another application's JWKS) is the server's own
/// answer: on the gateway's own path, and through hyper and the router (where a connection
/// goes once it has sent anything else, here a health check first).
#[tokio::test]
async fn an_upstream_cannot_split_a_client_connection() {
    let gw = gateway().await;
    let evil = splitting_upstream().await;
    let Dedicated { app, sk, .. } = dedicated_app(&gw, &[evil]).await;
    let victim = gw.tenant("Victim").await;
    let victim_app = gw
        .application(&victim.owner_token, &victim.ws, "development")
        .await;
    for (path, through_hyper, extra) in [
        ("the gateway's own path", false, ""),
        (
            "the gateway's own path, with a key",
            false,
            "Idempotency-Key: split-1\r\n",
        ),
        ("hyper and the router", true, ""),
        (
            "hyper and the router, with a key",
            true,
            "Idempotency-Key: split-2\r\n",
        ),
    ] {
        let mut c = RawClient::connect(&gw).await;
        if through_hyper {
            c.send("GET /health HTTP/1.1\r\nHost: gw\r\n\r\n").await;
            assert_eq!(c.response(false).await.status, 200);
        }
        c.send(&format!(
            "POST /v1/{app}/users HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {sk}\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n{extra}\r\n{{}}"
        ))
        .await;
        let first = c.response(false).await;
        assert!(
            first.header("content-length").is_none() || first.header("transfer-encoding").is_none(),
            "{path}: framed twice: {:?}",
            first.headers
        );
        assert_eq!(
            String::from_utf8_lossy(&first.body),
            FORGED,
            "{path}: the upstream's body, whole, as the first response's body"
        );
        c.send(&format!(
            "GET /v1/{victim_app}/.well-known/jwks.json HTTP/1.1\r\nHost: gw\r\n\r\n"
        ))
        .await;
        let second = c.response(false).await;
        assert_eq!(second.status, 200, "{path}");
        let jwks: Value = serde_json::from_slice(&second.body).unwrap();
        let kid = jwks["keys"][0]["kid"].as_str().unwrap();
        assert_ne!(
            kid, "forged",
            "{path}: the next response was the upstream's"
        );
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Finding 1: a workspace admin cannot point the gateway anywhere; operators only within the
/// allowlist, never at loopback, link-local or metadata addresses however they are written.
#[tokio::test]
async fn only_operators_set_upstreams_and_never_to_special_addresses() {
    let gw = spawn_app().await;
    let root = gw.root_token().await;
    let t = gw.tenant("Scanner").await;
    let create = format!("/control/v1/workspaces/{}/applications", t.ws);
    let dedicated = |upstreams: Option<Value>| {
        let mut body = json!({"name": "D", "environment": "development", "tenancy": "dedicated"});
        if let Some(u) = upstreams {
            body["upstreams"] = u;
        }
        body
    };
    let r = gw
        .post(
            &create,
            &t.owner_token,
            dedicated(Some(json!(["http://10.0.0.1:8080"]))),
        )
        .await;
    assert_error(&r, 403, "forbidden");
    let waiting = gw.post(&create, &t.owner_token, dedicated(None)).await;
    assert_eq!(waiting.status, 201, "{}", waiting.body);
    let app = waiting.body["id"].as_str().unwrap().to_owned();
    let r = gw
        .patch(
            &format!("/control/v1/applications/{app}"),
            &t.owner_token,
            json!({"upstreams": ["http://10.0.0.1:8080"]}),
        )
        .await;
    assert_error(&r, 403, "forbidden");
    let admin = format!("/control/v1/admin/applications/{app}");
    let r = gw
        .patch(
            &admin,
            &t.owner_token,
            json!({"upstreams": ["http://10.0.0.1"]}),
        )
        .await;
    assert_error(&r, 404, "not_found");
    // Both denials are in the log: the first as it happened, the identical second folded
    // into the count written when the fold window closes.
    gw.clock.advance(std::time::Duration::from_secs(61));
    gw.state.audit.release_folds(false);
    let audit = gw
        .get(
            &format!(
                "/control/v1/workspaces/{}/audit?action=permission.denied",
                t.ws
            ),
            &t.owner_token,
        )
        .await;
    let denied = audit.body["data"].as_array().unwrap();
    // An entry is one attempt; a fold's closing entry is `repeated` more.
    let attempts: u64 = denied
        .iter()
        .map(|e| e["changes"]["repeated"].as_u64().unwrap_or(1))
        .sum();
    assert!(attempts >= 2, "{}", audit.body);

    // An operator, without an allowlist: everything but this host and metadata services.
    for target in [
        "http://127.0.0.1:8080",
        "http://2130706433",
        "http://0x7f.1:80",
        "http://0177.0.0.1",
        "http://[::1]:8080",
        "http://[::ffff:127.0.0.1]",
        "http://0.0.0.0:80",
        "http://169.254.169.254",
        "http://[fe80::1]",
        "http://metadata.google.internal",
        "http://localhost:8080",
        "http://app.localhost",
        "http://no-such-host.invalid",
    ] {
        let r = gw
            .patch(&admin, &root, json!({"upstreams": [target]}))
            .await;
        assert_error(&r, 400, "invalid_request");
        assert_eq!(r.body["error"]["details"]["field"], "upstreams", "{target}");
    }
    let r = gw
        .patch(
            &admin,
            &root,
            json!({"upstreams": ["http://10.0.0.1:8080"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["upstreams"], json!(["http://10.0.0.1:8080"]));

    // With an allowlist, nothing outside it.
    let bounded = spawn_with(HttpSettings {
        proxy: ProxySettings {
            policy: EgressPolicy::parse("10.0.0.0/8, auth.internal").unwrap(),
            ..ProxySettings::default()
        },
        ..HttpSettings::default()
    })
    .await;
    let root = bounded.root_token().await;
    let path = format!("/control/v1/workspaces/{}/applications", bounded.root_ws);
    for (target, status) in [
        ("http://10.9.9.9:80", 201),
        // Listed by name: accepted before it resolves; checked again at every connection.
        ("http://auth.internal:8080", 201),
        ("http://192.168.1.1", 400),
        ("http://203.0.113.7", 400),
        ("http://127.0.0.1", 400),
    ] {
        let r = bounded
            .post(&path, &root, dedicated(Some(json!([target]))))
            .await;
        assert_eq!(r.status, status, "{target}: {}", r.body);
    }
}

/// Finding 1: the forwarded target is the one the gateway routed by; one an instance (or
/// whatever an upstream is) would normalise into another is a 400 and never leaves.
#[tokio::test]
async fn paths_that_normalise_elsewhere_are_not_forwarded() {
    let gw = gateway().await;
    let up = RawUpstream::start(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
            .to_owned(),
    )
    .await;
    let Dedicated { app, sk, .. } = dedicated_app(&gw, std::slice::from_ref(&up.base)).await;
    for target in [
        format!("/v1/{app}/../../secret.txt"),
        format!("/v1/{app}/./users"),
        format!("/v1/{app}/%2e%2e/%2e%2e/secret.txt"),
        format!("/v1/{app}/users%2f..%2f..%2fsecret.txt"),
        format!("/v1/{app}/..\\..\\secret.txt"),
        format!("/v1/{app}/%5c..%5csecret.txt"),
        format!("/v1/{app}/%252e%252e/secret.txt"),
    ] {
        // The gateway's own path, then hyper's (where a connection goes once it has sent
        // anything else, here a health check first).
        for (method, through_hyper) in [("GET", false), ("POST", false), ("GET", true)] {
            let mut c = RawClient::connect(&gw).await;
            if through_hyper {
                c.send("GET /health HTTP/1.1\r\nHost: gw\r\n\r\n").await;
                assert_eq!(c.response(false).await.status, 200);
            }
            let extra = if method == "POST" {
                "Content-Length: 0\r\n"
            } else {
                ""
            };
            c.send(&format!(
                "{method} {target} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {sk}\r\n{extra}\r\n"
            ))
            .await;
            let r = c.response(false).await;
            assert_eq!(r.status, 400, "{method} {target}");
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["error"]["code"], "invalid_request");
        }
    }
    assert!(
        up.others().is_empty(),
        "reached the upstream: {:?}",
        up.others()
    );
    // An ordinary path still goes through.
    let r = gw.get(&format!("/v1/{app}/users"), &sk).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.others(), [format!("GET /v1/{app}/users HTTP/1.1")]);
}

/// Finding 1: only the upstreams of live dedicated applications are health-checked, and
/// `/metrics` names none of them.
#[tokio::test]
async fn health_checks_follow_the_current_upstreams_and_metrics_name_none() {
    let gw = gateway().await;
    let answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned();
    let (old, new, clock) = (
        RawUpstream::start(answer.clone()).await,
        RawUpstream::start(answer.clone()).await,
        RawUpstream::start(answer).await,
    );
    let moving = dedicated_app(&gw, std::slice::from_ref(&old.base)).await;
    // Another application's instance, whose checks show that rounds go on.
    let _other = dedicated_app(&gw, std::slice::from_ref(&clock.base)).await;
    eventually("both upstreams are checked", || {
        old.health_checks() >= 2 && clock.health_checks() >= 2
    })
    .await;
    let text = gw
        .client
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for up in [&old, &clock] {
        let address = up.base.trim_start_matches("http://");
        assert!(!text.contains(address), "{address} in {text}");
    }
    assert!(
        text.contains("authsome_upstreams{state=\"healthy\"} 2"),
        "{text}"
    );

    // Moved: the old instance is no longer contacted.
    let root = gw.root_token().await;
    let r = gw
        .patch(
            &format!("/control/v1/admin/applications/{}", moving.app),
            &root,
            json!({"upstreams": [new.base]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    eventually("the new upstream is checked", || new.health_checks() >= 2).await;
    let before = old.health_checks();
    let rounds = clock.health_checks();
    eventually("three more rounds", || clock.health_checks() >= rounds + 3).await;
    assert_eq!(
        old.health_checks(),
        before,
        "a moved-away upstream was still checked"
    );

    // Deleted: its instances are no longer contacted either.
    let r = gw
        .delete(
            &format!("/control/v1/applications/{}", moving.app),
            &moving.owner,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rounds = clock.health_checks();
    eventually("a round after the deletion", || {
        clock.health_checks() >= rounds + 2
    })
    .await;
    let before = new.health_checks();
    let rounds = clock.health_checks();
    eventually("three more rounds", || clock.health_checks() >= rounds + 3).await;
    assert_eq!(
        new.health_checks(),
        before,
        "a deleted application's upstream was still checked"
    );
}

/// Finding 1: `/metrics` can be kept from everyone but the scraper.
#[tokio::test]
async fn metrics_can_need_a_token_or_a_listener_of_their_own() {
    let gw = spawn_with(HttpSettings {
        metrics_token: Some("scrape-token-0123456789".into()),
        ..HttpSettings::default()
    })
    .await;
    let url = format!("{}/metrics", gw.base);
    let r = TestApp::read(gw.client.get(&url).send().await.unwrap()).await;
    assert_error(&r, 401, "unauthorized");
    let r = TestApp::read(
        gw.client
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&r, 401, "unauthorized");
    let r = gw
        .client
        .get(&url)
        .bearer_auth("scrape-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("authsome_draining"));

    let gw = spawn_with(HttpSettings {
        metrics_elsewhere: true,
        ..HttpSettings::default()
    })
    .await;
    let r = TestApp::read(
        gw.client
            .get(format!("{}/metrics", gw.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&r, 404, "not_found");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let own = format!("http://{}", listener.local_addr().unwrap());
    let router = authsome_server::metrics_router(gw.state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let r = gw
        .client
        .get(format!("{own}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Nothing else of the API is there.
    let r = TestApp::read(gw.client.get(format!("{own}/health")).send().await.unwrap()).await;
    assert_error(&r, 404, "not_found");
}

/// Accepts an invitation over HTTP.
async fn accept(app: &TestApp, token: &str, password: &str, name: Option<&str>) -> Response {
    let mut body = json!({"token": token, "password": password});
    if let Some(name) = name {
        body["name"] = json!(name);
    }
    app.call(
        reqwest::Method::POST,
        "/control/v1/auth/accept-invitation",
        None,
        Some(body),
    )
    .await
}

/// Finding 4: an admin of another workspace who invites the same address learns nothing of
/// the account and gets no token, so cannot set its password, take it over, or keep the real
/// invitee out.
async fn an_invitation_cannot_take_over_or_reveal_an_account(app: TestApp) {
    let a = app.tenant("Victim Corp").await;
    let b = app.tenant("Attacker Corp").await;
    let victim = json!({"email": "victim@example.com", "role": "admin"});
    let by_a = app
        .post(
            &format!("/control/v1/workspaces/{}/members", a.ws),
            &a.owner_token,
            victim.clone(),
        )
        .await;
    assert_eq!(by_a.status, 201, "{}", by_a.body);
    let by_b = app
        .post(
            &format!("/control/v1/workspaces/{}/members", b.ws),
            &b.owner_token,
            victim,
        )
        .await;
    assert_eq!(by_b.status, 201, "{}", by_b.body);
    for answer in [&by_a.body, &by_b.body] {
        assert!(answer["invitation"].get("token").is_none(), "{answer}");
        assert_eq!(answer["accountId"], Value::Null);
        assert_eq!(answer["name"], Value::Null);
    }
    // With nothing to accept with, B's admin can only guess.
    let r = accept(&app, "ivt_guessed", "attacker's password", None).await;
    assert_error(&r, 404, "not_found");

    // The invitee (the token relayed by the operators) joins A and names the account.
    let token = app.invitation_token(&by_a.body).await;
    let r = accept(&app, &token, "victim's own password", Some("Vic")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let victim = app
        .login("victim@example.com", "victim's own password")
        .await;
    // B's invitation of an existing account reveals nothing of it either.
    let again = app
        .post(
            &format!("/control/v1/workspaces/{}/members", b.ws),
            &b.owner_token,
            json!({"email": "Victim@Example.com", "role": "viewer"}),
        )
        .await;
    assert_error(&again, 409, "conflict");
    let listed = app
        .get(
            &format!("/control/v1/workspaces/{}/members", b.ws),
            &b.owner_token,
        )
        .await;
    let pending = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "victim@example.com")
        .unwrap();
    assert_eq!(pending["status"], "invited");
    assert_eq!(
        (&pending["accountId"], &pending["name"]),
        (&Value::Null, &Value::Null)
    );

    // Accepting B's invitation is signing in as the account: its own password, and nothing of
    // the account changes.
    let b_token = app.invitation_token(&by_b.body).await;
    let r = accept(&app, &b_token, "attacker's password", Some("Owned")).await;
    assert_error(&r, 401, "unauthorized");
    let r = accept(&app, &b_token, "victim's own password", Some("Owned")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let me = app.get("/control/v1/auth/me", &victim).await;
    assert_eq!(me.body["name"], "Vic", "{}", me.body);
}

/// Finding 4: accept-invitation is no password oracle: wrong passwords for an existing account
/// are throttled like sign-in.
#[tokio::test]
async fn accepting_for_an_existing_account_is_throttled_like_sign_in() {
    let app = spawn_app().await;
    let a = app.tenant("Guessed").await;
    let b = app.tenant("Guesser").await;
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/members", b.ws),
            &b.owner_token,
            json!({"email": a.owner_email, "role": "viewer"}),
        )
        .await;
    let token = app.invitation_token(&r.body).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(
            accept(&app, &token, &format!("guess number {i}"), None)
                .await
                .status,
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().take(5).all(|s| *s == 401), "{statuses:?}");
    // Locked, the right password waits too.
    let right = format!("pw-{}-long-enough", a.owner_email);
    let r = accept(&app, &token, &right, None).await;
    assert_error(&r, 429, "rate_limit_exceeded");
    assert!(r.headers.contains_key("retry-after"));
}

/// Finding 4: a workspace that has only invited a person gets no audit entries about them.
async fn pending_invitations_learn_nothing_of_the_person(app: TestApp) {
    let a = app.tenant("Known").await;
    let b = app.tenant("Curious").await;
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/members", b.ws),
            &b.owner_token,
            json!({"email": a.owner_email, "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The invited person signs in, and fails to, elsewhere.
    let password = format!("pw-{}-long-enough", a.owner_email);
    app.login(&a.owner_email, &password).await;
    let failed = app
        .call(
            reqwest::Method::POST,
            "/control/v1/auth/login",
            None,
            Some(json!({"email": a.owner_email, "password": "not it"})),
        )
        .await;
    assert_error(&failed, 401, "unauthorized");
    let person = app.get("/control/v1/auth/me", &a.owner_token).await.body["id"].clone();
    assert_eq!(
        actions_about(&app, &b.ws, &b.owner_token, &person).await,
        Vec::<String>::new()
    );
    // The workspace the person belongs to sees both.
    let seen = actions_about(&app, &a.ws, &a.owner_token, &person).await;
    assert!(seen.contains(&"account.signed_in".to_owned()), "{seen:?}");
    assert!(
        seen.contains(&"account.sign_in_failed".to_owned()),
        "{seen:?}"
    );
    // And the pending membership gives no access.
    let me = app.login(&a.owner_email, &password).await;
    let r = app
        .get(&format!("/control/v1/workspaces/{}", b.ws), &me)
        .await;
    assert_error(&r, 404, "not_found");
}

/// The `account.*` audit actions of `ws` whose target is `person`.
async fn actions_about(app: &TestApp, ws: &str, token: &str, person: &Value) -> Vec<String> {
    let path = format!("/control/v1/workspaces/{ws}/audit?action=account.&limit=100");
    app.get(&path, token).await.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == *person)
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect()
}

/// Finding 4: with `AUTHSOME_SMTP_URL`, the token goes to the invited address by mail (a real
/// SMTP server here), and is made only when the mail is handed over.
#[tokio::test]
async fn invitations_are_mailed_to_the_invited_address() {
    let Some(sink) = authsome_testkit::smtp::SmtpSink::start() else {
        return;
    };
    let app = spawn_with_mailer(&sink.url).await;
    let t = app.tenant("Mailing").await;
    // (The tenant's own owner was invited by the operator: one message already.)
    let before = sink.wait_for(1).len();
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/members", t.ws),
            &t.owner_token,
            json!({"email": "mailed@example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["invitation"]["delivery"], "email");
    assert!(r.body["invitation"].get("token").is_none());
    let messages = sink.wait_for(before + 1);
    let mail = messages.last().unwrap();
    assert!(mail.contains("To: mailed@example.com"), "{mail}");
    assert!(mail.contains("Mailing"), "{mail}");
    let token = mail
        .split_whitespace()
        .find(|w| w.starts_with("ivt_"))
        .expect("the token in the mail")
        .trim_end_matches(['"', ','])
        .to_owned();
    let r = accept(&app, &token, "mailed and chosen", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    app.login("mailed@example.com", "mailed and chosen").await;

    // The relay goes away: no invitation is made that nobody could receive.
    drop(sink);
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/members", t.ws),
            &t.owner_token,
            json!({"email": "unmailed@example.com", "role": "viewer"}),
        )
        .await;
    assert_error(&r, 503, "service_unavailable");
    let listed = app
        .get(
            &format!("/control/v1/workspaces/{}/members", t.ws),
            &t.owner_token,
        )
        .await;
    assert!(!listed.body.to_string().contains("unmailed@example.com"));
}

/// A management key of `ws` made by `token`'s caller: (id, secret).
async fn management_key(app: &TestApp, ws: &str, token: &str, role: &str) -> (String, String) {
    let r = app
        .post(
            &format!("/control/v1/workspaces/{ws}/keys"),
            token,
            json!({"name": "automation", "role": role}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["secret"].as_str().unwrap().to_owned(),
    )
}

/// Also found: a member removed or demoted kept full power through the management keys they
/// created. Now a key never acts with more than its member's role, and leaves with them,
/// unless an owner takes it over first.
async fn management_keys_do_not_outlive_their_members_power(app: TestApp) {
    let t = app.tenant("Keys Follow").await;
    let members = format!("/control/v1/workspaces/{}/members", t.ws);
    let (demoted_id, demoted) = app
        .add_member(&t.owner_token, &t.ws, "demoted@keys.test", "admin")
        .await;
    let (removed_id, removed) = app
        .add_member(&t.owner_token, &t.ws, "removed@keys.test", "admin")
        .await;
    let (_, demoted_key) = management_key(&app, &t.ws, &demoted, "admin").await;
    let (_, removed_key) = management_key(&app, &t.ws, &removed, "admin").await;
    // A key made by a key is its member's too.
    let (_, second_hand) = management_key(&app, &t.ws, &removed_key, "admin").await;
    let (kept_id, kept_key) = management_key(&app, &t.ws, &removed, "operator").await;
    let invite = |email: &str| json!({"email": email, "role": "admin"});
    let r = app
        .post(&members, &demoted_key, invite("before@keys.test"))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Demoted to viewer: the key reads, and invites no one.
    let r = app
        .patch(
            &format!("{members}/{demoted_id}"),
            &t.owner_token,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post(&members, &demoted_key, invite("after@keys.test"))
        .await;
    assert_error(&r, 403, "forbidden");
    assert_eq!(app.get(&members, &demoted_key).await.status, 200);

    // An owner takes one key over; then the member is removed: the others stop at once.
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/keys/{kept_id}/reassign", t.ws),
            &t.owner_token,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/keys/{kept_id}/reassign", t.ws),
            &demoted,
            json!({}),
        )
        .await;
    assert_error(&r, 403, "forbidden");
    let r = app
        .delete(&format!("{members}/{removed_id}"), &t.owner_token)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    for key in [&removed_key, &second_hand] {
        let r = app.post(&members, key, invite("late@keys.test")).await;
        assert_error(&r, 401, "unauthorized");
    }
    assert_eq!(app.get(&members, &kept_key).await.status, 200);
}

/// Also found: the gateway's forwarding assertion worked as a bearer credential for a minute.
/// Now it names the body it came with and is accepted once: one taken off the hop to an
/// instance opens nothing with another body, and nothing a second time.
#[tokio::test]
async fn a_forwarding_assertion_is_bound_to_its_body_and_used_once() {
    let gw = gateway().await;
    let tap = RawUpstream::start(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
            .to_owned(),
    )
    .await;
    let Dedicated { app, sk, .. } = dedicated_app(&gw, std::slice::from_ref(&tap.base)).await;
    let created = gw
        .post(
            &format!("/v1/{app}/users"),
            &sk,
            json!({"email": "meant@example.com"}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let (head, body) = tap.whole.lock().unwrap().last().cloned().unwrap();
    assert_eq!(body, br#"{"email":"meant@example.com"}"#);
    let assertion = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-authsome-forwarded:")
                .then(|| l.split_once(':').unwrap().1.trim().to_owned())
        })
        .expect("the gateway's assertion");
    // A real instance of the application, which the captured assertion never reached.
    let port = reserve_port();
    let instance = spawn_instance(&gw, &app, port);
    let replay = |body: &'static str| {
        gw.client
            .post(format!("{}/v1/{app}/users", instance.base))
            .header("X-AuthSome-Forwarded", &assertion)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let other = TestApp::read(replay(r#"{"email":"chosen@example.com"}"#).await.unwrap()).await;
    assert_error(&other, 401, "unauthorized");
    assert!(other.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("body"));
    let first = TestApp::read(replay(r#"{"email":"meant@example.com"}"#).await.unwrap()).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = TestApp::read(replay(r#"{"email":"meant@example.com"}"#).await.unwrap()).await;
    assert_error(&again, 401, "unauthorized");
    assert!(again.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already used"));
}
