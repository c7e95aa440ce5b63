use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn login_me_logout() {
    let app = spawn_app().await;
    let wrong = app
        .call(
            Method::POST,
            "/control/v1/auth/login",
            None,
            Some(json!({"email": app.root_email, "password": "not the password"})),
        )
        .await;
    assert_error(&wrong, 401, "unauthorized");
    let unknown = app
        .call(
            Method::POST,
            "/control/v1/auth/login",
            None,
            Some(json!({"email": "nobody@nowhere.test", "password": "not the password"})),
        )
        .await;
    assert_error(&unknown, 401, "unauthorized");
    assert_eq!(
        wrong.body["error"]["message"], unknown.body["error"]["message"],
        "no enumeration"
    );

    let r = app
        .call(
            Method::POST,
            "/control/v1/auth/login",
            None,
            Some(json!({"email": "ROOT@platform.test", "password": app.root_password})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cst_"));
    assert_eq!(r.body["user"]["email"], "root@platform.test");
    assert_eq!(r.body["user"]["memberships"][0]["role"], "owner");
    assert!(r.body["expiresAt"].as_str().is_some());

    let me = app.get("/control/v1/auth/me", &token).await;
    assert_eq!(me.status, 200);
    assert_eq!(
        me.body["memberships"][0]["workspaceId"],
        app.root_ws.as_str()
    );
    let logout = app
        .call(Method::POST, "/control/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(logout.status, 204);
    assert_error(
        &app.get("/control/v1/auth/me", &token).await,
        401,
        "unauthorized",
    );
    assert_error(
        &app.get("/control/v1/workspaces", &token).await,
        401,
        "unauthorized",
    );
    // A management key has no account.
    assert_error(
        &app.get("/control/v1/auth/me", &app.root_key).await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn invitations_set_a_password_once() {
    let app = spawn_app().await;
    let root = app.root_token().await;
    let ws = &app.root_ws;
    let r = app
        .post(
            &format!("/control/v1/workspaces/{ws}/members"),
            &root,
            json!({"email": "Ada@Example.com", "role": "viewer"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["email"], "ada@example.com");
    assert_eq!(r.body["status"], "invited");
    let token = r.body["invitation"]["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ivt_"));
    // The invited person cannot log in before accepting.
    let early = app
        .call(
            Method::POST,
            "/control/v1/auth/login",
            None,
            Some(json!({"email": "ada@example.com", "password": "whatever-long"})),
        )
        .await;
    assert_error(&early, 401, "unauthorized");
    let accept =
        |password: &str| json!({"token": token, "password": password, "name": "Ada Lovelace"});
    let short = app
        .call(
            Method::POST,
            "/control/v1/auth/accept-invitation",
            None,
            Some(accept("short")),
        )
        .await;
    assert_error(&short, 400, "invalid_request");
    let ok = app
        .call(
            Method::POST,
            "/control/v1/auth/accept-invitation",
            None,
            Some(accept("analytical engine")),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        (ok.body["status"].clone(), ok.body["name"].clone()),
        (json!("active"), json!("Ada Lovelace"))
    );
    let again = app
        .call(
            Method::POST,
            "/control/v1/auth/accept-invitation",
            None,
            Some(accept("analytical engine")),
        )
        .await;
    assert_error(&again, 404, "not_found");
    let bogus = app
        .call(
            Method::POST,
            "/control/v1/auth/accept-invitation",
            None,
            Some(json!({"token": "ivt_nope", "password": "long enough pw"})),
        )
        .await;
    assert_error(&bogus, 404, "not_found");
    let ada = app.login("ada@example.com", "analytical engine").await;
    let ws_view = app.get(&format!("/control/v1/workspaces/{ws}"), &ada).await;
    assert_eq!(ws_view.body["role"], "viewer");
    // Inviting the same person again is a conflict.
    let dup = app
        .post(
            &format!("/control/v1/workspaces/{ws}/members"),
            &root,
            json!({"email": "ada@example.com", "role": "admin"}),
        )
        .await;
    assert_error(&dup, 409, "conflict");
}

#[tokio::test]
async fn an_existing_account_accepts_with_its_password() {
    let app = spawn_app().await;
    let t1 = app.tenant("One").await;
    let t2 = app.tenant("Two").await;
    // The owner of One is invited to Two: accepting needs their existing password.
    let r = app
        .post(
            &format!("/control/v1/workspaces/{}/members", t2.ws),
            &t2.owner_token,
            json!({"email": t1.owner_email, "role": "operator"}),
        )
        .await;
    // The inviter (not a platform operator) never sees the token.
    assert!(r.body["invitation"].get("token").is_none(), "{}", r.body);
    assert_eq!(r.body["invitation"]["delivery"], "serverLog");
    let token = app.invitation_token(&r.body).await;
    let wrong = app
        .call(
            Method::POST,
            "/control/v1/auth/accept-invitation",
            None,
            Some(json!({"token": token, "password": "someone else's password"})),
        )
        .await;
    assert_error(&wrong, 401, "unauthorized");
    let right = app
        .call(
            Method::POST,
            "/control/v1/auth/accept-invitation",
            None,
            Some(json!({"token": token, "password": format!("pw-{}-long-enough", t1.owner_email)})),
        )
        .await;
    assert_eq!(right.status, 200, "{}", right.body);
    let list = app.get("/control/v1/workspaces", &t1.owner_token).await;
    let roles: Vec<_> = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["role"].clone())
        .collect();
    assert_eq!(roles, vec![json!("owner"), json!("operator")]);
}

#[tokio::test]
async fn a_workspace_keeps_its_last_owner_and_admins_do_not_touch_owners() {
    let app = spawn_app().await;
    let t = app.tenant("Solo").await;
    let ws = &t.ws;
    let members = app
        .get(
            &format!("/control/v1/workspaces/{ws}/members"),
            &t.owner_token,
        )
        .await;
    let owner_id = members.body["data"][0]["id"].as_str().unwrap().to_owned();
    let demote = app
        .patch(
            &format!("/control/v1/workspaces/{ws}/members/{owner_id}"),
            &t.owner_token,
            json!({"role": "admin"}),
        )
        .await;
    assert_error(&demote, 409, "conflict");
    let leave = app
        .delete(
            &format!("/control/v1/workspaces/{ws}/members/{owner_id}"),
            &t.owner_token,
        )
        .await;
    assert_error(&leave, 409, "conflict");

    let (admin_id, admin) = app
        .add_member(&t.owner_token, ws, "admin@solo.test", "admin")
        .await;
    let touch_owner = app
        .patch(
            &format!("/control/v1/workspaces/{ws}/members/{owner_id}"),
            &admin,
            json!({"role": "viewer"}),
        )
        .await;
    assert_error(&touch_owner, 403, "forbidden");
    let remove_owner = app
        .delete(
            &format!("/control/v1/workspaces/{ws}/members/{owner_id}"),
            &admin,
        )
        .await;
    assert_error(&remove_owner, 403, "forbidden");
    let add_owner = app
        .post(
            &format!("/control/v1/workspaces/{ws}/members"),
            &admin,
            json!({"email": "x@solo.test", "role": "owner"}),
        )
        .await;
    assert_error(&add_owner, 403, "forbidden");
    let self_promote = app
        .patch(
            &format!("/control/v1/workspaces/{ws}/members/{admin_id}"),
            &admin,
            json!({"role": "owner"}),
        )
        .await;
    assert_error(&self_promote, 403, "forbidden");
    // The owner promotes the admin, then may step down.
    let promoted = app
        .patch(
            &format!("/control/v1/workspaces/{ws}/members/{admin_id}"),
            &t.owner_token,
            json!({"role": "owner"}),
        )
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    let stepped_down = app
        .patch(
            &format!("/control/v1/workspaces/{ws}/members/{owner_id}"),
            &t.owner_token,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(stepped_down.body["role"], "viewer");
    // A viewer may still leave on their own.
    let left = app
        .delete(
            &format!("/control/v1/workspaces/{ws}/members/{owner_id}"),
            &t.owner_token,
        )
        .await;
    assert_eq!(left.status, 204);
    assert_error(
        &app.get(&format!("/control/v1/workspaces/{ws}"), &t.owner_token)
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn repeated_failures_lock_the_account_for_a_while() {
    let app = spawn_app().await;
    let attempt = |password: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/control/v1/auth/login",
                None,
                Some(json!({"email": app.root_email, "password": password})),
            )
            .await
        }
    };
    for n in 0..5 {
        assert_error(
            &attempt(format!("wrong guess {n}")).await,
            401,
            "unauthorized",
        );
    }
    // Locked: even the right password is refused, with a Retry-After.
    let locked = attempt(app.root_password.clone()).await;
    assert_error(&locked, 429, "rate_limit_exceeded");
    let retry: u64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Unknown emails are throttled the same way, so the lock reveals nothing.
    for n in 0..5 {
        let r = app
            .call(
                Method::POST,
                "/control/v1/auth/login",
                None,
                Some(json!({"email": "ghost@nowhere.test", "password": format!("guess {n}")})),
            )
            .await;
        assert_error(&r, 401, "unauthorized");
    }
    let r = app
        .call(
            Method::POST,
            "/control/v1/auth/login",
            None,
            Some(json!({"email": "ghost@nowhere.test", "password": "guess"})),
        )
        .await;
    assert_error(&r, 429, "rate_limit_exceeded");
    // After the lock the right password works and clears the count.
    app.clock.advance(std::time::Duration::from_millis(2100));
    assert_eq!(attempt(app.root_password.clone()).await.status, 200);
    assert_error(&attempt("wrong again".into()).await, 401, "unauthorized");
}
