//! Organizations, the active organization in tokens, MAU, signing-key rotation, self-service
//! sessions.

use reqwest::Method;
use serde_json::{json, Value};

use crate::customer_auth::{call_with, customer_app, verify_with_jwks};
use crate::helpers::*;

async fn sign_up(app: &TestApp, base: &str, pk: &str, email: &str) -> Value {
    let r = call_with(
        app,
        Method::POST,
        &format!("{base}/auth/signup"),
        Some(pk),
        None,
        Some(json!({"email": email, "password": "long-password"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

async fn organizations_memberships_invitations_and_the_active_organization(app: TestApp) {
    let c = customer_app(&app, "Orgs").await;
    let base = format!("/v1/{}", c.app);
    let alice = sign_up(&app, &base, &c.pk, "alice@example.com").await;
    let alice_id = alice["user"]["id"].as_str().unwrap().to_owned();
    let alice_token = alice["session"]["token"].as_str().unwrap().to_owned();
    let bob = sign_up(&app, &base, &c.pk, "bob@example.com").await;
    let bob_id = bob["user"]["id"].as_str().unwrap().to_owned();
    let bob_token = bob["session"]["token"].as_str().unwrap().to_owned();

    let created = call_with(
        &app,
        Method::POST,
        &format!("{base}/organizations"),
        None,
        Some(&c.sk),
        Some(json!({"name": "Acme Research", "createdBy": alice_id})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let org = created.body["id"].as_str().unwrap().to_owned();
    assert!(org.starts_with("org_"));
    assert_eq!(created.body["membership"]["role"], "admin");
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("{base}/organizations"),
            Some(&c.pk),
            None,
            Some(json!({"name": "x"})),
        )
        .await,
        403,
        "forbidden",
    );
    let dup = call_with(
        &app,
        Method::POST,
        &format!("{base}/organizations"),
        None,
        Some(&c.sk),
        Some(json!({"name": "Again", "slug": created.body["slug"]})),
    )
    .await;
    assert_error(&dup, 409, "conflict");

    // Memberships with built-in and custom roles.
    let m = call_with(
        &app,
        Method::POST,
        &format!("{base}/organizations/{org}/memberships"),
        None,
        Some(&c.sk),
        Some(json!({"userId": bob_id, "role": "billing:viewer"})),
    )
    .await;
    assert_eq!(m.status, 201, "{}", m.body);
    let bob_membership = m.body["id"].as_str().unwrap().to_owned();
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("{base}/organizations/{org}/memberships"),
            None,
            Some(&c.sk),
            Some(json!({"userId": bob_id, "role": "member"})),
        )
        .await,
        409,
        "conflict",
    );
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("{base}/organizations/{org}/memberships"),
            None,
            Some(&c.sk),
            Some(json!({"userId": bob_id, "role": "Not A Role"})),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("{base}/organizations/{org}/memberships"),
            None,
            Some(&c.sk),
            Some(json!({"userId": "usr_01h455vb4pex5vsknk084sn02q", "role": "member"})),
        )
        .await,
        404,
        "not_found",
    );
    let listed = call_with(
        &app,
        Method::GET,
        &format!("{base}/organizations/{org}/memberships"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);

    // Switching organization re-issues the token with org and orgRole.
    let switched = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/switch-organization"),
        None,
        Some(&bob_token),
        Some(json!({"organizationId": org})),
    )
    .await;
    assert_eq!(switched.status, 200, "{}", switched.body);
    let jwks = app
        .call(
            Method::GET,
            &format!("{base}/.well-known/jwks.json"),
            None,
            None,
        )
        .await;
    let issuer = format!("{}{base}", app.base);
    let claims = verify_with_jwks(
        switched.body["session"]["token"].as_str().unwrap(),
        &jwks.body,
        &issuer,
        &c.app,
    );
    assert_eq!(
        (claims["org"].clone(), claims["orgRole"].clone()),
        (json!(org), json!("billing:viewer"))
    );
    // Refresh keeps the organization; a role change shows in the next token.
    let patched = call_with(
        &app,
        Method::PATCH,
        &format!("{base}/organizations/{org}/memberships/{bob_membership}"),
        None,
        Some(&c.sk),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(patched.body["role"], "admin");
    let refreshed = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/refresh"),
        Some(&c.pk),
        None,
        Some(json!({"refreshToken": bob["session"]["refreshToken"]})),
    )
    .await;
    let claims = verify_with_jwks(
        refreshed.body["session"]["token"].as_str().unwrap(),
        &jwks.body,
        &issuer,
        &c.app,
    );
    assert_eq!(claims["orgRole"], "admin");
    // An organization the user is not in cannot be chosen.
    let other = call_with(
        &app,
        Method::POST,
        &format!("{base}/organizations"),
        None,
        Some(&c.sk),
        Some(json!({"name": "Other"})),
    )
    .await;
    let other_org = other.body["id"].as_str().unwrap();
    assert_error(
        &call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/switch-organization"),
            None,
            Some(&bob_token),
            Some(json!({"organizationId": other_org})),
        )
        .await,
        404,
        "not_found",
    );
    // Removing the membership takes the organization out of the session at once.
    assert_eq!(
        call_with(
            &app,
            Method::DELETE,
            &format!("{base}/organizations/{org}/memberships/{bob_membership}"),
            None,
            Some(&c.sk),
            None
        )
        .await
        .status,
        204
    );
    let refreshed = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/refresh"),
        Some(&c.pk),
        None,
        Some(json!({"refreshToken": refreshed.body["session"]["refreshToken"]})),
    )
    .await;
    let claims = verify_with_jwks(
        refreshed.body["session"]["token"].as_str().unwrap(),
        &jwks.body,
        &issuer,
        &c.app,
    );
    assert!(claims.get("org").is_none(), "{claims}");

    // Invitations: by email, accepted once, by the addressee only.
    let inv = call_with(
        &app,
        Method::POST,
        &format!("{base}/organizations/{org}/invitations"),
        None,
        Some(&c.sk),
        Some(json!({"email": "Bob@Example.com", "role": "member"})),
    )
    .await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let token = inv.body["token"].as_str().unwrap().to_owned();
    let accept = |bearer: String| {
        let app = &app;
        let base = base.clone();
        let token = token.clone();
        async move {
            call_with(
                app,
                Method::POST,
                &format!("{base}/organizations/invitations/accept"),
                None,
                Some(&bearer),
                Some(json!({"token": token})),
            )
            .await
        }
    };
    assert_error(&accept(alice_token.clone()).await, 404, "not_found");
    let accepted = accept(bob_token.clone()).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(accepted.body["role"], "member");
    assert_error(&accept(bob_token.clone()).await, 404, "not_found");

    // Update and delete the organization.
    let renamed = call_with(
        &app,
        Method::PATCH,
        &format!("{base}/organizations/{org}"),
        None,
        Some(&c.sk),
        Some(json!({"name": "Acme Labs"})),
    )
    .await;
    assert_eq!(renamed.body["name"], "Acme Labs");
    let orgs = call_with(
        &app,
        Method::GET,
        &format!("{base}/organizations?limit=1"),
        None,
        Some(&c.sk),
        None,
    )
    .await;
    assert_eq!(orgs.body["hasMore"], true);
    assert_eq!(
        call_with(
            &app,
            Method::DELETE,
            &format!("{base}/organizations/{org}"),
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
            &format!("{base}/organizations/{org}"),
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
            &format!("{base}/organizations/{org}/memberships"),
            None,
            Some(&c.sk),
            None,
        )
        .await,
        404,
        "not_found",
    );

    // Another application's secret key cannot see these organizations.
    let other_app = customer_app(&app, "Orgs Other").await;
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/organizations/{other_org}"),
            None,
            Some(&other_app.sk),
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
            &format!("/v1/{}/organizations/{other_org}", other_app.app),
            None,
            Some(&other_app.sk),
            None,
        )
        .await,
        404,
        "not_found",
    );
}

