//! The audit log over HTTP: coverage of each audited action (exactly one entry with the right
//! fields, no secret anywhere), role access, offline verification of the export and its
//! tamper detection, tampering with stored rows, proofs checked by a second RFC 6962
//! implementation written here, checkpoint-key rotation, and a 100,000-entry streamed export.

use authsome_audit::note::NoteVerifier;
use authsome_audit::verify::{verify_export, VerifyError};
use authsome_domain::event::DomainEvent;
use authsome_domain::id::WorkspaceId;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::customer_auth::call_with;
use crate::helpers::*;

on_both_backends!(
    each_action_is_one_entry_with_its_fields_and_no_secret,
    only_owners_admins_and_auditors_read_the_log,
    exports_verify_offline_and_tampering_is_named,
    tampering_in_the_database_is_named,
    proofs_agree_with_an_independent_rfc6962_implementation,
    rotated_checkpoint_keys_keep_old_checkpoints_verifiable,
    retention_prunes_bodies_and_the_rest_still_verifies,
    a_write_whose_audit_entry_cannot_be_stored_does_not_happen,
    outbox_rows_left_by_a_crash_land_exactly_once,
    a_restarted_server_is_ready_only_with_what_was_left_in_its_outbox,
    an_audit_read_shows_rows_not_handed_over_yet,
);

