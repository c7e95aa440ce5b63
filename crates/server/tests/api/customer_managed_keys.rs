//! Customer-managed keys (enterprise): a workspace's key-encryption keys wrapped by the
//! customer's AWS KMS key (through `moto_server`, the real JSON 1.1 + SigV4 protocol), every
//! data key rewrapped under them in the background, and KMS out of reach stopping reads once
//! the cached key ages out.

use authsome_connect::aws::Kms;
use authsome_testkit::moto::Moto;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::providers::aws;

async fn set_key(app: &TestApp, token: &str, ws: &str, key: Value) -> Response {
    app.call(
        Method::PUT,
        &format!("/control/v1/workspaces/{ws}/keyring/kms"),
        Some(token),
        Some(json!({"keyId": key})),
    )
    .await
}

async fn put_secret(app: &TestApp, token: &str, vault: &str, name: &str) -> Response {
    app.call(
        Method::PUT,
        &format!("/control/v1/vaults/{vault}/secrets/{name}"),
        Some(token),
        Some(json!({"value": format!("value-of-{name}")})),
    )
    .await
}

async fn drain(app: &TestApp) {
    while app.state.control.vault_key_work().await.unwrap() > 0 {}
}

#[tokio::test]
async fn a_customer_kms_key_wraps_the_workspace_keys_and_its_absence_stops_reads() {
    let Some(moto) = Moto::start() else { return };
    let endpoint = moto.url.clone();
    let app = spawn_configured(move |s| s.aws = Some(aws(&endpoint))).await;
    let t = app.tenant("Customer Keys").await;
    let owner = &t.owner_token;
    let kms = Kms::new(aws(&moto.url));
    let arn = kms
        .call("CreateKey", "us-east-1", r#"{"Description":"customer"}"#)
        .await
        .unwrap()["KeyMetadata"]["Arn"]
        .as_str()
        .unwrap()
        .to_owned();

    // Enterprise only.
    assert_error(
        &set_key(&app, owner, &t.ws, json!(arn)).await,
        402,
        "payment_required",
    );
    let upgraded = app
        .patch(
            &format!("/control/v1/admin/workspaces/{}", t.ws),
            &app.root_key,
            json!({"plan": "enterprise"}),
        )
        .await;
    assert_eq!(upgraded.status, 200, "{}", upgraded.body);

    let vault = app
        .post(
            &format!("/control/v1/workspaces/{}/vaults", t.ws),
            owner,
            json!({"name": "prod"}),
        )
        .await;
    let vault = vault.body["id"].as_str().unwrap().to_owned();
    for name in ["A", "B", "C"] {
        assert_eq!(put_secret(&app, owner, &vault, name).await.status, 201);
    }

    // Owners only, a real ARN, a key the deployment may use.
    let (_, admin) = app
        .add_member(owner, &t.ws, "admin@customer-keys.test", "admin")
        .await;
    assert_error(
        &set_key(&app, &admin, &t.ws, json!(arn)).await,
        403,
        "forbidden",
    );
    assert_error(
        &set_key(&app, owner, &t.ws, json!("alias/mine")).await,
        400,
        "invalid_request",
    );
    let missing = set_key(
        &app,
        owner,
        &t.ws,
        json!("arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"),
    )
    .await;
    assert_error(&missing, 400, "invalid_request");
    assert!(missing.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("NotFoundException"));

    let set = set_key(&app, owner, &t.ws, json!(arn)).await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(
        (set.body["version"].as_u64(), set.body["kmsKeyId"].as_str()),
        (Some(2), Some(arn.as_str()))
    );
    assert_eq!(set.body["rewrap"], json!({"done": 0, "total": 3}));
    drain(&app).await;
    let keyring = app
        .get(&format!("/control/v1/workspaces/{}/keyring", t.ws), owner)
        .await;
    assert_eq!(
        keyring.body["rewrap"],
        json!({"done": 3, "total": 3}),
        "{}",
        keyring.body
    );

    // The stored key is KMS ciphertext that opens only in its context.
    let (sealed, key_id) = stored_kek(&app, 2).await;
    assert_eq!(key_id.as_deref(), Some(arn.as_str()));
    let context = |ws: &str, version: &str| {
        std::collections::BTreeMap::from([
            ("authsome:workspace".to_owned(), ws.to_owned()),
            ("authsome:kek-version".to_owned(), version.to_owned()),
        ])
    };
    assert_eq!(
        kms.decrypt(&arn, None, &context(&t.ws, "2"), &sealed)
            .await
            .unwrap()
            .len(),
        32
    );
    assert!(kms
        .decrypt(&arn, None, &context(&t.ws, "3"), &sealed)
        .await
        .is_err());
    for name in ["A", "B", "C"] {
        let read = app
            .get(
                &format!("/control/v1/vaults/{vault}/secrets/{name}/value"),
                owner,
            )
            .await;
        assert_eq!(
            read.body["value"],
            format!("value-of-{name}"),
            "{}",
            read.body
        );
    }

    // Back to the master key, and to the customer's key again: rewrapped each time.
    let back = set_key(&app, owner, &t.ws, Value::Null).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert!(back.body.get("kmsKeyId").is_none());
    drain(&app).await;
    assert_eq!(stored_kek(&app, 3).await.1, None);
    let again = set_key(&app, owner, &t.ws, json!(arn)).await;
    assert_eq!(again.body["version"], 4);
    drain(&app).await;
    // Rotation keeps the customer's key.
    let rotated = app
        .post(
            &format!("/control/v1/workspaces/{}/keyring/rotate", t.ws),
            owner,
            json!({}),
        )
        .await;
    assert_eq!(
        (
            rotated.body["version"].as_u64(),
            rotated.body["kmsKeyId"].as_str()
        ),
        (Some(5), Some(arn.as_str()))
    );
    drain(&app).await;
    assert_eq!(put_secret(&app, owner, &vault, "D").await.status, 201);

    // KMS out of reach: served while the opened key is cached, then 503 and an audited
    // failure, never a fallback.
    drop(moto);
    let read = app
        .get(
            &format!("/control/v1/vaults/{vault}/secrets/A/value"),
            owner,
        )
        .await;
    assert_eq!(read.status, 200, "cached: {}", read.body);
    app.clock.advance(std::time::Duration::from_secs(301));
    let refused = app
        .get(
            &format!("/control/v1/vaults/{vault}/secrets/A/value"),
            owner,
        )
        .await;
    assert_error(&refused, 503, "service_unavailable");
    assert_error(
        &put_secret(&app, owner, &vault, "E").await,
        503,
        "service_unavailable",
    );
    let entries = crate::vault::audit_entries(&app, owner, &t.ws).await;
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "vault.secret.read" && e["outcome"] == "failure"),
        "the failed read is audited"
    );
    assert!(entries
        .iter()
        .any(|e| e["action"] == "vault.keyring.customer_key_set"));
}

async fn stored_kek(app: &TestApp, version: i64) -> (Vec<u8>, Option<String>) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(&app.db_url).await.unwrap();
    sqlx::query_as("SELECT sealed, kms_key_id FROM vault_keks WHERE version = $1")
        .bind(version)
        .fetch_one(&mut c)
        .await
        .unwrap()
}