async fn monthly_active_users_count_each_user_once(app: TestApp) {
    let c = customer_app(&app, "Mau").await;
    let base = format!("/v1/{}", c.app);
    let usage_path = format!("/control/v1/applications/{}/usage", c.app);
    let zero = app.get(&usage_path, &c.owner_token).await;
    assert_eq!(zero.status, 200, "{}", zero.body);
    assert_eq!(zero.body["monthlyActiveUsers"], 0);
    let month = zero.body["month"].as_str().unwrap().to_owned();
    let ann = sign_up(&app, &base, &c.pk, "ann@example.com").await;
    sign_up(&app, &base, &c.pk, "ben@example.com").await;
    for _ in 0..3 {
        let r = call_with(
            &app,
            Method::POST,
            &format!("{base}/auth/signin"),
            Some(&c.pk),
            None,
            Some(json!({"email": "ann@example.com", "password": "long-password"})),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/refresh"),
        Some(&c.pk),
        None,
        Some(json!({"refreshToken": ann["session"]["refreshToken"]})),
    )
    .await;
    // Users created by the admin API without authenticating are not active.
    call_with(
        &app,
        Method::POST,
        &format!("{base}/users"),
        None,
        Some(&c.sk),
        Some(json!({"email": "idle@example.com"})),
    )
    .await;
    let counted = app
        .get(&format!("{usage_path}?month={month}"), &c.owner_token)
        .await;
    assert_eq!(counted.body["monthlyActiveUsers"], 2, "{}", counted.body);
    let other_month = app
        .get(&format!("{usage_path}?month=2020-01"), &c.owner_token)
        .await;
    assert_eq!(other_month.body["monthlyActiveUsers"], 0);
    assert_error(
        &app.get(&format!("{usage_path}?month=2020-13"), &c.owner_token)
            .await,
        400,
        "invalid_request",
    );
    // A stranger's workspace sees nothing.
    let stranger = app.tenant("Stranger").await;
    assert_error(
        &app.get(&usage_path, &stranger.owner_token).await,
        404,
        "not_found",
    );
}

async fn signing_key_rotation_publishes_before_it_signs(app: TestApp) {
    let c = customer_app(&app, "Rotate").await;
    let base = format!("/v1/{}", c.app);
    let keys_path = format!("/control/v1/applications/{}/signing-keys", c.app);
    let before = sign_up(&app, &base, &c.pk, "old@example.com").await;
    let old_token = before["session"]["token"].as_str().unwrap().to_owned();
    let old_kid = jsonwebtoken::decode_header(&old_token)
        .unwrap()
        .kid
        .unwrap();

    // With a lead time the next key is published at once but does not sign yet.
    let rotated = app
        .post(
            &format!("{keys_path}/rotate"),
            &c.owner_token,
            json!({"activateInSeconds": 2}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(rotated.body.as_array().unwrap().len(), 2);
    assert_error(
        &app.post(&format!("{keys_path}/rotate"), &c.owner_token, json!({}))
            .await,
        409,
        "conflict",
    );
    let jwks = app
        .call(
            Method::GET,
            &format!("{base}/.well-known/jwks.json"),
            None,
            None,
        )
        .await;
    assert_eq!(jwks.body["keys"].as_array().unwrap().len(), 2);
    let during = sign_up(&app, &base, &c.pk, "during@example.com").await;
    let during_kid = jsonwebtoken::decode_header(during["session"]["token"].as_str().unwrap())
        .unwrap()
        .kid
        .unwrap();
    assert_eq!(
        during_kid, old_kid,
        "the next key does not sign before its time"
    );

    app.clock.advance(std::time::Duration::from_millis(2100));
    let after = sign_up(&app, &base, &c.pk, "new@example.com").await;
    let new_token = after["session"]["token"].as_str().unwrap();
    let new_kid = jsonwebtoken::decode_header(new_token).unwrap().kid.unwrap();
    assert_ne!(new_kid, old_kid);
    // The retired key still verifies its live tokens; both are in JWKS.
    let issuer = format!("{}{base}", app.base);
    let jwks = app
        .call(
            Method::GET,
            &format!("{base}/.well-known/jwks.json"),
            None,
            None,
        )
        .await;
    verify_with_jwks(&old_token, &jwks.body, &issuer, &c.app);
    verify_with_jwks(new_token, &jwks.body, &issuer, &c.app);
    assert_eq!(
        call_with(
            &app,
            Method::GET,
            &format!("{base}/me"),
            None,
            Some(&old_token),
            None
        )
        .await
        .status,
        200
    );
    let listed = app.get(&keys_path, &c.owner_token).await;
    assert!(listed.body[0]["retiredAt"].as_str().is_some());
    assert!(listed.body[1]["retiredAt"].is_null());
    assert!(
        !listed.body.to_string().contains("sealed"),
        "no private material"
    );
    // Viewers may not rotate.
    let t = app.tenant("Rotate Viewer").await;
    assert_error(
        &app.post(&format!("{keys_path}/rotate"), &t.owner_token, json!({}))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post(
            &format!("{keys_path}/rotate"),
            &c.owner_token,
            json!({"activateInSeconds": -1}),
        )
        .await,
        400,
        "invalid_request",
    );
}

async fn users_manage_their_own_sessions(app: TestApp) {
    let c = customer_app(&app, "SelfService").await;
    let base = format!("/v1/{}", c.app);
    let first = sign_up(&app, &base, &c.pk, "me@example.com").await;
    let token = first["session"]["token"].as_str().unwrap().to_owned();
    let second = call_with(
        &app,
        Method::POST,
        &format!("{base}/auth/signin"),
        Some(&c.pk),
        None,
        Some(json!({"email": "me@example.com", "password": "long-password"})),
    )
    .await;
    let second_id = second.body["session"]["id"].as_str().unwrap().to_owned();
    let second_token = second.body["session"]["token"].as_str().unwrap().to_owned();
    let mine = call_with(
        &app,
        Method::GET,
        &format!("{base}/me/sessions"),
        None,
        Some(&token),
        None,
    )
    .await;
    assert_eq!(mine.body["data"].as_array().unwrap().len(), 2);
    let other = sign_up(&app, &base, &c.pk, "other@example.com").await;
    let other_session = other["session"]["id"].as_str().unwrap();
    assert_error(
        &call_with(
            &app,
            Method::DELETE,
            &format!("{base}/me/sessions/{other_session}"),
            None,
            Some(&token),
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
            &format!("{base}/me/sessions/{second_id}"),
            None,
            Some(&token),
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
            Some(&second_token),
            None,
        )
        .await,
        401,
        "unauthorized",
    );
    assert_eq!(
        call_with(
            &app,
            Method::GET,
            &format!("{base}/me"),
            None,
            Some(&token),
            None
        )
        .await
        .status,
        200
    );
    // Keys are not access tokens.
    assert_error(
        &call_with(
            &app,
            Method::GET,
            &format!("{base}/me/sessions"),
            None,
            Some(&c.sk),
            None,
        )
        .await,
        401,
        "unauthorized",
    );
}

on_both_backends!(
    organizations_memberships_invitations_and_the_active_organization,
    monthly_active_users_count_each_user_once,
    signing_key_rotation_publishes_before_it_signs,
    users_manage_their_own_sessions,
);
