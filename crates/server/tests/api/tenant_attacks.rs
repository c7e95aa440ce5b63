//! Attacks a hostile tenant or an anonymous caller tried against the running server (issue 33),
//! each performed over HTTP as it was found. Those that involve storage run on every backend.

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

on_both_backends!(
    nul_bytes_in_query_parameters_are_refused,
    nul_characters_in_json_bodies_are_refused,
);

/// A whole response, hidden in the body of another.
const FORGED: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n\
                      {\"keys\":[{\"kid\":\"forged\"}]}";

/// An upstream whose answers to the customer API frame themselves twice: `Content-Length: 0`
/// beside a chunked body that holds [`FORGED`]. Its `/health` is fine.
async fn splitting_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
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
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 4096];
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + length);
                    let answer = if head.starts_with("get /health") {
                        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned()
                    } else {
                        format!(
                            "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\
                             Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n\
                             {:x}\r\n{FORGED}\r\n0\r\n\r\n",
                            FORGED.len()
                        )
                    };
                    if tcp.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    base
}

/// Finding 2: an upstream's framing fields never stand beside a body the server frames again,
/// so what follows on a client's connection (another application's JWKS) is the server's own
/// answer, on the gateway's own path, through the router and the idempotency record, and on
/// replay.
#[tokio::test]
async fn an_upstream_cannot_split_a_client_connection() {
    let gw = gateway().await;
    let evil = splitting_upstream().await;
    let Dedicated { app, sk, .. } = dedicated_app(&gw, &[evil]).await;
    let victim = gw.tenant("Victim").await;
    let victim_app = gw
        .application(&victim.owner_token, &victim.ws, "development")
        .await;
    for (path, extra) in [
        ("the gateway's own path", ""),
        ("the router, recorded", "Idempotency-Key: split-1\r\n"),
        ("the router, replayed", "Idempotency-Key: split-1\r\n"),
    ] {
        let mut c = RawClient::connect(&gw).await;
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
