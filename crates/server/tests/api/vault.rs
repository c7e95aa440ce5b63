//! The credential vault over HTTP: vaults, versioned secrets with check-and-set, who may read
//! what, the audit trail, and envelopes that open only where they were sealed.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

on_both_backends!(
    secrets_are_versioned_checked_and_listed_without_values,
    the_roles_decide_who_reads_values_and_every_read_is_audited,
    stored_values_are_envelopes_that_open_only_where_sealed,
    rotation_rewraps_in_the_background_and_rekey_reseals_every_value,
    destroyed_keys_leave_nothing_that_opens,
    principals_read_only_their_bound_vaults_with_fresh_proofs,
    operators_read_the_values_of_the_vaults_bound_to_them_only,
);

/// The same scenarios with the vault's envelopes in Redis (`AUTHSOME_VAULT_BACKEND=redis`).
mod redis_backend {
    macro_rules! in_redis {
        ($($name:ident),* $(,)?) => {
            $(#[tokio::test]
            async fn $name() {
                if let Some(app) = crate::helpers::spawn_vault_in_redis().await {
                    super::$name(app).await;
                }
            })*
        };
    }

    in_redis!(
        secrets_are_versioned_checked_and_listed_without_values,
        the_roles_decide_who_reads_values_and_every_read_is_audited,
        stored_values_are_envelopes_that_open_only_where_sealed,
        rotation_rewraps_in_the_background_and_rekey_reseals_every_value,
        destroyed_keys_leave_nothing_that_opens,
        principals_read_only_their_bound_vaults_with_fresh_proofs,
        operators_read_the_values_of_the_vaults_bound_to_them_only,
    );
}

async fn put(
    app: &TestApp,
    token: &str,
    vault: &str,
    name: &str,
    body: Value,
    if_match: Option<&str>,
) -> Response {
    let mut request = app
        .client
        .put(format!(
            "{}/control/v1/vaults/{vault}/secrets/{name}",
            app.base
        ))
        .bearer_auth(token)
        .json(&body);
    if let Some(v) = if_match {
        request = request.header("If-Match", v);
    }
    TestApp::read(request.send().await.unwrap()).await
}

async fn vault(app: &TestApp, token: &str, ws: &str, body: Value) -> String {
    let r = app
        .post(&format!("/control/v1/workspaces/{ws}/vaults"), token, body)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_owned()
}

async fn value(app: &TestApp, token: &str, vault: &str, name: &str, query: &str) -> Response {
    app.get(
        &format!("/control/v1/vaults/{vault}/secrets/{name}/value{query}"),
        token,
    )
    .await
}

