//! A workspace's usage by month over HTTP: monthly active users per application and in total
//! (each user once a month), requests and rotations; the users counted, page by page; who may
//! read it, and that another workspace cannot.

use reqwest::Method;
use serde_json::{json, Value};

use crate::customer_auth::{call_with, customer_app};
use crate::helpers::*;

async fn sign_up(app: &TestApp, c: &crate::customer_auth::Customer, email: &str) -> String {
    let r = call_with(
        app,
        Method::POST,
        &format!("/v1/{}/auth/signup", c.app),
        Some(&c.pk),
        None,
        Some(json!({"email": email, "password": "correct horse battery"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["user"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn usage_counts_each_user_once_a_month_and_lists_them() {
    let app = spawn_app().await;
    let c = customer_app(&app, "Usage Co").await;
    let owner = c.owner_token.clone();
    // A second application in the same workspace.
    let second = app.application(&owner, &c.ws, "staging").await;
    let (_, second_pk) = app.key(&owner, &second, "publishable").await;
    let second = crate::customer_auth::Customer {
        ws: c.ws.clone(),
        app: second.clone(),
        pk: second_pk,
        sk: String::new(),
        owner_token: owner.clone(),
    };
    let mut first_users = vec![
        sign_up(&app, &c, "a@usage.test").await,
        sign_up(&app, &c, "b@usage.test").await,
        sign_up(&app, &c, "c@usage.test").await,
    ];
    first_users.sort();
    sign_up(&app, &second, "z@usage.test").await;
    // Signing in again this month counts nobody twice.
    let again = call_with(
        &app,
        Method::POST,
        &format!("/v1/{}/auth/signin", c.app),
        Some(&c.pk),
        None,
        Some(json!({"email": "a@usage.test", "password": "correct horse battery"})),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.body);

    let path = format!("/control/v1/workspaces/{}/usage", c.ws);
    let usage = app.get(&path, &owner).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    let month = authsome_domain::identity::month_of(app.clock.now());
    assert_eq!(usage.body["month"], month.as_str());
    assert_eq!(usage.body["totals"]["mau"], 4);
    let per_app: Vec<(String, u64, u64)> = usage.body["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["applicationId"].as_str().unwrap().to_owned(),
                a["mau"].as_u64().unwrap(),
                a["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    let first = per_app.iter().find(|a| a.0 == c.app).unwrap();
    let other = per_app.iter().find(|a| a.0 == second.app).unwrap();
    assert_eq!((first.1, other.1), (3, 1));
    assert!(
        first.2 >= 4,
        "the sign-ups and the sign-in were requests: {}",
        first.2
    );
    assert_eq!(
        usage.body["totals"]["requests"].as_u64().unwrap(),
        first.2 + other.2
    );
    // An earlier month counted nobody.
    let before = app.get(&format!("{path}?month=2020-01"), &owner).await;
    assert_eq!(before.body["totals"]["mau"], 0);
    assert_error(
        &app.get(&format!("{path}?month=2020-13"), &owner).await,
        400,
        "invalid_request",
    );

    // The users counted, page by page: exactly the ones who signed up.
    let users = format!(
        "/control/v1/workspaces/{}/usage/mau/users?applicationId={}&limit=2",
        c.ws, c.app
    );
    let page = app.get(&users, &owner).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut listed: Vec<String> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userId"].as_str().unwrap().to_owned())
        .collect();
    let cursor = page.body["nextCursor"].as_str().unwrap().to_owned();
    let rest = app.get(&format!("{users}&cursor={cursor}"), &owner).await;
    listed.extend(
        rest.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["userId"].as_str().unwrap().to_owned()),
    );
    assert!(rest.body["nextCursor"].is_null());
    assert_eq!(listed, first_users);

    // Without an application, every application's, by application then user, page by page
    // (a page may end in one application and the next begin in another).
    let everyone = format!("/control/v1/workspaces/{}/usage/mau/users?limit=2", c.ws);
    let mut all: Vec<(String, String)> = Vec::new();
    let mut next = everyone.clone();
    for _ in 0..3 {
        let page = app.get(&next, &owner).await;
        assert_eq!(page.status, 200, "{}", page.body);
        all.extend(page.body["data"].as_array().unwrap().iter().map(|u| {
            (
                u["applicationId"].as_str().unwrap().to_owned(),
                u["userId"].as_str().unwrap().to_owned(),
            )
        }));
        match page.body["nextCursor"].as_str() {
            Some(cursor) => next = format!("{everyone}&cursor={cursor}"),
            None => break,
        }
    }
    let mut expected: Vec<(String, String)> = first_users
        .iter()
        .map(|u| (c.app.clone(), u.clone()))
        .collect();
    let theirs_users = app
        .get(
            &format!(
                "/control/v1/workspaces/{}/usage/mau/users?applicationId={}",
                c.ws, second.app
            ),
            &owner,
        )
        .await;
    let z = theirs_users.body["data"][0]["userId"].as_str().unwrap();
    expected.push((second.app.clone(), z.to_owned()));
    expected.sort();
    assert_eq!(all, expected, "each counted user once, in order");
    // A cursor of one application's listing is not one of this listing.
    assert_error(
        &app.get(&format!("{everyone}&cursor={cursor}"), &owner)
            .await,
        400,
        "invalid_request",
    );

    // Every member but an auditor; nobody from another workspace; not another's application.
    let (_, viewer) = app
        .add_member(&owner, &c.ws, "viewer@usage.test", "viewer")
        .await;
    assert_eq!(app.get(&path, &viewer).await.status, 200);
    let (_, auditor) = app
        .add_member(&owner, &c.ws, "auditor@usage.test", "auditor")
        .await;
    assert_error(&app.get(&path, &auditor).await, 403, "forbidden");
    let outsider = customer_app(&app, "Usage Outsider").await;
    assert_error(
        &app.get(&path, &outsider.owner_token).await,
        404,
        "not_found",
    );
    let theirs = format!(
        "/control/v1/workspaces/{}/usage/mau/users?applicationId={}",
        c.ws, outsider.app
    );
    assert_error(&app.get(&theirs, &owner).await, 404, "not_found");
    let body: Value = app
        .get(
            &format!(
                "/control/v1/workspaces/{}/usage/mau/users?applicationId={}",
                outsider.ws, outsider.app
            ),
            &outsider.owner_token,
        )
        .await
        .body;
    assert_eq!(body["data"].as_array().unwrap().len(), 0, "{body}");
}
