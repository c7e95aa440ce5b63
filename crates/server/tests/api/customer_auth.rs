//! The customer API's auth flow over HTTP, on SQLite and on Postgres.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

pub struct Customer {
    /// The application's workspace.
    pub ws: String,
    pub app: String,
    pub pk: String,
    pub sk: String,
    pub owner_token: String,
}

/// A customer application on the pro plan (100 requests per second per key), so tests of
/// behaviour are not throttled by the free plan's 10.
pub async fn customer_app(app: &TestApp, name: &str) -> Customer {
    customer_app_on(app, name, "pro").await
}

pub async fn customer_app_on(app: &TestApp, name: &str, plan: &str) -> Customer {
    let t = app.tenant(name).await;
    if plan != "free" {
        let root = app.root_token().await;
        let r = app
            .patch(
                &format!("/control/v1/admin/workspaces/{}", t.ws),
                &root,
                json!({"plan": plan}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let got = app
        .get(
            &format!("/control/v1/applications/{app_id}"),
            &t.owner_token,
        )
        .await;
    assert_eq!(
        got.body["status"], "active",
        "provisioned inline: {}",
        got.body
    );
    assert!(got.body["provisionedAt"].as_str().is_some());
    let (_, pk) = app.key(&t.owner_token, &app_id, "publishable").await;
    let (_, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    Customer {
        ws: t.ws,
        app: app_id,
        pk,
        sk,
        owner_token: t.owner_token,
    }
}

pub async fn call_with(
    app: &TestApp,
    method: Method,
    path: &str,
    pk: Option<&str>,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, format!("{}{path}", app.base));
    if let Some(pk) = pk {
        request = request.header("X-Publishable-Key", pk);
    }
    if let Some(b) = bearer {
        request = request.bearer_auth(b);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    TestApp::read(request.send().await.unwrap()).await
}

pub fn verify_with_jwks(token: &str, jwks: &Value, issuer: &str, audience: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap()
        .claims
}

async fn full_flow(app: TestApp) {
    let c = customer_app(&app, "Flow").await;
    let base = format!("/v1/{}", c.app);
    let signup = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "Grace@Example.com", "password": "hopper-1906", "name": "Grace"})),
    )
    .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
    let user_id = signup.body["user"]["id"].as_str().unwrap().to_owned();
    assert!(user_id.starts_with("usr_"));
    assert_eq!(signup.body["user"]["email"], "grace@example.com");
    assert!(
        signup.body["user"].get("privateMetadata").is_none(),
        "never to the frontend"
    );
    let session = &signup.body["session"];
    assert!(session["id"].as_str().unwrap().starts_with("ses_"));
    assert!(session["refreshToken"].as_str().unwrap().starts_with("rt_"));
    let dup = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "grace@example.com", "password": "another-pass"})),
    )
    .await;
    assert_error(&dup, 409, "conflict");

    // The access token verifies with an independent JWT library against the JWKS over HTTP.
    let jwks = app
        .call(
            Method::GET,
            &format!("{base}/.well-known/jwks.json"),
            None,
            None,
        )
        .await;
    assert_eq!(jwks.status, 200);
    let discovery = app
        .call(
            Method::GET,
            &format!("{base}/.well-known/openid-configuration"),
            None,
            None,
        )
        .await;
    let issuer = format!("{}{base}", app.base);
    assert_eq!(discovery.body["issuer"], issuer.as_str());
    assert_eq!(
        discovery.body["jwks_uri"],
        format!("{issuer}/.well-known/jwks.json")
    );
    let token = session["token"].as_str().unwrap();
    let claims = verify_with_jwks(token, &jwks.body, &issuer, &c.app);
    assert_eq!(claims["sub"], user_id.as_str());
    assert_eq!(claims["sid"], session["id"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    let me = call_with(
        &app,
        Method::GET,
        &format!("{base}/me"),
        None,
        Some(token),
        None,
    )
    .await;
    assert_eq!((me.status, me.body["id"].clone()), (200, json!(user_id)));

    // Sign in: wrong password and unknown email look the same.
    let wrong = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        Some(&c.pk),
        None,
        Some(json!({"email": "grace@example.com", "password": "not-hers-at-all"})),
    )
    .await;
    let unknown = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        Some(&c.pk),
        None,
        Some(json!({"email": "nobody@example.com", "password": "not-hers-at-all"})),
    )
    .await;
    assert_error(&wrong, 401, "unauthorized");
    assert_error(&unknown, 401, "unauthorized");
    assert_eq!(
        wrong.body["error"]["message"],
        unknown.body["error"]["message"]
    );
    let signin = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        None,
        Some(&c.pk),
        Some(json!({"email": "GRACE@example.com", "password": "hopper-1906"})),
    )
    .await;
    assert_eq!(signin.status, 200, "{}", signin.body);

    // Refresh rotates; the old refresh token replayed later revokes the whole session.
    let first_refresh = signin.body["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let refreshed = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/refresh"),
        Some(&c.pk),
        None,
        Some(json!({"refreshToken": first_refresh})),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    let second_refresh = refreshed.body["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(
        refreshed.body["session"]["id"],
        signin.body["session"]["id"]
    );
    let new_token = refreshed.body["session"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    verify_with_jwks(&new_token, &jwks.body, &issuer, &c.app);

    // Sign-out ends the session: its access token stops working at once.
    let out = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signout"),
        Some(&c.pk),
        Some(&new_token),
        None,
    )
    .await;
    assert_eq!(out.status, 204, "{}", out.body);
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/me"),
            None,
            Some(&new_token),
            None,
        )
        .await,
        401,
        "unauthorized",
    );
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/refresh"),
            Some(&c.pk),
            None,
            Some(json!({"refreshToken": second_refresh})),
        )
        .await,
        401,
        "unauthorized",
    );
    // The first session (from sign-up) still works.
    assert_eq!(
        call_with(
            &app,
            Method::GET,
            &format!("{base}/me"),
            None,
            Some(token),
            None
        )
        .await
        .status,
        200
    );

    // Admin API: secret key only.
    let users = call_with(
        &app,
        Method::GET,
        &format!("{base}/users?email=GRACE@example.com"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert_eq!(users.body["data"][0]["id"], user_id.as_str());
    assert_eq!(users.body["data"][0]["privateMetadata"], json!({}));
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/users"),
            Some(&c.pk),
            None,
            None,
        )
        .await,
        403,
        "forbidden",
    );
    let sessions = call_with(
        &app,
        Method::GET,
        &format!("{base}/users/{user_id}/sessions"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(sessions.body["data"].as_array().unwrap().len(), 2);
}

async fn refresh_token_reuse_revokes_the_session(app: TestApp) {
    let c = customer_app(&app, "Reuse").await;
    let base = format!("/v1/{}", c.app);
    let signup = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "eve@example.com", "password": "long-password"})),
    )
    .await;
    let stolen = signup.body["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = signup.body["session"]["token"].as_str().unwrap().to_owned();
    let legit = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/refresh"),
        Some(&c.pk),
        None,
        Some(json!({"refreshToken": stolen})),
    )
    .await;
    assert_eq!(legit.status, 200);
    // A concurrent double-submit inside the grace window gets the same successor, however
    // often it is sent: never another live refresh token.
    for _ in 0..3 {
        let double = call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/refresh"),
            Some(&c.pk),
            None,
            Some(json!({"refreshToken": stolen})),
        )
        .await;
        assert_eq!(double.status, 200, "{}", double.body);
        assert_eq!(
            double.body["session"]["refreshToken"],
            legit.body["session"]["refreshToken"]
        );
    }
    // Past the grace window, the rotated token is theft: the session dies.
    app.clock.advance(std::time::Duration::from_millis(10_500));
    let replay = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/refresh"),
        Some(&c.pk),
        None,
        Some(json!({"refreshToken": stolen})),
    )
    .await;
    assert_error(&replay, 401, "unauthorized");
    let successor = legit.body["session"]["refreshToken"].as_str().unwrap();
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/refresh"),
            Some(&c.pk),
            None,
            Some(json!({"refreshToken": successor})),
        )
        .await,
        401,
        "unauthorized",
    );
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/me"),
            None,
            Some(&token),
            None,
        )
        .await,
        401,
        "unauthorized",
    );
}