async fn secrets_are_versioned_checked_and_listed_without_values(app: TestApp) {
    let t = app.tenant("Vaulted").await;
    let tok = &t.owner_token;
    let v = vault(
        &app,
        tok,
        &t.ws,
        json!({"name": "production", "description": "prod"}),
    )
    .await;
    assert!(v.starts_with("vlt_"));
    let dup = app
        .post(
            &format!("/control/v1/workspaces/{}/vaults", t.ws),
            tok,
            json!({"name": "production"}),
        )
        .await;
    assert_error(&dup, 409, "conflict");

    let first = put(
        &app,
        tok,
        &v,
        "DATABASE_URL",
        json!({"value": "postgres://one", "tags": ["db"]}),
        None,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["version"], 1);
    assert!(first.body["id"].as_str().unwrap().starts_with("sec_"));
    assert_eq!(first.body["tags"], json!(["db"]));
    let second = put(
        &app,
        tok,
        &v,
        "DATABASE_URL",
        json!({"value": "postgres://two"}),
        None,
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["version"], 2);
    assert_eq!(second.body["tags"], json!(["db"]), "kept when not given");

    // Check-and-set: a stale If-Match changes nothing.
    let stale = put(
        &app,
        tok,
        &v,
        "DATABASE_URL",
        json!({"value": "lost"}),
        Some("1"),
    )
    .await;
    assert_error(&stale, 412, "precondition_failed");
    let fresh = put(
        &app,
        tok,
        &v,
        "DATABASE_URL",
        json!({"value": "postgres://three"}),
        Some("\"2\""),
    )
    .await;
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    assert_eq!(fresh.body["version"], 3);
    let create_only = put(&app, tok, &v, "NEW_ONE", json!({"value": "x"}), Some("1")).await;
    assert_error(&create_only, 412, "precondition_failed");
    let created = put(&app, tok, &v, "NEW_ONE", json!({"value": "x"}), Some("0")).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_error(
        &put(
            &app,
            tok,
            &v,
            "NEW_ONE",
            json!({"value": "y"}),
            Some("soon"),
        )
        .await,
        400,
        "invalid_request",
    );

    let latest = value(&app, tok, &v, "DATABASE_URL", "").await;
    assert_eq!(latest.status, 200, "{}", latest.body);
    assert_eq!(
        latest.body,
        json!({"name": "DATABASE_URL", "version": 3, "value": "postgres://three"})
    );
    let old = value(&app, tok, &v, "DATABASE_URL", "?version=1").await;
    assert_eq!(old.body["value"], "postgres://one");
    assert_error(
        &value(&app, tok, &v, "DATABASE_URL", "?version=9").await,
        404,
        "not_found",
    );

    // Metadata never carries a value.
    let listed = app
        .get(&format!("/control/v1/vaults/{v}/secrets"), tok)
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
    let meta = app
        .get(&format!("/control/v1/vaults/{v}/secrets/DATABASE_URL"), tok)
        .await;
    assert_eq!(meta.body["version"], 3);
    assert_eq!(meta.body["versions"].as_array().unwrap().len(), 3);
    for body in [&listed.body, &meta.body, &first.body, &fresh.body] {
        assert!(!body.to_string().contains("postgres://"), "{body}");
    }

    // maxVersions prunes the oldest.
    let small = vault(&app, tok, &t.ws, json!({"name": "ci", "maxVersions": 2})).await;
    for n in 1..=3 {
        put(
            &app,
            tok,
            &small,
            "TOKEN",
            json!({"value": format!("t{n}")}),
            None,
        )
        .await;
    }
    let meta = app
        .get(&format!("/control/v1/vaults/{small}/secrets/TOKEN"), tok)
        .await;
    let kept: Vec<u64> = meta.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [2, 3]);
    assert_error(
        &value(&app, tok, &small, "TOKEN", "?version=1").await,
        404,
        "not_found",
    );

    // Soft delete, restore, destroy.
    let path = format!("/control/v1/vaults/{v}/secrets/DATABASE_URL");
    assert_eq!(app.delete(&path, tok).await.status, 204);
    assert_error(
        &value(&app, tok, &v, "DATABASE_URL", "").await,
        404,
        "not_found",
    );
    assert_error(
        &put(&app, tok, &v, "DATABASE_URL", json!({"value": "v"}), None).await,
        409,
        "conflict",
    );
    let restored = app.post(&format!("{path}/restore"), tok, json!({})).await;
    assert_eq!(restored.status, 200, "{}", restored.body);
    assert_eq!(
        value(&app, tok, &v, "DATABASE_URL", "").await.body["version"],
        3
    );
    let destroyed = app
        .post(&format!("{path}/versions/2/destroy"), tok, json!({}))
        .await;
    assert_eq!(destroyed.status, 200, "{}", destroyed.body);
    assert!(destroyed.body["versions"][1]["destroyedAt"].is_string());
    assert_error(
        &value(&app, tok, &v, "DATABASE_URL", "?version=2").await,
        404,
        "not_found",
    );
    assert_eq!(
        value(&app, tok, &v, "DATABASE_URL", "?version=1")
            .await
            .status,
        200
    );
    assert_error(
        &app.post(&format!("{path}/versions/2/destroy"), tok, json!({}))
            .await,
        409,
        "conflict",
    );
    assert_error(
        &app.delete(&format!("/control/v1/vaults/{v}"), tok).await,
        409,
        "conflict",
    );

    // Bad input is a clear 400.
    for (name, body) in [
        ("bad%20name", json!({"value": "x"})),
        ("OK", json!({"value": "x".repeat(64 * 1024 + 1)})),
        ("OK", json!({"value": "x", "tags": ["no spaces"]})),
        ("OK", json!({"value": "x", "unknown": 1})),
    ] {
        assert_error(
            &put(&app, tok, &v, name, body, None).await,
            400,
            "invalid_request",
        );
    }
    assert_error(
        &app.post(
            &format!("/control/v1/workspaces/{}/vaults", t.ws),
            tok,
            json!({"name": "x", "maxVersions": 0}),
        )
        .await,
        400,
        "invalid_request",
    );

    // Another tenant sees nothing of it.
    let other = app.tenant("Elsewhere").await;
    for path in [
        format!("/control/v1/vaults/{v}"),
        format!("/control/v1/vaults/{v}/secrets"),
        format!("/control/v1/vaults/{v}/secrets/DATABASE_URL/value"),
    ] {
        assert_error(&app.get(&path, &other.owner_token).await, 404, "not_found");
    }
    assert_error(
        &put(
            &app,
            &other.owner_token,
            &v,
            "DATABASE_URL",
            json!({"value": "mine"}),
            None,
        )
        .await,
        404,
        "not_found",
    );
    assert_error(
        &app.get("/control/v1/vaults/vlt_bad", tok).await,
        404,
        "not_found",
    );
}