/// Every entry of the workspace's log, oldest first, through the paginated API.
async fn all_entries(app: &TestApp, token: &str, ws: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = app
            .get(
                &format!("/control/v1/workspaces/{ws}/audit?limit=100{query}{cursor}"),
                token,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        out.extend(r.body["data"].as_array().unwrap().iter().cloned());
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    out.reverse();
    out
}

async fn text(app: &TestApp, path: &str, token: &str) -> (u16, String) {
    let r = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn request_id(r: &Response) -> String {
    r.headers["x-authsome-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn one<'a>(entries: &'a [Value], action: &str) -> &'a Value {
    let found: Vec<_> = entries.iter().filter(|e| e["action"] == action).collect();
    assert_eq!(found.len(), 1, "{action}: {found:?}");
    found[0]
}

async fn each_action_is_one_entry_with_its_fields_and_no_secret(app: TestApp) {
    let t = app.tenant("Audited").await;
    let ws = &t.ws;
    let created = app
        .post(
            &format!("/control/v1/workspaces/{ws}/applications"),
            &t.owner_token,
            json!({"name": "Audited app", "environment": "development"}),
        )
        .await;
    assert_eq!(created.status, 201);
    let app_id = created.body["id"].as_str().unwrap().to_owned();
    let create_request = request_id(&created);
    let (key_id, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    let (_, pk) = app.key(&t.owner_token, &app_id, "publishable").await;
    let rolled = app
        .post(
            &format!("/control/v1/applications/{app_id}/keys/{key_id}/roll"),
            &t.owner_token,
            json!({}),
        )
        .await;
    assert_eq!(rolled.status, 201, "{}", rolled.body);
    let new_sk = rolled.body["secret"].as_str().unwrap().to_owned();
    let new_key_id = rolled.body["id"].as_str().unwrap().to_owned();
    let revoked = app
        .delete(
            &format!("/control/v1/applications/{app_id}/keys/{new_key_id}"),
            &t.owner_token,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);

    // The customer API: sign-up, sign-in, a failed sign-in with a typed email to hide.
    let password = "correct horse battery staple 42";
    let email = "ada@audited.example";
    let signed_up = call_with(
        &app,
        Method::POST,
        &format!("/v1/{app_id}/auth/signup"),
        Some(&pk),
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(signed_up.status, 201, "{}", signed_up.body);
    let signed_in = call_with(
        &app,
        Method::POST,
        &format!("/v1/{app_id}/auth/signin"),
        Some(&pk),
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let access = signed_in.body["session"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = signed_in.body["session"]["refreshToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let typo_email = "ada-typo@audited.example";
    let wrong_password = "a wrong password typed here";
    let failed = call_with(
        &app,
        Method::POST,
        &format!("/v1/{app_id}/auth/signin"),
        Some(&pk),
        None,
        Some(json!({"email": typo_email, "password": wrong_password})),
    )
    .await;
    assert_eq!(failed.status, 401);

    // A viewer is denied a write: recorded as a denial.
    let (viewer_id, viewer) = app
        .add_member(&t.owner_token, ws, "viewer@audited.test", "viewer")
        .await;
    let denied = app
        .post(
            &format!("/control/v1/workspaces/{ws}/applications"),
            &viewer,
            json!({"name": "Not allowed", "environment": "development"}),
        )
        .await;
    assert_eq!(denied.status, 403);
    // A publishable key on the admin API: a denial too, by that key.
    let refused = call_with(
        &app,
        Method::GET,
        &format!("/v1/{app_id}/users"),
        None,
        Some(&pk),
        None,
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    // More writes, each audited once.
    // Updates record what they changed: plain values as they are, free-form objects as the
    // keys that changed (never their values), a person's email and name as HMACs.
    let metadata_value = "raw-metadata-value-4921";
    let renamed = app
        .patch(
            &format!("/control/v1/workspaces/{ws}"),
            &t.owner_token,
            json!({"name": "Audited renamed", "slug": slug_of(&app, ws, &t.owner_token).await,
                   "metadata": {"crm": metadata_value}}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let r = app
        .patch(
            &format!("/control/v1/applications/{app_id}"),
            &t.owner_token,
            json!({"name": "Audited app renamed", "config": {"hook": metadata_value}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A platform operator's change of plan (the KYC status sent is the current one).
    let root = app.root_token().await;
    let r = app
        .patch(
            &format!("/control/v1/admin/workspaces/{ws}"),
            &root,
            json!({"plan": "pro", "kycStatus": renamed.body["kycStatus"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let new_email = "ada-renamed@audited.example";
    let new_name = "Ada Lovelace-Renamed";
    let r = app
        .patch(
            &format!("/control/v1/workspaces/{ws}/members/{viewer_id}"),
            &t.owner_token,
            json!({"role": "auditor"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .delete(
            &format!("/control/v1/workspaces/{ws}/members/{viewer_id}"),
            &t.owner_token,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let user_id = signed_up.body["user"]["id"].as_str().unwrap().to_owned();
    let r = app
        .post(
            &format!("/v1/{app_id}/users/{user_id}/disable"),
            &sk,
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = app
        .patch(
            &format!("/v1/{app_id}/users/{user_id}"),
            &sk,
            json!({"email": new_email, "name": new_name,
                   "privateMetadata": {"ssn": metadata_value}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let org = app
        .post(
            &format!("/v1/{app_id}/organizations"),
            &sk,
            json!({"name": "Audited org"}),
        )
        .await;
    assert_eq!(org.status, 201, "{}", org.body);
    let org_id = org.body["id"].as_str().unwrap().to_owned();
    let r = app
        .patch(
            &format!("/v1/{app_id}/organizations/{org_id}"),
            &sk,
            json!({"name": "Audited org renamed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let entries = all_entries(&app, &t.owner_token, ws, "").await;
    let updated = one(&entries, "workspace.updated");
    assert_eq!(updated["target"], ws.as_str());
    // The slug sent was the current one: not a change.
    assert_eq!(
        updated["changes"],
        json!({"name": "Audited renamed", "metadata": {"keys": ["crm"]}})
    );
    assert_eq!(
        one(&entries, "application.updated")["changes"],
        json!({"name": "Audited app renamed", "config": {"keys": ["hook"]}})
    );
    let admin: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "admin.workspace.updated")
        .collect();
    assert_eq!(admin.len(), 1, "{admin:?}");
    assert_eq!(admin[0]["changes"], json!({"plan": "pro"}));
    assert_eq!(
        one(&entries, "organization.updated")["changes"],
        json!({"name": "Audited org renamed"})
    );
    let user_updated = one(&entries, "user.updated");
    assert_eq!(
        user_updated["changes"]["privateMetadata"],
        json!({"keys": ["ssn"]})
    );
    for (field, value) in [("email", new_email), ("name", new_name)] {
        let hashed = app
            .post(
                &format!("/control/v1/workspaces/{ws}/audit/hash"),
                &t.owner_token,
                json!({ "value": value }),
            )
            .await;
        assert_eq!(hashed.status, 200, "{}", hashed.body);
        assert_eq!(
            user_updated["changes"][field], hashed.body["hmac"],
            "{field}"
        );
    }
    assert_eq!(
        one(&entries, "workspace.member.role_changed")["changes"]["role"],
        "auditor"
    );
    // (The platform operator who set the tenant up left it first.)
    let removed = entries
        .iter()
        .filter(|e| e["action"] == "workspace.member.removed" && e["target"] == viewer_id.as_str());
    assert_eq!(removed.count(), 1);
    let disabled = one(&entries, "user.disabled");
    assert_eq!(disabled["target"], user_id.as_str());
    assert_eq!(disabled["actor"]["type"], "key");
    assert_eq!(
        one(&entries, "organization.created")["target"],
        org.body["id"]
    );
    let scope_denial: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "permission.denied" && e["changes"]["scope"] == "users:read")
        .collect();
    assert_eq!(scope_denial.len(), 1, "{entries:?}");
    assert_eq!(scope_denial[0]["applicationId"], app_id.as_str());
    let c = one(&entries, "application.created");
    assert_eq!(c["workspaceId"], ws.as_str());
    assert_eq!(c["applicationId"], app_id.as_str());
    assert_eq!(c["target"], app_id.as_str());
    assert_eq!(c["outcome"], "success");
    assert_eq!(c["requestId"], create_request.as_str());
    assert_eq!(c["actor"]["type"], "account");
    assert!(c["actor"]["id"].as_str().unwrap().starts_with("acc_"));
    assert_eq!(c["actor"]["ip"], "127.0.0.1");
    assert_eq!(c["actor"]["userAgent"], crate::helpers::USER_AGENT);
    assert!(c["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(
        one(&entries, "application.key.rolled")["target"],
        key_id.as_str()
    );
    assert_eq!(
        one(&entries, "application.key.revoked")["target"],
        new_key_id.as_str()
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "application.key.created")
            .count(),
        2
    );
    let up = one(&entries, "user.signed_up");
    assert_eq!(up["actor"]["type"], "user");
    assert_eq!(up["applicationId"], app_id.as_str());
    assert_eq!(one(&entries, "user.signed_in")["outcome"], "success");
    let f = one(&entries, "user.sign_in_failed");
    assert_eq!(f["outcome"], "failure");
    // Nobody is signed in yet: the actor is the publishable key the attempt came through.
    assert_eq!(f["actor"]["type"], "key");
    assert_eq!(f["changes"]["reason"], "bad_credentials");
    // The typed email is stored only as this workspace's HMAC, which the API reproduces.
    let hashed = app
        .post(
            &format!("/control/v1/workspaces/{ws}/audit/hash"),
            &t.owner_token,
            json!({"value": typo_email}),
        )
        .await;
    assert_eq!(hashed.status, 200, "{}", hashed.body);
    assert_eq!(f["changes"]["email"], hashed.body["hmac"]);
    assert!(f["changes"]["email"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    let d: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "permission.denied" && e["changes"]["role"] == "viewer")
        .collect();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["outcome"], "denied");
    assert!(entries
        .iter()
        .any(|e| e["action"] == "account.signed_in" && e["workspaceId"] == ws.as_str()));
    // Indices run from 0 without gaps, each entry chained to the one before.
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(e["index"], i as u64);
    }

    // No secret anywhere in what is stored: every raw value used above, searched for in every
    // stored entry (the export is every stored body).
    let (status, export) = text(
        &app,
        &format!("/control/v1/workspaces/{ws}/audit/export"),
        &t.owner_token,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(export.lines().count(), entries.len());
    for secret in [
        sk.as_str(),
        new_sk.as_str(),
        pk.as_str(),
        password,
        wrong_password,
        typo_email,
        access.as_str(),
        refresh.as_str(),
        t.owner_token.as_str(),
        viewer.as_str(),
        metadata_value,
        new_email,
        new_name,
    ] {
        assert!(!export.contains(secret), "the audit log holds a secret");
    }
}

/// The workspace's current slug (sent back unchanged in an update).
async fn slug_of(app: &TestApp, ws: &str, token: &str) -> String {
    let r = app
        .get(&format!("/control/v1/workspaces/{ws}"), token)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["slug"].as_str().unwrap().to_owned()
}

async fn only_owners_admins_and_auditors_read_the_log(app: TestApp) {
    let t = app.tenant("Roles audit").await;
    let ws = &t.ws;
    let path = format!("/control/v1/workspaces/{ws}/audit");
    for (role, status) in [
        ("admin", 200),
        ("auditor", 200),
        ("operator", 403),
        ("viewer", 403),
    ] {
        let (_, token) = app
            .add_member(
                &t.owner_token,
                ws,
                &format!("{role}@roles-audit.test"),
                role,
            )
            .await;
        for p in [
            path.clone(),
            format!("{path}/export"),
            format!("{path}/checkpoints/latest"),
            format!("{path}/keys"),
            format!("{path}/verify"),
        ] {
            let (got, body) = text(&app, &p, &token).await;
            assert_eq!(got, status, "{role} {p}: {body}");
        }
    }
    assert_eq!(app.get(&path, &t.owner_token).await.status, 200);
    // Someone else's workspace does not exist for the caller.
    let other = app.tenant("Other audit").await;
    let r = app.get(&path, &other.owner_token).await;
    assert_error(&r, 404, "not_found");
    // Denials are themselves audited.
    let entries = all_entries(&app, &t.owner_token, ws, "&outcome=denied").await;
    assert!(entries.len() >= 2, "{entries:?}");
    assert!(entries.iter().all(|e| e["action"] == "permission.denied"));
    // Filters: action prefix, actor, bad values.
    let accounts = all_entries(&app, &t.owner_token, ws, "&action=workspace.member.").await;
    assert!(!accounts.is_empty());
    assert!(accounts.iter().all(|e| e["action"]
        .as_str()
        .unwrap()
        .starts_with("workspace.member.")));
    let actor = accounts[0]["actor"]["id"].as_str().unwrap().to_owned();
    let by_actor = all_entries(&app, &t.owner_token, ws, &format!("&actor={actor}")).await;
    assert!(by_actor.iter().all(|e| e["actor"]["id"] == actor.as_str()));
    let r = app
        .get(&format!("{path}?outcome=maybe"), &t.owner_token)
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = app
        .get(&format!("{path}/export?format=xml"), &t.owner_token)
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = app
        .get(&format!("{path}/proof?index=5&treeSize=2"), &t.owner_token)
        .await;
    assert_error(&r, 400, "invalid_request");
    let r = app
        .get(
            &format!("{path}/proof?index=0&treeSize=999999"),
            &t.owner_token,
        )
        .await;
    assert_error(&r, 400, "invalid_request");
}

/// A workspace with some history; returns (tenant, export, checkpoint, keys).
async fn history(app: &TestApp, name: &str) -> (Tenant, String, String, Vec<NoteVerifier>) {
    let t = app.tenant(name).await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    for _ in 0..3 {
        app.key(&t.owner_token, &app_id, "secret").await;
    }
    let base = format!("/control/v1/workspaces/{}/audit", t.ws);
    let (_, checkpoint) = text(app, &format!("{base}/checkpoints/latest"), &t.owner_token).await;
    let (_, export) = text(app, &format!("{base}/export"), &t.owner_token).await;
    let (_, keys) = text(app, &format!("{base}/keys"), &t.owner_token).await;
    let keys = keys
        .lines()
        .map(|k| NoteVerifier::parse(k).unwrap())
        .collect();
    (t, export, checkpoint, keys)
}

fn verify(
    lines: &[&str],
    checkpoints: &[String],
    keys: &[NoteVerifier],
) -> Result<u64, VerifyError> {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    verify_export(text.as_bytes(), checkpoints, keys).map(|r| r.entries)
}

fn failing(r: Result<u64, VerifyError>) -> u64 {
    match r {
        Err(VerifyError::Entry {
            index: Some(index), ..
        }) => index,
        other => panic!("expected a named entry, got {other:?}"),
    }
}

async fn exports_verify_offline_and_tampering_is_named(app: TestApp) {
    let (t, export, checkpoint, keys) = history(&app, "Verified").await;
    let lines: Vec<&str> = export.lines().collect();
    assert!(lines.len() >= 8, "{export}");
    let cps = vec![checkpoint.clone()];
    assert_eq!(verify(&lines, &cps, &keys).unwrap(), lines.len() as u64);
    // The checkpoint names this workspace's log.
    let (text_part, _) = authsome_audit::note::open(&checkpoint, &keys).unwrap();
    assert!(text_part.starts_with("127.0.0.1:"), "{text_part}");
    assert!(text_part
        .lines()
        .next()
        .unwrap()
        .ends_with(&format!("/audit/{}", t.ws)));

    // Changed: a field of entry 3.
    let mut changed = lines.clone();
    let altered = changed[3].replace("\"outcome\":\"success\"", "\"outcome\":\"failure\"");
    assert_ne!(altered, changed[3]);
    changed[3] = &altered;
    assert_eq!(failing(verify(&changed, &cps, &keys)), 3);
    // Deleted: entry 4.
    let mut deleted = lines.clone();
    deleted.remove(4);
    assert_eq!(failing(verify(&deleted, &cps, &keys)), 5);
    // Reordered: 2 and 3 swapped.
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert_eq!(failing(verify(&swapped, &cps, &keys)), 3);
    // Inserted: a copy of entry 1 after entry 1.
    let mut inserted = lines.clone();
    inserted.insert(2, lines[1]);
    assert_eq!(failing(verify(&inserted, &cps, &keys)), 1);
    // A checkpoint signed by another key is refused.
    let stranger = authsome_audit::NoteSigner::new("127.0.0.1/audit", &[9; 32]).unwrap();
    assert!(matches!(
        verify(&lines, &cps, &[stranger.verifier()]),
        Err(VerifyError::Checkpoint { .. })
    ));
}

async fn tamper(app: &TestApp, sql: &str, ws: &str, index: i64) {
    if app.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        sqlx::query(sql)
            .bind(ws)
            .bind(index)
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        sqlx::query(sql)
            .bind(ws)
            .bind(index)
            .execute(&pool)
            .await
            .unwrap();
    }
}

async fn tampering_in_the_database_is_named(app: TestApp) {
    let (t, export, _, _) = history(&app, "Tampered").await;
    let path = format!("/control/v1/workspaces/{}/audit/verify", t.ws);
    let ok = app.get(&path, &t.owner_token).await;
    assert_eq!(ok.body["valid"], true, "{}", ok.body);
    assert!(ok.body["entries"].as_u64().unwrap() >= export.lines().count() as u64);
    assert!(ok.body["checkpoints"].as_u64().unwrap() >= 1);

    // A body rewritten in place.
    tamper(
        &app,
        "UPDATE audit_entries SET body = REPLACE(body, '\"outcome\":\"success\"', '\"outcome\":\"failure\"') \
         WHERE workspace_id = $1 AND idx = $2",
        &t.ws,
        2,
    )
    .await;
    let r = app.get(&path, &t.owner_token).await;
    assert_eq!(r.body["valid"], false, "{}", r.body);
    assert_eq!(r.body["failure"]["index"], 2, "{}", r.body);
    let reason = r.body["failure"]["reason"].as_str().unwrap();
    assert!(reason.contains("altered"), "{reason}");
}

async fn retention_prunes_bodies_and_the_rest_still_verifies(app: TestApp) {
    let (t, export, first_checkpoint, _) = history(&app, "Retained").await;
    let total = export.lines().count();
    // Five entries are eight days old: past the free plan's seven.
    tamper(
        &app,
        "UPDATE audit_entries SET at = at - 691200000 WHERE workspace_id = $1 AND idx < $2",
        &t.ws,
        5,
    )
    .await;
    assert_eq!(
        app.state.audit.prune(authsome_domain::now()).await.unwrap(),
        5
    );
    let base = format!("/control/v1/workspaces/{}/audit", t.ws);
    let listed = all_entries(&app, &t.owner_token, &t.ws, "").await;
    assert_eq!(
        listed[0]["index"], 5,
        "pruned entries are gone from the listing"
    );
    let (_, export) = text(&app, &format!("{base}/export"), &t.owner_token).await;
    assert!(export.lines().next().unwrap().contains("\"index\":5,"));
    let (_, checkpoint) = text(&app, &format!("{base}/checkpoints/latest"), &t.owner_token).await;
    let (_, keys) = text(&app, &format!("{base}/keys"), &t.owner_token).await;
    let keys: Vec<NoteVerifier> = keys
        .lines()
        .map(|k| NoteVerifier::parse(k).unwrap())
        .collect();
    let prefix = app.get(&format!("{base}/prefix"), &t.owner_token).await;
    assert_eq!(prefix.body["treeSize"], 5, "{}", prefix.body);
    let peaks: Vec<[u8; 32]> = prefix.body["peaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(decode)
        .collect();
    let range = authsome_audit::CompactRange::from_peaks(5, peaks).unwrap();
    // The old checkpoint (signed before pruning) and the new one both verify from the prefix.
    let report = authsome_audit::verify::verify_export_from(
        export.as_bytes(),
        &[first_checkpoint, checkpoint],
        &keys,
        Some(&range),
    )
    .unwrap();
    assert!(report.entries as usize >= total);
    assert_eq!(report.checkpoints.len(), 2);
    let verified = app.get(&format!("{base}/verify"), &t.owner_token).await;
    assert_eq!(verified.body["valid"], true, "{}", verified.body);

    // On the pro plan eight days old is kept.
    let root = app.root_token().await;
    let r = app
        .patch(
            &format!("/control/v1/admin/workspaces/{}", t.ws),
            &root,
            json!({"plan": "pro"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    tamper(
        &app,
        "UPDATE audit_entries SET at = at - 691200000 WHERE workspace_id = $1 AND idx < $2",
        &t.ws,
        8,
    )
    .await;
    assert_eq!(
        app.state.audit.prune(authsome_domain::now()).await.unwrap(),
        0
    );
}

async fn tampering_with_a_deleted_row_is_named(app: TestApp) {
    let (t, _, _, _) = history(&app, "Deleted row").await;
    let path = format!("/control/v1/workspaces/{}/audit/verify", t.ws);
    tamper(
        &app,
        "DELETE FROM audit_entries WHERE workspace_id = $1 AND idx = $2",
        &t.ws,
        1,
    )
    .await;
    let r = app.get(&path, &t.owner_token).await;
    assert_eq!(r.body["valid"], false, "{}", r.body);
    assert_eq!(r.body["failure"]["index"], 2, "{}", r.body);
    assert!(r.body["failure"]["reason"]
        .as_str()
        .unwrap()
        .contains("entry 1 is missing"));
}

#[tokio::test]
async fn a_deleted_row_is_named_on_sqlite() {
    tampering_with_a_deleted_row_is_named(spawn_app().await).await;
}

#[tokio::test]
async fn a_deleted_row_is_named_on_postgres() {
    if let Some(app) = spawn_postgres().await {
        tampering_with_a_deleted_row_is_named(app).await;
    }
}

// --- A second RFC 6962 implementation, independent of authsome-audit's: the recursive
// definitions of RFC 6962 §2.1 on leaf data, and proof checking by recomputing the root
// (RFC 6962 §2.1.1's audit path walked from the bottom with explicit subtree sizes).

fn sha(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn mth(data: &[Vec<u8>]) -> [u8; 32] {
    match data.len() {
        0 => sha(&[]),
        1 => sha(&[&[0], &data[0]]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            sha(&[&[1], &mth(&data[..k]), &mth(&data[k..])])
        }
    }
}

fn path(m: usize, data: &[Vec<u8>]) -> Vec<[u8; 32]> {
    let n = data.len();
    if n <= 1 {
        return vec![];
    }
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    if m < k {
        let mut p = path(m, &data[..k]);
        p.push(mth(&data[k..]));
        p
    } else {
        let mut p = path(m - k, &data[k..]);
        p.push(mth(&data[..k]));
        p
    }
}

fn subproof(m: usize, data: &[Vec<u8>], b: bool) -> Vec<[u8; 32]> {
    let n = data.len();
    if m == n {
        return if b { vec![] } else { vec![mth(data)] };
    }
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    if m <= k {
        let mut p = subproof(m, &data[..k], b);
        p.push(mth(&data[k..]));
        p
    } else {
        let mut p = subproof(m - k, &data[k..], false);
        p.push(mth(&data[..k]));
        p
    }
}

fn decode(v: &Value) -> [u8; 32] {
    B64.decode(v.as_str().unwrap()).unwrap().try_into().unwrap()
}

async fn proofs_agree_with_an_independent_rfc6962_implementation(app: TestApp) {
    let (t, export, checkpoint, keys) = history(&app, "Proven").await;
    let data: Vec<Vec<u8>> = export.lines().map(|l| l.as_bytes().to_vec()).collect();
    let n = data.len();
    // The signed root is MTH over the export's lines.
    let (cp_text, _) = authsome_audit::note::open(&checkpoint, &keys).unwrap();
    let cp_lines: Vec<&str> = cp_text.lines().collect();
    assert_eq!(cp_lines[1], n.to_string());
    assert_eq!(B64.decode(cp_lines[2]).unwrap(), mth(&data).to_vec());
    let base = format!("/control/v1/workspaces/{}/audit", t.ws);
    for size in [1, 2, 3, n - 1, n] {
        for index in 0..size {
            let r = app
                .get(
                    &format!("{base}/proof?index={index}&treeSize={size}"),
                    &t.owner_token,
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            let proof: Vec<[u8; 32]> = r.body["proof"]
                .as_array()
                .unwrap()
                .iter()
                .map(decode)
                .collect();
            assert_eq!(
                proof,
                path(index, &data[..size]),
                "PATH({index}, D[{size}])"
            );
            assert_eq!(decode(&r.body["rootHash"]), mth(&data[..size]));
            assert_eq!(decode(&r.body["leafHash"]), sha(&[&[0], &data[index]]));
        }
    }
    for from in 0..=n {
        let r = app
            .get(
                &format!("{base}/consistency?from={from}&to={n}"),
                &t.owner_token,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let proof: Vec<[u8; 32]> = r.body["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(decode)
            .collect();
        let want = if from == 0 || from == n {
            vec![]
        } else {
            subproof(from, &data, true)
        };
        assert_eq!(proof, want, "PROOF({from}, D[{n}])");
        assert_eq!(decode(&r.body["fromRoot"]), mth(&data[..from]));
        // And authsome-audit's verifier accepts it.
        authsome_audit::merkle::verify_consistency(
            from as u64,
            n as u64,
            &mth(&data[..from]),
            &mth(&data),
            &proof,
        )
        .unwrap();
    }
}

async fn rotated_checkpoint_keys_keep_old_checkpoints_verifiable(app: TestApp) {
    let (t, _, old_checkpoint, _) = history(&app, "Rotating").await;
    let root = app.root_token().await;
    let rotated = app
        .post(
            "/control/v1/admin/audit/signing-keys/rotate",
            &root,
            json!({}),
        )
        .await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    // Not an operator: the route does not exist.
    let r = app
        .post(
            "/control/v1/admin/audit/signing-keys/rotate",
            &t.owner_token,
            json!({}),
        )
        .await;
    assert_error(&r, 404, "not_found");
    app.key(
        &t.owner_token,
        &app.application(&t.owner_token, &t.ws, "development").await,
        "secret",
    )
    .await;
    let base = format!("/control/v1/workspaces/{}/audit", t.ws);
    let (_, new_checkpoint) =
        text(&app, &format!("{base}/checkpoints/latest"), &t.owner_token).await;
    let (_, export) = text(&app, &format!("{base}/export"), &t.owner_token).await;
    let (_, keys) = text(&app, &format!("{base}/keys"), &t.owner_token).await;
    let keys: Vec<NoteVerifier> = keys
        .lines()
        .map(|k| NoteVerifier::parse(k).unwrap())
        .collect();
    assert_eq!(keys.len(), 2);
    let report = verify_export(
        export.as_bytes(),
        &[old_checkpoint.clone(), new_checkpoint.clone()],
        &keys,
    )
    .unwrap();
    assert_eq!(report.checkpoints.len(), 2);
    assert_ne!(
        report.checkpoints[0].signed_by,
        report.checkpoints[1].signed_by
    );
    // The rotation is itself audited, in the platform operators' log.
    let entries = all_entries(&app, &root, &app.root_ws, "&action=admin.audit.").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["target"], rotated.body["keyId"]);
}

async fn a_large_export_streams(app: TestApp) {
    const N: usize = 100_000;
    let t = app.tenant("Large").await;
    let ws: WorkspaceId = t.ws.parse().unwrap();
    for i in 0..N {
        app.state.audit.record(
            DomainEvent::new("workspace.updated")
                .workspace(&ws)
                .target(format!("bulk-{i}")),
        );
    }
    app.state.audit.flush().await;
    let base = format!("/control/v1/workspaces/{}/audit", t.ws);
    let (_, checkpoint) = text(&app, &format!("{base}/checkpoints/latest"), &t.owner_token).await;
    let (_, keys) = text(&app, &format!("{base}/keys"), &t.owner_token).await;
    let keys: Vec<NoteVerifier> = keys
        .lines()
        .map(|k| NoteVerifier::parse(k).unwrap())
        .collect();
    let mut response = app
        .client
        .get(format!("{}{base}/export", app.base))
        .bearer_auth(&t.owner_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Streamed: no length known up front, delivered in many pieces as rows are read.
    assert!(response.headers().get("content-length").is_none());
    let file = tempfile::NamedTempFile::new().unwrap();
    let mut out = std::io::BufWriter::new(file.reopen().unwrap());
    let mut chunks = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        std::io::Write::write_all(&mut out, &chunk).unwrap();
        chunks += 1;
    }
    std::io::Write::flush(&mut out).unwrap();
    assert!(chunks >= N / 1_000, "{chunks} chunks");
    let reader = std::io::BufReader::new(file.reopen().unwrap());
    let report = verify_export(reader, &[checkpoint], &keys).unwrap();
    assert!(report.entries as usize > N);
}

#[tokio::test]
async fn a_100k_entry_export_streams_and_verifies_on_sqlite() {
    a_large_export_streams(spawn_app().await).await;
}

#[tokio::test]
async fn a_100k_entry_export_streams_and_verifies_on_postgres() {
    if let Some(app) = spawn_postgres().await {
        a_large_export_streams(app).await;
    }
}

/// Runs one statement on the control-plane database, past the API.
async fn raw(app: &TestApp, sql: &str, binds: &[&str]) {
    if app.db_url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(&app.db_url).await.unwrap();
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&app.db_url).await.unwrap();
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&pool).await.unwrap();
        pool.close().await;
    }
}

async fn a_write_whose_audit_entry_cannot_be_stored_does_not_happen(app: TestApp) {
    let t = app.tenant("Fail closed").await;
    let apps = format!("/control/v1/workspaces/{}/applications", t.ws);
    // The audit outbox cannot take rows: every audited write must fail, and not happen.
    app.state.audit.flush().await;
    raw(
        &app,
        "ALTER TABLE audit_outbox RENAME TO audit_outbox_away",
        &[],
    )
    .await;
    let r = app
        .post(
            &apps,
            &t.owner_token,
            json!({"name": "Unaudited", "environment": "development"}),
        )
        .await;
    assert_error(&r, 500, "internal_error");
    let r = app
        .patch(
            &format!("/control/v1/workspaces/{}", t.ws),
            &t.owner_token,
            json!({"name": "Renamed unaudited"}),
        )
        .await;
    assert_error(&r, 500, "internal_error");
    raw(
        &app,
        "ALTER TABLE audit_outbox_away RENAME TO audit_outbox",
        &[],
    )
    .await;
    let listed = app.get(&apps, &t.owner_token).await;
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        0,
        "{}",
        listed.body
    );
    let ws = app
        .get(&format!("/control/v1/workspaces/{}", t.ws), &t.owner_token)
        .await;
    assert_ne!(ws.body["name"], "Renamed unaudited");
    // With the outbox back, the same write happens and is audited once.
    let r = app
        .post(
            &apps,
            &t.owner_token,
            json!({"name": "Audited", "environment": "development"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let entries = all_entries(&app, &t.owner_token, &t.ws, "&action=application.created").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["target"], r.body["id"]);
}

async fn outbox_rows_left_by_a_crash_land_exactly_once(app: TestApp) {
    let t = app.tenant("Crashed").await;
    let ws: WorkspaceId = t.ws.parse().unwrap();
    app.state.audit.flush().await;
    // A row whose hand-over never came (the process stopped after the commit) ...
    let mut lost = DomainEvent::new("workspace.updated")
        .workspace(&ws)
        .target(&ws);
    lost.at = authsome_domain::now() - chrono::Duration::minutes(1);
    // ... and one the log already holds (stopped after the append, before the delete).
    let held = all_entries(&app, &t.owner_token, &t.ws, "").await;
    let held_id = held[0]["id"].as_str().unwrap().to_owned();
    let duplicate = DomainEvent::new("workspace.created").workspace(&ws);
    let old = (authsome_domain::now() - chrono::Duration::minutes(1))
        .timestamp_millis()
        .to_string();
    for (id, body) in [
        (lost.id.to_string(), serde_json::to_string(&lost).unwrap()),
        (held_id.clone(), serde_json::to_string(&duplicate).unwrap()),
    ] {
        raw(
            &app,
            "INSERT INTO audit_outbox (id, body, created_at) VALUES ($1, $2, CAST($3 AS BIGINT))",
            &[&id, &body, &old],
        )
        .await;
    }
    app.state.audit.recover_outboxes().await.unwrap();
    app.state.audit.recover_outboxes().await.unwrap();
    let entries = all_entries(&app, &t.owner_token, &t.ws, "").await;
    assert_eq!(entries.len(), held.len() + 1, "{entries:?}");
    let recovered: Vec<_> = entries
        .iter()
        .filter(|e| e["id"] == lost.id.to_string())
        .collect();
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["action"], "workspace.updated");
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["id"] == held_id.as_str())
            .count(),
        1
    );
    let verified = app
        .get(
            &format!("/control/v1/workspaces/{}/audit/verify", t.ws),
            &t.owner_token,
        )
        .await;
    assert_eq!(verified.body["valid"], true, "{}", verified.body);
}

#[tokio::test]
async fn an_application_write_fails_closed_and_its_outbox_is_recovered() {
    let app = spawn_app().await;
    let t = app.tenant("App outbox").await;
    let app_id = app.application(&t.owner_token, &t.ws, "development").await;
    let (_, sk) = app.key(&t.owner_token, &app_id, "secret").await;
    let users = format!("/v1/{app_id}/users");
    let created = app
        .post(&users, &sk, json!({"email": "kept@example.com"}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let db = format!(
        "sqlite://{}",
        app.apps_dir
            .as_ref()
            .unwrap()
            .join(format!("{app_id}.db"))
            .display()
    );
    let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
    // The first user's outbox row is handed over (and deleted) before the table goes away.
    app.state.audit.flush().await;
    sqlx::query("ALTER TABLE audit_outbox RENAME TO audit_outbox_away")
        .execute(&pool)
        .await
        .unwrap();
    let r = app
        .post(&users, &sk, json!({"email": "unaudited@example.com"}))
        .await;
    assert_error(&r, 500, "internal_error");
    sqlx::query("ALTER TABLE audit_outbox_away RENAME TO audit_outbox")
        .execute(&pool)
        .await
        .unwrap();
    let listed = app
        .get(&format!("{users}?email=unaudited@example.com"), &sk)
        .await;
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        0,
        "{}",
        listed.body
    );

    // A row abandoned in the application's outbox is taken exactly once.
    let app_typed: authsome_domain::id::ApplicationId = app_id.parse().unwrap();
    let mut lost = DomainEvent::new("user.updated")
        .application(&app_typed)
        .target("usr_lost");
    lost.at = authsome_domain::now() - chrono::Duration::minutes(1);
    sqlx::query("INSERT INTO audit_outbox (id, body, created_at) VALUES ($1, $2, $3)")
        .bind(lost.id.to_string())
        .bind(serde_json::to_string(&lost).unwrap())
        .bind(lost.at.timestamp_millis())
        .execute(&pool)
        .await
        .unwrap();
    app.state.audit.recover_outboxes().await.unwrap();
    app.state.audit.recover_outboxes().await.unwrap();
    let entries = all_entries(&app, &t.owner_token, &t.ws, "&action=user.").await;
    let found: Vec<_> = entries
        .iter()
        .filter(|e| e["id"] == lost.id.to_string())
        .collect();
    assert_eq!(found.len(), 1, "{entries:?}");
    assert_eq!(found[0]["workspaceId"], t.ws.as_str());
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    // The user created before is audited once too.
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "user.created")
            .count(),
        1
    );
}

/// A fresh outbox row of `ws`, as a process that stopped right after its commit leaves it.
async fn left_behind(app: &TestApp, ws: &WorkspaceId) -> DomainEvent {
    let lost = DomainEvent::new("workspace.updated")
        .workspace(ws)
        .target(ws);
    raw(
        app,
        "INSERT INTO audit_outbox (id, body, created_at) VALUES ($1, $2, CAST($3 AS BIGINT))",
        &[
            lost.id.as_str(),
            &serde_json::to_string(&lost).unwrap(),
            &lost.at.timestamp_millis().to_string(),
        ],
    )
    .await;
    lost
}

/// A server started on a database with rows a stopped process left in its outbox (however
/// recent) answers `/ready` only once they are in the log.
async fn a_restarted_server_is_ready_only_with_what_was_left_in_its_outbox(app: TestApp) {
    let t = app.tenant("Restarted").await;
    let ws: WorkspaceId = t.ws.parse().unwrap();
    app.state.audit.flush().await;
    let lost = left_behind(&app, &ws).await;
    // The same deployment started again: another server over the same databases.
    let store = authsome_storage::connect(Some(&app.db_url), std::path::Path::new("."))
        .await
        .unwrap();
    // (This server touches no application database: the Postgres isolation mode is moot.)
    let apps = match &app.apps_dir {
        Some(dir) => authsome_storage::app::AppDatabaseConfig::Sqlite { dir: dir.clone() },
        None => authsome_storage::app::AppDatabaseConfig::Postgres {
            server_url: app.db_url.clone(),
        },
    };
    let mut settings = authsome_server::Settings::new(store.clone(), apps, app.base.clone());
    settings.master_key = authsome_domain::master_key::MasterKey::from_base64(
        &app.state.identity.master_key().to_base64(),
    )
    .unwrap();
    let restarted = authsome_server::App::build(settings).await.unwrap();
    restarted.start();
    let restarted = restarted.state.clone();
    for _ in 0..400 {
        if restarted.audit_recovered() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(restarted.audit_recovered(), "never recovered");
    // In the log itself, read straight from storage (an audit read would catch up anyway).
    let held = store
        .existing_audit_ids(&[lost.id.to_string()])
        .await
        .unwrap();
    assert_eq!(held, [lost.id.to_string()]);
}

/// An audit read shows every row committed to an outbox, the control plane's and an
/// application's, even when its hand-over has not happened yet.
async fn an_audit_read_shows_rows_not_handed_over_yet(app: TestApp) {
    let t = app.tenant("Caught up").await;
    let ws: WorkspaceId = t.ws.parse().unwrap();
    let lost = left_behind(&app, &ws).await;
    let mut expected = vec![lost.id.to_string()];
    // An application's outbox (SQLite: its database is a file the test can reach).
    if let Some(dir) = &app.apps_dir {
        let app_id = app.application(&t.owner_token, &t.ws, "development").await;
        let app_typed: authsome_domain::id::ApplicationId = app_id.parse().unwrap();
        let pending = DomainEvent::new("user.updated")
            .application(&app_typed)
            .target("usr_pending");
        let db = format!("sqlite://{}", dir.join(format!("{app_id}.db")).display());
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        sqlx::query("INSERT INTO audit_outbox (id, body, created_at) VALUES ($1, $2, $3)")
            .bind(pending.id.to_string())
            .bind(serde_json::to_string(&pending).unwrap())
            .bind(pending.at.timestamp_millis())
            .execute(&pool)
            .await
            .unwrap();
        expected.push(pending.id.to_string());
    }
    let entries = all_entries(&app, &t.owner_token, &t.ws, "").await;
    for id in expected {
        assert_eq!(
            entries.iter().filter(|e| e["id"] == id.as_str()).count(),
            1,
            "{id} in {entries:?}"
        );
    }
    let verified = app
        .get(
            &format!("/control/v1/workspaces/{}/audit/verify", t.ws),
            &t.owner_token,
        )
        .await;
    assert_eq!(verified.body["valid"], true, "{}", verified.body);
}
