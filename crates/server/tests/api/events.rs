//! Every write announces one typed domain event, stamped with who did it and the request id.

use authsome_domain::event::{DomainEvent, EventActor};
use reqwest::Method;
use serde_json::json;

use crate::customer_auth::call_with;
use crate::helpers::*;

fn drain(rx: &mut tokio::sync::broadcast::Receiver<DomainEvent>) -> Vec<DomainEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn writes_emit_typed_events_with_actor_and_request_id() {
    let app = spawn_app().await;
    let t = app.tenant("Events").await;
    let mut rx = app.state.events.subscribe();

    let created = app
        .post(
            &format!("/control/v1/workspaces/{}/applications", t.ws),
            &t.owner_token,
            json!({"name": "Evented", "environment": "development"}),
        )
        .await;
    let app_id = created.body["id"].as_str().unwrap().to_owned();
    let request_id = created.headers["x-authsome-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let events = drain(&mut rx);
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    // The creation is committed first, then provisioning marks the application active.
    assert_eq!(
        actions,
        vec!["application.created", "application.provisioned"]
    );
    let e = &events[0];
    assert!(matches!(e.actor, EventActor::Account(_)));
    assert_eq!(e.request_id.as_deref(), Some(request_id.as_str()));
    assert_eq!(
        e.workspace_id.as_ref().map(|w| w.to_string()),
        Some(t.ws.clone())
    );
    assert_eq!(
        e.application_id.as_ref().map(|a| a.to_string()),
        Some(app_id.clone())
    );
    assert_eq!(e.target.as_deref(), Some(app_id.as_str()));
    assert_eq!(events[1].actor, EventActor::System);

    let (key_id, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    let (_, pk) = app.key(&t.owner_token, &app_id, "publishable").await;
    let events = drain(&mut rx);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].action, "application.key.created");
    assert_eq!(events[0].target.as_deref(), Some(key_id.as_str()));

    // Customer API: the key or the user is the actor.
    let signup = call_with(
        &app,
        Method::POST,
        &format!("/v1/{app_id}/auth/signup"),
        Some(&pk),
        None,
        Some(json!({"email": "ev@example.com", "password": "long-password"})),
    )
    .await;
    let user_id = signup.body["user"]["id"].as_str().unwrap().to_owned();
    let created_user = call_with(
        &app,
        Method::POST,
        &format!("/v1/{app_id}/users"),
        None,
        Some(&sk),
        Some(json!({"email": "admin-made@example.com"})),
    )
    .await;
    let events = drain(&mut rx);
    let actions: Vec<_> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, vec!["user.signed_up", "user.created"]);
    assert_eq!(events[0].actor, EventActor::User(user_id.parse().unwrap()));
    assert_eq!(events[1].actor, EventActor::Key(key_id.parse().unwrap()));
    assert_eq!(
        events[1].target.as_deref(),
        created_user.body["id"].as_str()
    );
    assert_eq!(
        events[1].request_id.as_deref(),
        created_user.headers["x-authsome-request-id"].to_str().ok()
    );
    // Reads emit nothing; failed writes emit nothing.
    app.get(
        &format!("/control/v1/applications/{app_id}"),
        &t.owner_token,
    )
    .await;
    app.post(
        &format!("/control/v1/applications/{app_id}/keys"),
        &t.owner_token,
        json!({"type": "nope"}),
    )
    .await;
    assert!(drain(&mut rx).is_empty());
    // No event carries a secret.
    for e in events {
        let text = serde_json::to_string(&e).unwrap();
        assert!(!text.contains(&sk) && !text.contains(&pk) && !text.contains("long-password"));
    }
}