async fn the_roles_decide_who_reads_values_and_every_read_is_audited(app: TestApp) {
    let t = app.tenant("Roles").await;
    let owner = &t.owner_token;
    let v = vault(&app, owner, &t.ws, json!({"name": "shared"})).await;
    put(
        &app,
        owner,
        &v,
        "API_KEY",
        json!({"value": "sk-very-secret"}),
        None,
    )
    .await;
    let mut tokens = Vec::new();
    for role in ["admin", "operator", "viewer", "auditor"] {
        let (_, token) = app
            .add_member(owner, &t.ws, &format!("{role}@roles.test"), role)
            .await;
        tokens.push((role, token));
    }
    for (role, token) in &tokens {
        let read = value(&app, token, &v, "API_KEY", "").await;
        let meta = app
            .get(&format!("/control/v1/vaults/{v}/secrets"), token)
            .await;
        let write = put(
            &app,
            token,
            &v,
            "API_KEY",
            json!({"value": format!("by-{role}")}),
            None,
        )
        .await;
        let made = app
            .post(
                &format!("/control/v1/workspaces/{}/vaults", t.ws),
                token,
                json!({"name": format!("v-{role}")}),
            )
            .await;
        let expected: (u16, u16, u16, u16) = match *role {
            "admin" => (200, 200, 200, 201),
            "operator" => (403, 200, 200, 403),
            "viewer" => (403, 200, 403, 403),
            _ => (403, 403, 403, 403),
        };
        assert_eq!(
            (read.status, meta.status, write.status, made.status),
            expected,
            "{role}: {} {} {} {}",
            read.body,
            meta.body,
            write.body,
            made.body
        );
    }

    let entries = audit_entries(&app, owner, &t.ws).await;
    let reads: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "vault.secret.read")
        .collect();
    assert_eq!(reads.len(), 1, "the admin's read");
    assert_eq!(reads[0]["changes"]["name"], "API_KEY");
    assert_eq!(reads[0]["changes"]["version"], 1);
    let writes = entries
        .iter()
        .filter(|e| e["action"] == "vault.secret.written")
        .count();
    assert_eq!(writes, 3, "the owner's, the admin's and the operator's");
    let denied = entries
        .iter()
        .filter(|e| {
            e["action"] == "permission.denied" && e["changes"]["permission"] == "SecretsReveal"
        })
        .count();
    assert_eq!(denied, 3, "operator, viewer, auditor");
    let all = serde_json::to_string(&entries).unwrap();
    for leaked in ["sk-very-secret", "by-admin", "by-operator"] {
        assert!(!all.contains(leaked), "{leaked} in the audit log");
    }
}

pub(crate) async fn bind(app: &TestApp, token: &str, vault: &str, member: &str) -> Response {
    app.call(
        Method::PUT,
        &format!("/control/v1/vaults/{vault}/operators/{member}"),
        Some(token),
        None,
    )
    .await
}

async fn operators_read_the_values_of_the_vaults_bound_to_them_only(app: TestApp) {
    let t = app.tenant("Bound Operators").await;
    let owner = &t.owner_token;
    let bound = vault(&app, owner, &t.ws, json!({"name": "deploy"})).await;
    let other = vault(&app, owner, &t.ws, json!({"name": "finance"})).await;
    for v in [&bound, &other] {
        put(
            &app,
            owner,
            v,
            "TOKEN",
            json!({"value": format!("in-{v}")}),
            None,
        )
        .await;
    }
    let (op_member, operator) = app
        .add_member(owner, &t.ws, "op@bound.test", "operator")
        .await;
    let (viewer_member, viewer) = app
        .add_member(owner, &t.ws, "viewer@bound.test", "viewer")
        .await;
    let operators = |v: &str| format!("/control/v1/vaults/{v}/operators");
    assert_eq!(
        value(&app, &operator, &bound, "TOKEN", "").await.status,
        403
    );

    let r = bind(&app, owner, &bound, &op_member).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["memberId"], op_member.as_str());
    assert_eq!(
        bind(&app, owner, &bound, &op_member).await.status,
        200,
        "idempotent"
    );
    let read = value(&app, &operator, &bound, "TOKEN", "").await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["value"], format!("in-{bound}"));
    assert_eq!(
        value(&app, &operator, &other, "TOKEN", "").await.status,
        403
    );
    // Binding is for operators, by those who manage vaults, within the workspace.
    assert_error(
        &bind(&app, owner, &bound, &viewer_member).await,
        400,
        "invalid_request",
    );
    assert_eq!(value(&app, &viewer, &bound, "TOKEN", "").await.status, 403);
    assert_error(
        &bind(&app, &operator, &other, &op_member).await,
        403,
        "forbidden",
    );
    assert_error(
        &bind(&app, owner, &bound, "mem_01jd4v0z3c8x2m5q7w9e1r6t0y").await,
        404,
        "not_found",
    );
    let stranger = app.tenant("Unbound").await;
    assert_error(
        &bind(&app, &stranger.owner_token, &bound, &op_member).await,
        404,
        "not_found",
    );
    let listed = app.get(&operators(&bound), &viewer).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);

    let unbound = app
        .delete(&format!("{}/{op_member}", operators(&bound)), owner)
        .await;
    assert_eq!(unbound.status, 204, "{}", unbound.body);
    assert_eq!(
        value(&app, &operator, &bound, "TOKEN", "").await.status,
        403
    );
    assert_error(
        &app.delete(&format!("{}/{op_member}", operators(&bound)), owner)
            .await,
        404,
        "not_found",
    );
    let entries = audit_entries(&app, owner, &t.ws).await;
    for action in ["vault.operator.bound", "vault.operator.unbound"] {
        assert!(entries.iter().any(|e| e["action"] == action), "{action}");
    }
    let reads = entries
        .iter()
        .filter(|e| e["action"] == "vault.secret.read")
        .count();
    assert_eq!(reads, 1, "the bound operator's one read");
}

