//! Application databases: provisioned with the application (retried when that fails), gone
//! when the application is purged after its undelete window.

use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_storage::app::AppDatabases;
use reqwest::Method;
use serde_json::json;

use crate::customer_auth::call_with;
use crate::helpers::*;

#[tokio::test]
async fn failed_provisioning_is_recorded_and_retried() {
    let app = spawn_app().await;
    let t = app.tenant("Retry").await;
    let apps_dir = app.apps_dir.clone().unwrap();
    // Something in the way of the databases' directory: provisioning cannot succeed.
    std::fs::create_dir_all(apps_dir.parent().unwrap()).unwrap();
    std::fs::write(&apps_dir, b"not a directory").unwrap();
    let created = app
        .post(
            &format!("/control/v1/workspaces/{}/applications", t.ws),
            &t.owner_token,
            json!({"name": "Blocked", "environment": "development"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["status"], "provisioning");
    assert_eq!(created.body["provisionAttempts"], 1);
    assert!(created.body["provisionError"]
        .as_str()
        .unwrap()
        .contains("cannot create"));
    let id = created.body["id"].as_str().unwrap().to_owned();
    let (_, pk) = app.key(&t.owner_token, &id, "publishable").await;
    let signup = call_with(
        &app,
        Method::POST,
        &format!("/v1/{id}/auth/signup"),
        Some(&pk),
        None,
        Some(json!({"email": "early@example.com", "password": "long-password"})),
    )
    .await;
    assert_error(&signup, 503, "service_unavailable");
    assert!(signup.headers.get("retry-after").is_some());

    // Clear the way; after the backoff the maintenance loop finishes the job.
    std::fs::remove_file(&apps_dir).unwrap();
    app.clock.advance(std::time::Duration::from_millis(2100));
    app.state.control.maintain().await.unwrap();
    let got = app
        .get(&format!("/control/v1/applications/{id}"), &t.owner_token)
        .await;
    assert_eq!(got.body["status"], "active", "{}", got.body);
    assert!(got.body.get("provisionError").is_none());
    let signup = call_with(
        &app,
        Method::POST,
        &format!("/v1/{id}/auth/signup"),
        Some(&pk),
        None,
        Some(json!({"email": "early@example.com", "password": "long-password"})),
    )
    .await;
    assert_eq!(signup.status, 201, "{}", signup.body);
}

async fn purge_removes_the_database(app: TestApp) {
    let t = app.tenant("Purge").await;
    let id = app.application(&t.owner_token, &t.ws, "development").await;
    let (_, pk) = app.key(&t.owner_token, &id, "publishable").await;
    let signup = call_with(
        &app,
        Method::POST,
        &format!("/v1/{id}/auth/signup"),
        Some(&pk),
        None,
        Some(json!({"email": "gone@example.com", "password": "long-password"})),
    )
    .await;
    assert_eq!(signup.status, 201);
    let app_id: ApplicationId = id.parse().unwrap();
    let exists = |app: &TestApp| {
        let app_id = app_id.clone();
        let apps_dir = app.apps_dir.clone();
        async move {
            match apps_dir {
                Some(dir) => dir.join(format!("{app_id}.db")).exists(),
                None => {
                    let name = AppDatabases::database_name(&app_id);
                    let mut conn: sqlx::PgConnection =
                        sqlx::Connection::connect(&authsome_testkit::admin_url())
                            .await
                            .unwrap();
                    // A database of its own, or (schema isolation) a role of its own.
                    let database = sqlx::query_scalar::<_, i32>(
                        "SELECT 1 FROM pg_database WHERE datname = $1",
                    )
                    .bind(&name)
                    .fetch_optional(&mut conn)
                    .await
                    .unwrap();
                    let role =
                        sqlx::query_scalar::<_, i32>("SELECT 1 FROM pg_roles WHERE rolname = $1")
                            .bind(AppDatabases::schema_role(&app_id))
                            .fetch_optional(&mut conn)
                            .await
                            .unwrap();
                    database.is_some() || role.is_some()
                }
            }
        }
    };
    assert!(exists(&app).await);
    assert_eq!(
        app.delete(&format!("/control/v1/applications/{id}"), &t.owner_token)
            .await
            .status,
        200
    );
    // Within the window nothing is removed.
    app.state.control.maintain().await.unwrap();
    assert!(exists(&app).await);
    // Move the window's end into the past, as seven days would.
    let ws: WorkspaceId = t.ws.parse().unwrap();
    let store = app.state.control.store();
    let mut record = store.application(&ws, &app_id).await.unwrap().unwrap();
    record.purge_at = Some(authsome_domain::now() - chrono::Duration::seconds(1));
    store
        .update_application(&record, &authsome_storage::outbox::Outbox::empty())
        .await
        .unwrap();
    app.state.control.maintain().await.unwrap();
    assert!(!exists(&app).await, "the database is dropped");
    assert_error(
        &app.get(&format!("/control/v1/applications/{id}"), &t.owner_token)
            .await,
        404,
        "not_found",
    );
    assert_error(
        &app.post(
            &format!("/control/v1/applications/{id}/restore"),
            &t.owner_token,
            json!({}),
        )
        .await,
        404,
        "not_found",
    );
}

on_both_backends!(purge_removes_the_database);