async fn concurrent_refreshes_all_succeed_without_forking_the_session(app: TestApp) {
    let c = customer_app(&app, "Concurrent").await;
    let base = format!("/v1/{}", c.app);
    let signup = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "race@example.com", "password": "long-password"})),
    )
    .await;
    let refresh = signup.body["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let session = signup.body["session"]["id"].clone();
    let path = format!("{base}/auth/refresh");
    let calls = (0..8).map(|_| {
        call_with(
            &app,
            Method::POST,
            &path,
            Some(&c.pk),
            None,
            Some(json!({"refreshToken": refresh})),
        )
    });
    let results = futures_join_all(calls).await;
    for r in &results {
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.body["session"]["id"], session,
            "one session, never a second one"
        );
    }
    let tokens: std::collections::HashSet<_> = results
        .iter()
        .map(|r| r.body["session"]["refreshToken"].to_string())
        .collect();
    assert_eq!(
        tokens.len(),
        1,
        "every caller got the same successor: one live refresh token, never several"
    );
}

async fn futures_join_all<F: std::future::Future<Output = Response>>(
    futures: impl Iterator<Item = F>,
) -> Vec<Response> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::new();
    // Poll them together.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = handles.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<Response>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => done[i] = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}

async fn disabled_users_lose_their_sessions_at_once(app: TestApp) {
    let c = customer_app(&app, "Disable").await;
    let base = format!("/v1/{}", c.app);
    let signup = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "mallory@example.com", "password": "long-password"})),
    )
    .await;
    let user = signup.body["user"]["id"].as_str().unwrap().to_owned();
    let token = signup.body["session"]["token"].as_str().unwrap().to_owned();
    let refresh = signup.body["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let disabled = call_with(
        &app,
        Method::POST,
        &format!("{base}/users/{user}/disable"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(
        (disabled.status, disabled.body["disabled"].clone()),
        (200, json!(true))
    );
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/me"),
            None,
            Some(&token),
            None,
        )
        .await,
        401,
        "unauthorized",
    );
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/refresh"),
            Some(&c.pk),
            None,
            Some(json!({"refreshToken": refresh})),
        )
        .await,
        401,
        "unauthorized",
    );
    let signin = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        Some(&c.pk),
        None,
        Some(json!({"email": "mallory@example.com", "password": "long-password"})),
    )
    .await;
    assert_error(&signin, 403, "forbidden");
    let enabled = call_with(
        &app,
        Method::POST,
        &format!("{base}/users/{user}/enable"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(enabled.body["disabled"], false);
    let signin = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        Some(&c.pk),
        None,
        Some(json!({"email": "mallory@example.com", "password": "long-password"})),
    )
    .await;
    assert_eq!(signin.status, 200);
}