pub(crate) async fn audit_entries(app: &TestApp, token: &str, ws: &str) -> Vec<Value> {
    app.state.audit.release_folds(true);
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .get(
                &format!("/control/v1/workspaces/{ws}/audit?limit=100{cursor}"),
                token,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.extend(r.body["data"].as_array().unwrap().iter().cloned());
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// Runs one statement on the control-plane database, past the API (as an attacker with the
/// database would).
/// Every live version's envelope, ordered by secret name and version: `(name, version, KEK
/// version, bytes)`, from its row or, when the vault keeps it there, from Redis.
async fn envelopes(app: &TestApp, ws: &str) -> Vec<(String, i64, i64, Vec<u8>)> {
    type Row = (String, i64, i64, Option<Vec<u8>>, Option<String>);
    let sql = format!(
        "SELECT s.name, v.version, v.kek_version, v.envelope, v.envelope_ref \
         FROM vault_secret_versions v JOIN vault_secrets s ON s.id = v.secret_id \
         WHERE v.workspace_id = '{ws}' AND v.destroyed_at IS NULL ORDER BY s.name, v.version"
    );
    let rows: Vec<Row> = if app.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        sqlx::query_as(&sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        sqlx::query_as(&sql).fetch_all(&pool).await.unwrap()
    };
    let mut out = Vec::new();
    for (name, version, kek, inline, reference) in rows {
        let bytes = match (inline, reference, &app.vault_redis) {
            (Some(bytes), None, None) => bytes,
            (None, Some(reference), Some(redis)) => redis_get(redis, &reference).await,
            (inline, reference, redis) => panic!(
                "{name} v{version} is not where the backend keeps it: inline {}, ref {reference:?}, redis {}",
                inline.is_some(),
                redis.is_some()
            ),
        };
        out.push((name, version, kek, bytes));
    }
    out
}

async fn redis_get(redis: &VaultRedis, reference: &str) -> Vec<u8> {
    let mut c = redis
        .client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("GET")
        .arg(format!("{}{reference}", redis.prefix))
        .query_async::<Vec<u8>>(&mut c)
        .await
        .unwrap()
}

/// Replaces the stored envelope of every version of secret `name` with `bytes`, past the API
/// (in the row, or in Redis).
async fn overwrite_envelopes(app: &TestApp, ws: &str, name: &str, bytes: &[u8]) {
    let sql = format!(
        "SELECT v.envelope_ref FROM vault_secret_versions v \
         JOIN vault_secrets s ON s.id = v.secret_id \
         WHERE v.workspace_id = '{ws}' AND s.name = '{name}'"
    );
    if let Some(redis) = &app.vault_redis {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        let refs: Vec<Option<String>> = sqlx::query_scalar(&sql).fetch_all(&pool).await.unwrap();
        let mut c = redis
            .client
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        for reference in refs.into_iter().flatten() {
            redis::cmd("SET")
                .arg(format!("{}{reference}", redis.prefix))
                .arg(bytes)
                .query_async::<()>(&mut c)
                .await
                .unwrap();
        }
        return;
    }
    let update = format!(
        "UPDATE vault_secret_versions SET envelope = $1 WHERE workspace_id = '{ws}' \
         AND secret_id = (SELECT id FROM vault_secrets WHERE name = '{name}' \
         AND workspace_id = '{ws}')"
    );
    if app.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        sqlx::query(&update)
            .bind(bytes)
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        sqlx::query(&update)
            .bind(bytes)
            .execute(&pool)
            .await
            .unwrap();
    }
}

async fn raw(app: &TestApp, sql: &str) -> Vec<Vec<u8>> {
    if app.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        sqlx::query_scalar::<_, Vec<u8>>(sql)
            .fetch_all(&pool)
            .await
            .unwrap()
    } else {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        sqlx::query_scalar::<_, Vec<u8>>(sql)
            .fetch_all(&pool)
            .await
            .unwrap()
    }
}

async fn stored_values_are_envelopes_that_open_only_where_sealed(app: TestApp) {
    let t = app.tenant("Sealed").await;
    let tok = &t.owner_token;
    let v = vault(&app, tok, &t.ws, json!({"name": "sealed"})).await;
    put(
        &app,
        tok,
        &v,
        "ALPHA",
        json!({"value": "alpha-plaintext"}),
        None,
    )
    .await;
    put(
        &app,
        tok,
        &v,
        "BRAVO",
        json!({"value": "bravo-plaintext"}),
        None,
    )
    .await;

    let stored = envelopes(&app, &t.ws).await;
    assert_eq!(stored.len(), 2);
    for (_, _, _, e) in &stored {
        assert!(e.starts_with(b"AV1"));
        let text = String::from_utf8_lossy(e);
        assert!(!text.contains("plaintext"), "a value stored in the clear");
    }
    let keks = raw(&app, "SELECT sealed FROM vault_keks").await;
    assert_eq!(keks.len(), 1, "one key-encryption key for the workspace");

    // ALPHA's envelope copied over BRAVO's row: its AAD names ALPHA, so it does not open.
    let alpha = stored
        .iter()
        .find(|(n, ..)| n == "ALPHA")
        .unwrap()
        .3
        .clone();
    overwrite_envelopes(&app, &t.ws, "BRAVO", &alpha).await;
    let moved = value(&app, tok, &v, "BRAVO", "").await;
    assert_error(&moved, 500, "internal_error");
    assert!(!moved.body.to_string().contains("alpha"), "{}", moved.body);
    assert_eq!(
        value(&app, tok, &v, "ALPHA", "").await.body["value"],
        "alpha-plaintext"
    );
    let entries = audit_entries(&app, tok, &t.ws).await;
    let failed = entries
        .iter()
        .find(|e| e["action"] == "vault.secret.read" && e["outcome"] == "failure")
        .expect("the failed read is audited");
    assert_eq!(failed["changes"]["name"], "BRAVO");

    // A truncated envelope is refused the same way.
    overwrite_envelopes(&app, &t.ws, "ALPHA", &alpha[..3]).await;
    assert_error(
        &value(&app, tok, &v, "ALPHA", "").await,
        500,
        "internal_error",
    );
}

