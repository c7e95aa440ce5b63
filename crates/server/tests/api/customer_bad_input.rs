//! Bad input on every customer-API route that takes a body or an id: the contract's 400/404,
//! never a 500, and nothing written.

use reqwest::Method;
use serde_json::json;

use crate::customer_auth::{call_with, customer_app};
use crate::helpers::*;

#[tokio::test]
async fn every_customer_route_refuses_bad_input() {
    let app = spawn_app().await;
    let c = customer_app(&app, "BadInput").await;
    let base = format!("/v1/{}", c.app);
    let signup = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "in@example.com", "password": "long-password"})),
    )
    .await;
    let user = signup.body["user"]["id"].as_str().unwrap().to_owned();
    let token = signup.body["session"]["token"].as_str().unwrap().to_owned();
    let org = call_with(
        &app,
        Method::POST,
        &format!("{base}/organizations"),
        None,
        Some(&c.sk),
        Some(json!({"name": "O"})),
    )
    .await;
    let org = org.body["id"].as_str().unwrap().to_owned();
    let m = call_with(
        &app,
        Method::POST,
        &format!("{base}/organizations/{org}/memberships"),
        None,
        Some(&c.sk),
        Some(json!({"userId": user, "role": "member"})),
    )
    .await;
    let membership = m.body["id"].as_str().unwrap().to_owned();

    // (method, path, credential) for every route with a JSON body.
    let body_routes: Vec<(Method, String, &str)> = vec![
        (Method::POST, format!("{base}/auth/signup"), c.pk.as_str()),
        (Method::POST, format!("{base}/auth/signin"), c.pk.as_str()),
        (Method::POST, format!("{base}/auth/refresh"), c.pk.as_str()),
        (
            Method::POST,
            format!("{base}/auth/switch-organization"),
            token.as_str(),
        ),
        (Method::POST, format!("{base}/users"), c.sk.as_str()),
        (Method::PATCH, format!("{base}/users/{user}"), c.sk.as_str()),
        (Method::POST, format!("{base}/organizations"), c.sk.as_str()),
        (
            Method::PATCH,
            format!("{base}/organizations/{org}"),
            c.sk.as_str(),
        ),
        (
            Method::POST,
            format!("{base}/organizations/{org}/memberships"),
            c.sk.as_str(),
        ),
        (
            Method::PATCH,
            format!("{base}/organizations/{org}/memberships/{membership}"),
            c.sk.as_str(),
        ),
        (
            Method::POST,
            format!("{base}/organizations/{org}/invitations"),
            c.sk.as_str(),
        ),
        (
            Method::POST,
            format!("{base}/organizations/invitations/accept"),
            token.as_str(),
        ),
    ];
    for (method, path, credential) in &body_routes {
        for (content_type, body) in [
            ("application/json", "{\"unexpected\": true}"),
            ("application/json", "{not json"),
            ("application/json", "[]"),
            ("text/plain", "hello"),
        ] {
            let r = app
                .client
                .request(method.clone(), format!("{}{path}", app.base))
                .bearer_auth(credential)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let r = TestApp::read(r).await;
            assert_error(&r, 400, "invalid_request");
            let _ = (&r, path);
        }
    }
    // Malformed or foreign ids in paths are 404s.
    for path in [
        format!("{base}/users/usr_bad"),
        format!("{base}/users/{org}"),
        format!("{base}/users/usr_01h455vb4pex5vsknk084sn02q/sessions"),
        format!("{base}/organizations/org_bad"),
        format!("{base}/organizations/{user}/memberships"),
        format!("{base}/organizations/{org}/memberships/orm_01h455vb4pex5vsknk084sn02q"),
    ] {
        let method = if path.ends_with("memberships/orm_01h455vb4pex5vsknk084sn02q") {
            Method::DELETE
        } else {
            Method::GET
        };
        assert_error(
            &call_with(&app, method, &path, None, Some(&c.sk), None).await,
            404,
            "not_found",
        );
    }
    for path in [
        "/v1/app_bad/auth/signin",
        "/v1/ws_01h455vb4pex5vsknk084sn02q/me",
        "/v1/nothing/.well-known/jwks.json",
    ] {
        let r = call_with(
            &app,
            Method::POST,
            path,
            Some(&c.pk),
            None,
            Some(json!({"email": "a@b.co", "password": "x"})),
        )
        .await;
        assert!(r.status == 404 || r.status == 405, "{path}: {}", r.status);
        assert!(r.body["error"]["code"].is_string());
    }
    // Nothing was written by any of it.
    let users = call_with(
        &app,
        Method::GET,
        &format!("{base}/users"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(users.body["data"].as_array().unwrap().len(), 1);
    let orgs = call_with(
        &app,
        Method::GET,
        &format!("{base}/organizations"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(orgs.body["data"].as_array().unwrap().len(), 1);
}

async fn concurrent_sign_ins_make_separate_sessions(app: TestApp) {
    let c = customer_app(&app, "ConcurrentSignIn").await;
    let base = format!("/v1/{}", c.app);
    call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(&c.pk),
        None,
        Some(json!({"email": "many@example.com", "password": "long-password"})),
    )
    .await;
    let path = format!("{base}/auth/signin");
    let body = json!({"email": "many@example.com", "password": "long-password"});
    let (a, b, c2, d) = tokio::join!(
        call_with(
            &app,
            Method::POST,
            &path,
            Some(&c.pk),
            None,
            Some(body.clone())
        ),
        call_with(
            &app,
            Method::POST,
            &path,
            Some(&c.pk),
            None,
            Some(body.clone())
        ),
        call_with(
            &app,
            Method::POST,
            &path,
            Some(&c.pk),
            None,
            Some(body.clone())
        ),
        call_with(
            &app,
            Method::POST,
            &path,
            Some(&c.pk),
            None,
            Some(body.clone())
        ),
    );
    let mut ids = std::collections::HashSet::new();
    for r in [&a, &b, &c2, &d] {
        assert_eq!(r.status, 200, "{}", r.body);
        ids.insert(r.body["session"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids.len(), 4);
    let user = a.body["user"]["id"].as_str().unwrap();
    let sessions = call_with(
        &app,
        Method::GET,
        &format!("{base}/users/{user}/sessions"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(
        sessions.body["data"].as_array().unwrap().len(),
        5,
        "sign-up's plus four"
    );
}

on_both_backends!(concurrent_sign_ins_make_separate_sessions);