async fn applications_are_isolated_from_each_other(app: TestApp) {
    let a = customer_app(&app, "Iso A").await;
    let b = customer_app(&app, "Iso B").await;
    let body = json!({"email": "same@example.com", "password": "long-password"});
    let in_a = call_with(
        &app,
        Method::POST,
        &format!("/v1/{}/auth/signup", a.app),
        Some(&a.pk),
        None,
        Some(body.clone()),
    )
    .await;
    let in_b = call_with(
        &app,
        Method::POST,
        &format!("/v1/{}/auth/signup", b.app),
        Some(&b.pk),
        None,
        Some(body),
    )
    .await;
    assert_eq!(
        (in_a.status, in_b.status),
        (201, 201),
        "the same email in two applications"
    );
    assert_ne!(in_a.body["user"]["id"], in_b.body["user"]["id"]);
    // A's keys and tokens mean nothing on B.
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("/v1/{}/auth/signin", b.app),
            Some(&a.pk),
            None,
            Some(json!({"email": "same@example.com", "password": "long-password"})),
        )
        .await,
        404,
        "not_found",
    );
    let a_user = in_a.body["user"]["id"].as_str().unwrap();
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("/v1/{}/users/{a_user}", b.app),
            None,
            Some(&b.sk),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("/v1/{}/users/{a_user}", b.app),
            None,
            Some(&a.sk),
            None,
        )
        .await,
        404,
        "not_found",
    );
    let a_token = in_a.body["session"]["token"].as_str().unwrap();
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("/v1/{}/me", b.app),
            None,
            Some(a_token),
            None,
        )
        .await,
        401,
        "unauthorized",
    );
    let users_b = call_with(
        &app,
        Method::GET,
        &format!("/v1/{}/users", b.app),
        None,
        Some(&b.sk),
        None,
    )
    .await;
    assert_eq!(users_b.body["data"].as_array().unwrap().len(), 1);
}