/// Rows of the control-plane database as `(text, bytes, integer)` columns.
async fn rows(app: &TestApp, sql: &str) -> Vec<(String, Option<Vec<u8>>, i64)> {
    if app.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        sqlx::query_as(sql).fetch_all(&pool).await.unwrap()
    }
}

async fn keyring(app: &TestApp, token: &str, ws: &str, action: &str) -> Value {
    let path = format!("/control/v1/workspaces/{ws}/keyring{action}");
    let r = if action.is_empty() {
        app.get(&path, token).await
    } else {
        app.post(&path, token, json!({})).await
    };
    assert_eq!(r.status, 200, "{action}: {}", r.body);
    r.body
}

async fn rotation_rewraps_in_the_background_and_rekey_reseals_every_value(app: TestApp) {
    let t = app.tenant("Rotating").await;
    let tok = &t.owner_token;
    let v = vault(&app, tok, &t.ws, json!({"name": "keys"})).await;
    assert_eq!(
        keyring(&app, tok, &t.ws, "").await["version"],
        0,
        "no key before a secret"
    );
    for (name, value) in [("A", "a1"), ("A", "a2"), ("B", "b1"), ("C", "c1")] {
        put(&app, tok, &v, name, json!({"value": value}), None).await;
    }
    let ring = keyring(&app, tok, &t.ws, "").await;
    assert_eq!(ring["version"], 1);
    assert_eq!(ring["rewrap"], json!({"done": 4, "total": 4}));

    let rotated = keyring(&app, tok, &t.ws, "/rotate").await;
    assert_eq!(rotated["version"], 2);
    assert_eq!(rotated["rewrap"], json!({"done": 0, "total": 4}));
    // Readable throughout, and new writes use the new key at once.
    assert_eq!(
        value(&app, tok, &v, "A", "?version=1").await.body["value"],
        "a1"
    );
    put(&app, tok, &v, "D", json!({"value": "d1"}), None).await;
    assert_eq!(
        keyring(&app, tok, &t.ws, "").await["rewrap"],
        json!({"done": 1, "total": 5})
    );

    let moved = app.state.control.vault_key_work().await.unwrap();
    assert_eq!(moved, 4);
    assert_eq!(
        app.state.control.vault_key_work().await.unwrap(),
        0,
        "nothing left"
    );
    assert_eq!(
        keyring(&app, tok, &t.ws, "").await["rewrap"],
        json!({"done": 5, "total": 5})
    );
    let versions = envelopes(&app, &t.ws).await;
    assert_eq!(versions.len(), 5);
    assert!(versions
        .iter()
        .all(|(_, _, kek, e)| *kek == 2 && e[3..7] == [0, 0, 0, 2]));
    for (name, query, expected) in [
        ("A", "?version=1", "a1"),
        ("A", "", "a2"),
        ("B", "", "b1"),
        ("D", "", "d1"),
    ] {
        assert_eq!(
            value(&app, tok, &v, name, query).await.body["value"],
            expected
        );
    }

    // Rekey: every value sealed again under a fresh data key.
    let before: Vec<Vec<u8>> = versions.iter().map(|(.., e)| e.clone()).collect();
    let asked = keyring(&app, tok, &t.ws, "/rekey").await;
    assert_eq!(asked["rekey"], json!({"done": 0, "total": 5}));
    app.clock.advance(std::time::Duration::from_millis(5));
    assert_eq!(
        app.state
            .control
            .vault_key_work_for(std::time::Duration::from_secs(5))
            .await
            .unwrap(),
        5
    );
    assert_eq!(
        keyring(&app, tok, &t.ws, "").await["rekey"],
        json!({"done": 5, "total": 5})
    );
    let after = envelopes(&app, &t.ws).await;
    assert_eq!(after.len(), 5);
    for (old, (.., new)) in before.iter().zip(&after) {
        // Header and wrapped key aside, the value's nonce and ciphertext are new.
        assert_ne!(old[7 + 72..], new[7 + 72..], "a value kept its old sealing");
    }
    assert_eq!(value(&app, tok, &v, "C", "").await.body["value"], "c1");

    // Who may: admins rotate, viewers do not.
    let (_, viewer) = app
        .add_member(tok, &t.ws, "viewer@rotating.test", "viewer")
        .await;
    assert_error(
        &app.post(
            &format!("/control/v1/workspaces/{}/keyring/rotate", t.ws),
            &viewer,
            json!({}),
        )
        .await,
        403,
        "forbidden",
    );
    let other = app.tenant("NotRotating").await;
    assert_error(
        &app.post(
            &format!("/control/v1/workspaces/{}/keyring/rotate", t.ws),
            &other.owner_token,
            json!({}),
        )
        .await,
        404,
        "not_found",
    );
}

