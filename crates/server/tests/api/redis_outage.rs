//! Redis going away mid-run, through a TCP proxy the test controls. The behaviour is
//! deliberate (self-hosting guide): security state fails closed (sign-in, signed requests are
//! refused with 503), rate limiting fails open (requests pass, logged), and everything resumes
//! when Redis is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use crate::customer_auth::call_with;
use crate::helpers::*;

/// Forwards a local port to Redis until `down()`; `up()` listens again on the same port.
struct Proxy {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            port: listener.local_addr().unwrap().port(),
            target: target.to_owned(),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn up(&self) {
        let started = Instant::now();
        loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => return self.serve(listener),
                Err(_) if started.elapsed() < Duration::from_secs(5) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("cannot listen again: {e}"),
            }
        }
    }
}

fn signed_identify(
    app: &TestApp,
    app_id: &str,
    key_id: &str,
    secret: &str,
) -> reqwest::RequestBuilder {
    use authsome_domain::keys::signing;
    let path = format!("/v1/{app_id}");
    let ts = chrono::Utc::now().timestamp().to_string();
    let signature = signing::sign(secret, "GET", &path, &ts, &signing::body_digest(b""));
    app.client
        .get(format!("{}{path}", app.base))
        .header("X-Api-Key-Id", key_id)
        .header("X-Timestamp", ts)
        .header("X-Signature", signature)
}

#[tokio::test]
async fn redis_going_away_fails_closed_for_security_state_and_recovers() {
    let redis = std::env::var("AUTHSOME_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    if TcpStream::connect(&target).await.is_err() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true and Redis is unreachable at {redis}"
        );
        return;
    }
    let proxy = Proxy::start(&target).await;
    let app = spawn_with_redis_at(&format!("redis://127.0.0.1:{}", proxy.port))
        .await
        .expect("connected through the proxy");
    let t = app.tenant("Outage").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let (key_id, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    let signup = call_with(
        &app,
        reqwest::Method::POST,
        &format!("/v1/{app_id}/auth/signup"),
        None,
        Some(&sk),
        Some(json!({"email": "outage@example.com", "password": "still-here-123"})),
    )
    .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    let signin_path = format!("/v1/{app_id}/auth/signin");
    let sign_in = || {
        call_with(
            &app,
            reqwest::Method::POST,
            &signin_path,
            None,
            Some(&sk),
            Some(json!({"email": "outage@example.com", "password": "still-here-123"})),
        )
    };
    assert_eq!(sign_in().await.status, 200);
    let signed = signed_identify(&app, &app_id, &key_id, &sk)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);

    proxy.down();
    // Rate limiting fails open: the key still works.
    assert_eq!(app.identify(&app_id, &sk).await.status, 200);
    // Security state fails closed.
    assert_error(&sign_in().await, 503, "service_unavailable");
    let signed = TestApp::read(
        signed_identify(&app, &app_id, &key_id, &sk)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&signed, 503, "service_unavailable");
    // Back: everything resumes (the connections reconnect by themselves).
    proxy.up().await;
    let started = Instant::now();
    loop {
        let r = sign_in().await;
        if r.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never recovered: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let signed = signed_identify(&app, &app_id, &key_id, &sk)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 200);
}

/// The vault's envelopes in Redis: while Redis is away, values are neither read nor written
/// (503, nothing half-written, no fallback to the database); both work again once it is back.
#[tokio::test]
async fn a_vault_in_redis_answers_503_while_redis_is_away() {
    let redis = std::env::var("AUTHSOME_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let target = redis
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    if TcpStream::connect(&target).await.is_err() {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true and Redis is unreachable at {redis}"
        );
        return;
    }
    let proxy = Proxy::start(&target).await;
    let app = spawn_vault_in_redis_at(&format!("redis://127.0.0.1:{}", proxy.port))
        .await
        .expect("connected through the proxy");
    let t = app.tenant("VaultOutage").await;
    let tok = &t.owner_token;
    let v = app
        .post(
            &format!("/control/v1/workspaces/{}/vaults", t.ws),
            tok,
            json!({"name": "v"}),
        )
        .await
        .body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = format!("/control/v1/vaults/{v}/secrets/KEY");
    let put = |value: &'static str| {
        app.client
            .put(format!("{}{secret}", app.base))
            .bearer_auth(tok)
            .json(&json!({"value": value}))
            .send()
    };
    assert_eq!(put("one").await.unwrap().status(), 201);

    proxy.down();
    let read = app.get(&format!("{secret}/value"), tok).await;
    assert_error(&read, 503, "service_unavailable");
    let write = TestApp::read(put("two").await.unwrap()).await;
    assert_error(&write, 503, "service_unavailable");
    let meta = app.get(&secret, tok).await;
    assert_eq!(
        meta.body["version"], 1,
        "nothing half-written: {}",
        meta.body
    );

    proxy.up().await;
    let started = Instant::now();
    loop {
        let read = app.get(&format!("{secret}/value"), tok).await;
        if read.status == 200 {
            assert_eq!(read.body["value"], "one");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no recovery: {}",
            read.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(put("two").await.unwrap().status(), 200);
}