async fn user_admin_api(app: TestApp) {
    let c = customer_app(&app, "Admin").await;
    let base = format!("/v1/{}", c.app);
    let created = call_with(
        &app,
        Method::POST,
        &format!("{base}/users"),
        None,
        Some(&c.sk),
        Some(
            json!({"email": "Ada@Example.com", "name": "Ada", "password": "difference-engine",
                    "publicMetadata": {"plan": "gold"}, "privateMetadata": {"stripe": "cus_1"}}),
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["privateMetadata"], json!({"stripe": "cus_1"}));
    let id = created.body["id"].as_str().unwrap().to_owned();
    for (n, email) in ["bob@example.com", "carol@example.com", "dave@sample.org"]
        .iter()
        .enumerate()
    {
        let r = call_with(
            &app,
            Method::POST,
            &format!("{base}/users"),
            None,
            Some(&c.sk),
            Some(json!({"email": email, "name": format!("User {n}")})),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let q = call_with(
        &app,
        Method::GET,
        &format!("{base}/users?query=EXAMPLE&limit=2"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(q.body["data"].as_array().unwrap().len(), 2);
    assert_eq!(q.body["hasMore"], true);
    let cursor = q.body["nextCursor"].as_str().unwrap();
    let q2 = call_with(
        &app,
        Method::GET,
        &format!("{base}/users?query=example&limit=2&cursor={cursor}"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(q2.body["data"].as_array().unwrap().len(), 1);
    let wildcard = call_with(
        &app,
        Method::GET,
        &format!("{base}/users?query=%25"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert!(
        wildcard.body["data"].as_array().unwrap().is_empty(),
        "LIKE wildcards are literal"
    );
    let by_name = call_with(
        &app,
        Method::GET,
        &format!("{base}/users?query=ada"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(by_name.body["data"][0]["id"], id.as_str());

    let patched = call_with(
        &app,
        Method::PATCH,
        &format!("{base}/users/{id}"),
        None,
        Some(&c.sk),
        Some(json!({"name": "Ada Lovelace", "publicMetadata": {"plan": "platinum"}})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["publicMetadata"], json!({"plan": "platinum"}));
    assert_eq!(patched.body["privateMetadata"], json!({"stripe": "cus_1"}));
    let clash = call_with(
        &app,
        Method::PATCH,
        &format!("{base}/users/{id}"),
        None,
        Some(&c.sk),
        Some(json!({"email": "BOB@example.com"})),
    )
    .await;
    assert_error(&clash, 409, "conflict");
    for bad in [
        json!({"email": "nope"}),
        json!({"password": "short"}),
        json!({"publicMetadata": [1]}),
        json!({"role": "admin"}),
    ] {
        assert_error(
            &call_with(
                &app,
                Method::PATCH,
                &format!("{base}/users/{id}"),
                None,
                Some(&c.sk),
                Some(bad),
            )
            .await,
            400,
            "invalid_request",
        );
    }
    // The password set by the admin works for sign-in.
    let signin = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        Some(&c.pk),
        None,
        Some(json!({"email": "ada@example.com", "password": "difference-engine"})),
    )
    .await;
    assert_eq!(signin.status, 200, "{}", signin.body);
    let ses = signin.body["session"]["id"].as_str().unwrap();
    let token = signin.body["session"]["token"].as_str().unwrap();
    assert_eq!(
        call_with(
            &app,
            Method::DELETE,
            &format!("{base}/sessions/{ses}"),
            None,
            Some(&c.sk),
            None
        )
        .await
        .status,
        204
    );
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/me"),
            None,
            Some(token),
            None,
        )
        .await,
        401,
        "unauthorized",
    );
    assert_error(
        &call_with(
            &app,
            Method::DELETE,
            &format!("{base}/sessions/ses_01h455vb4pex5vsknk084sn02q"),
            None,
            Some(&c.sk),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_eq!(
        call_with(
            &app,
            Method::DELETE,
            &format!("{base}/users/{id}"),
            None,
            Some(&c.sk),
            None
        )
        .await
        .status,
        204
    );
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/users/{id}"),
            None,
            Some(&c.sk),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/users/not-an-id"),
            None,
            Some(&c.sk),
            None,
        )
        .await,
        404,
        "not_found",
    );
}

async fn scoped_secret_keys_and_sign_in_lockout(app: TestApp) {
    let t = app.tenant("Scopes").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let r = app
        .post(
            &format!("/control/v1/applications/{app_id}/keys"),
            &t.owner_token,
            json!({"type": "secret", "scopes": ["users:read"]}),
        )
        .await;
    let read_only = r.body["secret"].as_str().unwrap().to_owned();
    let (_, pk) = app.key(&t.owner_token, &app_id, "publishable").await;
    let base = format!("/v1/{app_id}");
    assert_eq!(
        call_with(
            &app,
            Method::GET,
            &format!("{base}/users"),
            None,
            Some(&read_only),
            None
        )
        .await
        .status,
        200
    );
    let denied = call_with(
        &app,
        Method::POST,
        &format!("{base}/users"),
        None,
        Some(&read_only),
        Some(json!({"email": "x@example.com"})),
    )
    .await;
    assert_error(&denied, 403, "forbidden");

    call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&pk),
        None,
        Some(json!({"email": "target@example.com", "password": "right-password"})),
    )
    .await;
    for n in 0..5 {
        let r = call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/signin"),
            Some(&pk),
            None,
            Some(json!({"email": "target@example.com", "password": format!("guess-{n}-xx")})),
        )
        .await;
        assert_error(&r, 401, "unauthorized");
    }
    let locked = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        Some(&pk),
        None,
        Some(json!({"email": "target@example.com", "password": "right-password"})),
    )
    .await;
    assert_error(&locked, 429, "rate_limit_exceeded");
    assert!(locked.headers.get("retry-after").is_some());
}

on_both_backends!(
    full_flow,
    refresh_token_reuse_revokes_the_session,
    concurrent_refreshes_all_succeed_without_forking_the_session,
    disabled_users_lose_their_sessions_at_once,
    applications_are_isolated_from_each_other,
    user_admin_api,
    scoped_secret_keys_and_sign_in_lockout,
);

#[tokio::test]
async fn the_password_policy_refuses_short_and_common_passwords() {
    let app = spawn_app().await;
    let c = customer_app(&app, "Policy").await;
    let base = format!("/v1/{}", c.app);
    for password in ["short", "Password123", "qwertyuiop", &"x".repeat(257)] {
        let r = call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/signup"),
            Some(&c.pk),
            None,
            Some(json!({"email": "p@example.com", "password": password})),
        )
        .await;
        assert_error(&r, 400, "invalid_request");
        assert_eq!(r.body["error"]["details"]["field"], "password");
    }
    for body in [
        json!({"email": "not-an-email", "password": "long-password"}),
        json!({"email": "p@example.com"}),
        json!({"email": "p@example.com", "password": "long-password", "admin": true}),
    ] {
        let r = call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/signup"),
            Some(&c.pk),
            None,
            Some(body),
        )
        .await;
        assert_error(&r, 400, "invalid_request");
    }
    let r = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/refresh"),
        Some(&c.pk),
        None,
        Some(json!({"refreshToken": "rt_forged"})),
    )
    .await;
    assert_error(&r, 401, "unauthorized");
    let r = call_with(
        &app,
        Method::GET,
        &format!("{base}/me"),
        None,
        Some("not.a.jwt"),
        None,
    )
    .await;
    assert_error(&r, 401, "unauthorized");
    let r = call_with(&app, Method::GET, &format!("{base}/me"), None, None, None).await;
    assert_error(&r, 401, "unauthorized");
    let r = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        None,
        None,
        Some(json!({"email": "p@example.com", "password": "long-password"})),
    )
    .await;
    assert_error(&r, 401, "unauthorized");
    let r = app
        .call(
            Method::GET,
            "/v1/app_01h455vb4pex5vsknk084sn02q/.well-known/jwks.json",
            None,
            None,
        )
        .await;
    assert_error(&r, 404, "not_found");
}