async fn destroyed_keys_leave_nothing_that_opens(app: TestApp) {
    use authsome_domain::id::{VaultId, WorkspaceId};
    use authsome_vault::{Envelope, Kek, SecretContext};

    let t = app.tenant("Shredded").await;
    let tok = &t.owner_token;
    let v = vault(&app, tok, &t.ws, json!({"name": "doomed"})).await;
    put(&app, tok, &v, "ONE", json!({"value": "first secret"}), None).await;
    put(
        &app,
        tok,
        &v,
        "TWO",
        json!({"value": "second secret"}),
        None,
    )
    .await;
    keyring(&app, tok, &t.ws, "/rotate").await;
    put(
        &app,
        tok,
        &v,
        "THREE",
        json!({"value": "third secret"}),
        None,
    )
    .await;
    // A bystander workspace whose keys live on.
    let other = app.tenant("Bystander").await;
    let theirs = vault(&app, &other.owner_token, &other.ws, json!({"name": "safe"})).await;
    put(
        &app,
        &other.owner_token,
        &theirs,
        "ONE",
        json!({"value": "theirs"}),
        None,
    )
    .await;

    let path = format!("/control/v1/workspaces/{}/keyring/destroy", t.ws);
    let (_, admin) = app
        .add_member(tok, &t.ws, "admin@shredded.test", "admin")
        .await;
    assert_error(
        &app.post(&path, &admin, json!({"confirm": "Shredded"}))
            .await,
        403,
        "forbidden",
    );
    assert_error(
        &app.post(&path, tok, json!({"confirm": "shredded"})).await,
        400,
        "invalid_request",
    );
    let destroyed = app.post(&path, tok, json!({"confirm": "Shredded"})).await;
    assert_eq!(destroyed.status, 200, "{}", destroyed.body);
    assert!(destroyed.body["destroyedAt"].is_string());

    for name in ["ONE", "TWO", "THREE"] {
        assert_error(&value(&app, tok, &v, name, "").await, 409, "conflict");
    }
    assert_eq!(
        value(&app, &other.owner_token, &theirs, "ONE", "")
            .await
            .body["value"],
        "theirs"
    );

    // Provably: every key the server still holds (the master key, and every KEK still sealed
    // under it, of any workspace) fails on every shredded envelope.
    let master = app.state.identity.master_key();
    let keks = rows(&app, "SELECT workspace_id, sealed, version FROM vault_keks").await;
    let mine: Vec<_> = keks.iter().filter(|(ws, _, _)| *ws == t.ws).collect();
    assert_eq!(mine.len(), 2);
    assert!(
        mine.iter().all(|(_, sealed, _)| sealed.is_none()),
        "key material left behind"
    );
    let mut held = Vec::new();
    for (ws, sealed, version) in &keks {
        if let Some(sealed) = sealed {
            let ws = WorkspaceId::parse(ws).unwrap();
            held.push(Kek::open(&master, &ws, *version as u32, sealed).unwrap());
        }
    }
    assert!(!held.is_empty(), "the bystander's key is still held");
    let shredded = envelopes(&app, &t.ws).await;
    assert_eq!(shredded.len(), 3);
    let ws = WorkspaceId::parse(&t.ws).unwrap();
    let vault_id = VaultId::parse(&v).unwrap();
    for (name, version, _, envelope) in &shredded {
        let envelope = Envelope::from_bytes(envelope).unwrap();
        let ctx = SecretContext {
            workspace: &ws,
            vault: &vault_id,
            name,
            version: *version as u32,
        };
        for kek in &held {
            assert!(
                envelope.open(kek, ctx).is_err(),
                "{name} opened with a held key"
            );
        }
        // Even a KEK forged from the master key's bytes for this workspace does not open it.
        for kek_version in 1..=3 {
            assert!(envelope
                .open(&Kek::generate(&ws, kek_version), ctx)
                .is_err());
        }
    }

    // The workspace can start over: a new key for what is written next; the rest stays gone.
    put(&app, tok, &v, "FOUR", json!({"value": "after"}), None).await;
    assert_eq!(
        value(&app, tok, &v, "FOUR", "").await.body["value"],
        "after"
    );
    assert_error(&value(&app, tok, &v, "ONE", "").await, 409, "conflict");
    let ring = keyring(&app, tok, &t.ws, "").await;
    assert_eq!(ring["version"], 3);
    assert_eq!(
        app.state.control.vault_key_work().await.unwrap(),
        0,
        "no work on shredded rows"
    );
    let entries = audit_entries(&app, tok, &t.ws).await;
    assert!(entries
        .iter()
        .any(|e| e["action"] == "vault.keyring.destroyed"));
}

/// A machine principal's key and the proofs it signs.
struct Machine {
    key: ed25519_dalek::SigningKey,
    id: String,
    jti: std::cell::Cell<u32>,
}

impl Machine {
    fn jwk(key: &ed25519_dalek::SigningKey) -> Value {
        use base64::Engine;
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        json!({"kty": "OKP", "crv": "Ed25519", "x": x})
    }

    /// A proof for `method` on `path` with `body`, at the server's time moved by `skew`.
    fn proof(&self, app: &TestApp, method: &str, path: &str, body: &[u8], skew: i64) -> String {
        let base = app.state.identity.public_url();
        let iat = app.clock.now().timestamp() + skew;
        self.proof_to(base, iat, method, path, body)
    }

    /// A proof for `method` on `base` + `path` with `body`, issued at `iat`.
    fn proof_to(&self, base: &str, iat: i64, method: &str, path: &str, body: &[u8]) -> String {
        use base64::Engine;
        use ed25519_dalek::Signer;
        use sha2::Digest;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        self.jti.set(self.jti.get() + 1);
        let claims = json!({
            "htm": method,
            "htu": format!("{base}{path}"),
            "iat": iat,
            "jti": format!("proof-{}", self.jti.get()),
            "body_sha256": hex::encode(sha2::Sha256::digest(body)),
        });
        let input = format!(
            "{}.{}",
            b64.encode(json!({"alg": "EdDSA", "kid": self.id}).to_string()),
            b64.encode(claims.to_string())
        );
        format!(
            "{input}.{}",
            b64.encode(self.key.sign(input.as_bytes()).to_bytes())
        )
    }
}

async fn with_proof(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
    proof: &str,
) -> Response {
    with_proof_at(app, &app.base, method, path, body, proof).await
}

async fn with_proof_at(
    app: &TestApp,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
    proof: &str,
) -> Response {
    let mut request = app
        .client
        .request(method, format!("{base}{path}"))
        .header("Authorization", format!("PoP {proof}"));
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    TestApp::read(request.send().await.unwrap()).await
}

async fn principals_read_only_their_bound_vaults_with_fresh_proofs(app: TestApp) {
    let t = app.tenant("Machines").await;
    let tok = &t.owner_token;
    let ci = vault(&app, tok, &t.ws, json!({"name": "ci"})).await;
    let prod = vault(&app, tok, &t.ws, json!({"name": "prod"})).await;
    put(
        &app,
        tok,
        &ci,
        "DEPLOY_TOKEN",
        json!({"value": "ci-token"}),
        None,
    )
    .await;
    put(&app, tok, &prod, "DB", json!({"value": "prod-db"}), None).await;

    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let made = app
        .post(
            &format!("/control/v1/workspaces/{}/principals", t.ws),
            tok,
            json!({"name": "github-deploy", "publicKey": Machine::jwk(&key)}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("prn_"));
    assert_eq!(made.body["publicKeyJwk"], Machine::jwk(&key));
    let machine = Machine {
        key,
        id: id.clone(),
        jti: std::cell::Cell::new(0),
    };
    let bindings = format!("/control/v1/principals/{id}/bindings");
    let bind = |permissions: Value, vault: &str| {
        app.post(
            &bindings,
            tok,
            json!({"vaultId": vault, "permissions": permissions}),
        )
    };
    assert_eq!(bind(json!(["read"]), &ci).await.status, 200);

    let ci_value = format!("/control/v1/vaults/{ci}/secrets/DEPLOY_TOKEN/value");
    let proof = machine.proof(&app, "GET", &ci_value, b"", 0);
    let read = with_proof(&app, Method::GET, &ci_value, None, &proof).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["value"], "ci-token");
    // Each proof once; only the bound vault; only what the binding allows.
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &proof).await,
        401,
        "unauthorized",
    );
    let prod_value = format!("/control/v1/vaults/{prod}/secrets/DB/value");
    let p = machine.proof(&app, "GET", &prod_value, b"", 0);
    assert_error(
        &with_proof(&app, Method::GET, &prod_value, None, &p).await,
        404,
        "not_found",
    );
    let write_path = format!("/control/v1/vaults/{ci}/secrets/DEPLOY_TOKEN");
    let body = json!({"value": "rotated-by-ci"});
    let bytes = body.to_string();
    let p = machine.proof(&app, "PUT", &write_path, bytes.as_bytes(), 0);
    assert_error(
        &with_proof(&app, Method::PUT, &write_path, Some(body.clone()), &p).await,
        404,
        "not_found",
    );
    assert_eq!(bind(json!(["read", "write"]), &ci).await.status, 200);
    let p = machine.proof(&app, "PUT", &write_path, bytes.as_bytes(), 0);
    let wrote = with_proof(&app, Method::PUT, &write_path, Some(body.clone()), &p).await;
    assert_eq!(wrote.status, 200, "{}", wrote.body);
    assert_eq!(wrote.body["version"], 2);
    assert_eq!(wrote.body["versions"][1]["createdBy"], id.as_str());
    // Team routes stay team routes.
    let p = machine.proof(&app, "GET", &format!("/control/v1/vaults/{ci}"), b"", 0);
    assert_error(
        &with_proof(
            &app,
            Method::GET,
            &format!("/control/v1/vaults/{ci}"),
            None,
            &p,
        )
        .await,
        401,
        "unauthorized",
    );

    // A proof for another body, URL or method, out of its window, or by another key: refused.
    let p = machine.proof(&app, "PUT", &write_path, b"{}", 0);
    assert_error(
        &with_proof(&app, Method::PUT, &write_path, Some(body.clone()), &p).await,
        401,
        "unauthorized",
    );
    let p = machine.proof(&app, "GET", &prod_value, b"", 0);
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &p).await,
        401,
        "unauthorized",
    );
    let p = machine.proof(&app, "POST", &ci_value, b"", 0);
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &p).await,
        401,
        "unauthorized",
    );
    let p = machine.proof(&app, "GET", &ci_value, b"", -61);
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &p).await,
        401,
        "unauthorized",
    );
    let p = machine.proof(&app, "GET", &ci_value, b"", 0);
    app.clock.advance(std::time::Duration::from_secs(61));
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &p).await,
        401,
        "unauthorized",
    );
    let impostor = Machine {
        key: ed25519_dalek::SigningKey::from_bytes(&[8; 32]),
        id: id.clone(),
        jti: std::cell::Cell::new(100),
    };
    let p = impostor.proof(&app, "GET", &ci_value, b"", 0);
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &p).await,
        401,
        "unauthorized",
    );
    let stranger = Machine {
        key: ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        id: "prn_01jd4v0z3c8x2m5q7w9e1r6t0y".into(),
        jti: std::cell::Cell::new(0),
    };
    let p = stranger.proof(&app, "GET", &ci_value, b"", 0);
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &p).await,
        401,
        "unauthorized",
    );
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, "not.a.jws").await,
        401,
        "unauthorized",
    );

    // Bindings never cross workspaces; bad keys are a clear 400.
    let other = app.tenant("OtherMachines").await;
    let theirs = vault(
        &app,
        &other.owner_token,
        &other.ws,
        json!({"name": "theirs"}),
    )
    .await;
    assert_error(&bind(json!(["read"]), &theirs).await, 404, "not_found");
    assert_error(
        &app.get(&format!("/control/v1/principals/{id}"), &other.owner_token)
            .await,
        404,
        "not_found",
    );
    for key in [
        json!({"kty": "OKP", "crv": "Ed25519", "x": "short"}),
        json!({"kty": "RSA", "n": "x"}),
    ] {
        assert_error(
            &app.post(
                &format!("/control/v1/workspaces/{}/principals", t.ws),
                tok,
                json!({"name": "bad", "publicKey": key}),
            )
            .await,
            400,
            "invalid_request",
        );
    }

    // The trail: the principal's read and write, and its refused proofs; never a value.
    let entries = audit_entries(&app, tok, &t.ws).await;
    let by_machine: Vec<&Value> = entries
        .iter()
        .filter(|e| e["actor"]["id"] == id.as_str())
        .collect();
    assert!(by_machine
        .iter()
        .any(|e| e["action"] == "vault.secret.read" && e["actor"]["type"] == "principal"));
    assert!(by_machine
        .iter()
        .any(|e| e["action"] == "vault.secret.written"));
    assert!(
        by_machine
            .iter()
            .filter(|e| e["action"] == "vault.principal.auth_failed")
            .count()
            >= 5
    );
    assert!(!serde_json::to_string(&entries)
        .unwrap()
        .contains("ci-token"));

    // Unbound, the vault is gone for it at once.
    assert_eq!(bind(json!([]), &ci).await.status, 200);
    let p = machine.proof(&app, "GET", &ci_value, b"", 0);
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &p).await,
        404,
        "not_found",
    );

    // Deleted, its proofs stop at once.
    assert_eq!(
        app.delete(&format!("/control/v1/principals/{id}"), tok)
            .await
            .status,
        204
    );
    let p = machine.proof(&app, "GET", &ci_value, b"", 0);
    assert_error(
        &with_proof(&app, Method::GET, &ci_value, None, &p).await,
        401,
        "unauthorized",
    );
}

/// Principals and bindings are cached per replica; a change on one replica reaches the others'
/// caches over the invalidation bus within moments, not after the cache's age limit.
#[tokio::test]
async fn an_unbound_or_deleted_principal_is_refused_on_every_replica_within_moments() {
    let Some((app, second)) = spawn_two_replicas_with_redis().await else {
        return;
    };
    let t = app.tenant("Replicated Machines").await;
    let tok = &t.owner_token;
    let ci = vault(&app, tok, &t.ws, json!({"name": "ci"})).await;
    put(&app, tok, &ci, "TOKEN", json!({"value": "v1"}), None).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
    let made = app
        .post(
            &format!("/control/v1/workspaces/{}/principals", t.ws),
            tok,
            json!({"name": "deployer", "publicKey": Machine::jwk(&key)}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let id = made.body["id"].as_str().unwrap().to_owned();
    let machine = Machine {
        key,
        id: id.clone(),
        jti: std::cell::Cell::new(0),
    };
    let bindings = format!("/control/v1/principals/{id}/bindings");
    let bind = |permissions: Value| {
        app.post(
            &bindings,
            tok,
            json!({"vaultId": ci, "permissions": permissions}),
        )
    };
    assert_eq!(bind(json!(["read"])).await.status, 200);
    let path = format!("/control/v1/vaults/{ci}/secrets/TOKEN/value");
    let read_on_second = || async {
        let iat = chrono::Utc::now().timestamp();
        let proof = machine.proof_to(&second, iat, "GET", &path, b"");
        with_proof_at(&app, &second, Method::GET, &path, None, &proof).await
    };
    let until = async |status: u16, what: &str| {
        let started = std::time::Instant::now();
        loop {
            let read = read_on_second().await;
            if read.status == status {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{what}: the second replica still answers {} (its cache would keep it 30 s)",
                read.status
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    // The second replica reads (and caches the principal and its binding) twice.
    for _ in 0..2 {
        let read = read_on_second().await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["value"], "v1");
    }
    assert_eq!(bind(json!([])).await.status, 200);
    until(404, "unbound").await;
    assert_eq!(bind(json!(["read"])).await.status, 200);
    until(200, "bound again").await;
    let deleted = app
        .delete(&format!("/control/v1/principals/{id}"), tok)
        .await;
    assert_eq!(deleted.status, 204);
    until(401, "deleted").await;
}
