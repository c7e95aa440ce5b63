//! The audit log: `/control/v1/workspaces/{wsId}/audit…` (owner, admin, auditor) and the
//! platform operators' checkpoint-key rotation.

use authsome_audit::entry::Entry;
use authsome_control::audit::AuditReader;
use authsome_domain::id::{ApplicationId, WorkspaceId};
use authsome_domain::page::PageRequest;
use authsome_domain::ValidationError;
use authsome_storage::AuditFilter;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{path_id, Caller, Json, Query};
use crate::views::List;
use crate::AppState;
use authsome_domain::event::EventSink;

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditListParams {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Entries at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Entries before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// The actor's id (`acc_…`, `key_…`, `usr_…`).
    pub actor: Option<String>,
    /// An action prefix: `application.` matches `application.key.rolled`.
    pub action: Option<String>,
    /// The application the entry concerns.
    pub application: Option<String>,
    #[param(schema_with = outcome_schema)]
    pub outcome: Option<String>,
}

impl AuditListParams {
    fn filter(&self) -> Result<AuditFilter, ApiError> {
        if let Some(o) = &self.outcome {
            if authsome_audit::Outcome::parse(o).is_none() {
                return Err(
                    ValidationError::new("outcome", "must be success, failure or denied").into(),
                );
            }
        }
        if let Some(app) = &self.application {
            app.parse::<ApplicationId>().map_err(|_| {
                ApiError::from(ValidationError::new(
                    "application",
                    "must be an application id",
                ))
            })?;
        }
        if self.action.as_ref().is_some_and(|a| a.len() > 128) {
            return Err(ValidationError::new("action", "must be at most 128 characters").into());
        }
        if let (Some(from), Some(to)) = (self.from, self.to) {
            if from > to {
                return Err(ValidationError::new("from", "must not be after to").into());
            }
        }
        Ok(AuditFilter {
            from: self.from,
            to: self.to,
            actor_id: self.actor.clone(),
            action_prefix: self.action.clone(),
            application_id: self.application.clone(),
            outcome: self.outcome.clone(),
        })
    }
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditActorView {
    /// `account`, `key`, `user`, `system`, or `anonymous` (no credential, e.g. a failed sign-in).
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One audit entry. Its export row (`format=jsonl`) is its canonical encoding, whose bytes are
/// the Merkle leaf.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntryView {
    pub index: u64,
    pub id: String,
    pub at: String,
    pub workspace_id: String,
    pub application_id: Option<String>,
    pub actor: AuditActorView,
    /// A stable dotted name, e.g. `application.key.rolled`.
    pub action: String,
    pub target: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: String,
    pub request_id: Option<String>,
    /// What changed; values that identify but must not be readable are `hmac-sha256:<hex>`.
    #[schema(value_type = Object)]
    pub changes: serde_json::Map<String, serde_json::Value>,
    /// Hex chain hash of the entry before (all zeros for the first).
    pub prev_hash: String,
}

impl From<Entry> for AuditEntryView {
    fn from(e: Entry) -> Self {
        Self {
            index: e.index,
            id: e.id,
            at: e.at,
            workspace_id: e.workspace_id,
            application_id: e.application_id,
            actor: AuditActorView {
                kind: e.actor.kind,
                id: e.actor.id,
                ip: e.actor.ip,
                user_agent: e.actor.user_agent,
            },
            action: e.action,
            target: e.target,
            outcome: e.outcome.as_str().to_owned(),
            request_id: e.request_id,
            changes: e.changes,
            prev_hash: hex_of(&e.prev_hash),
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The workspace's audit entries, newest first.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/audit", tag = "audit",
    params(("wsId" = String, Path), AuditListParams),
    responses((status = 200, body = List<AuditEntryView>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<AuditListParams>,
) -> Result<axum::Json<List<AuditEntryView>>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let filter = params.filter()?;
    let page = PageRequest::parse(params.limit, params.cursor.as_deref())?;
    let page = state.audit.list(&caller.actor, &ws, &filter, &page).await?;
    let mut entries = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let entry = Entry::parse(&item.line).map_err(|e| {
            tracing::error!(entry = %item.id, error = %e, "stored audit entry does not parse");
            ApiError::internal()
        })?;
        entries.push(entry);
    }
    let page = authsome_domain::page::Page {
        items: entries,
        next_cursor: page.next_cursor,
    };
    Ok(axum::Json(List::from_page(page, AuditEntryView::from)))
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `jsonl` (default): one canonical entry per line, each line's bytes its Merkle leaf;
    /// or `csv`.
    #[param(schema_with = format_schema)]
    pub format: Option<String>,
}

fn outcome_schema() -> utoipa::openapi::Object {
    authsome_domain::schema::one_of(&["success", "failure", "denied"], "The entry's outcome")
}

fn format_schema() -> utoipa::openapi::Object {
    authsome_domain::schema::one_of(&["jsonl", "csv"], "The export's format (default `jsonl`)")
}

#[derive(Clone, Copy)]
enum Format {
    Jsonl,
    Csv,
}

const CSV_HEADER: &str = "index,id,at,workspaceId,applicationId,actorType,actorId,actorIp,\
                          actorUserAgent,action,target,outcome,requestId,changes,prevHash\n";

fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_row(line: &str) -> Option<String> {
    let e = Entry::parse(line).ok()?;
    let changes = authsome_audit::entry::canonical_json(&serde_json::Value::Object(e.changes));
    let fields = [
        e.index.to_string(),
        e.id,
        e.at,
        e.workspace_id,
        e.application_id.unwrap_or_default(),
        e.actor.kind,
        e.actor.id.unwrap_or_default(),
        e.actor.ip.unwrap_or_default(),
        e.actor.user_agent.unwrap_or_default(),
        e.action,
        e.target.unwrap_or_default(),
        e.outcome.as_str().to_owned(),
        e.request_id.unwrap_or_default(),
        changes,
        hex_of(&e.prev_hash),
    ];
    let mut out = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, f);
    }
    out.push('\n');
    Some(out)
}

/// Streams the whole log, oldest first, in bounded memory whatever its size.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/audit/export", tag = "audit",
    params(("wsId" = String, Path), ExportParams),
    responses((status = 200, description = "JSON Lines (`format=jsonl`, the default) or CSV",
            content((String = "application/jsonl"), (String = "text/csv"))),
        (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ExportParams>,
) -> Result<Response, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let format = match params.format.as_deref() {
        None | Some("jsonl") => Format::Jsonl,
        Some("csv") => Format::Csv,
        Some(_) => return Err(ValidationError::new("format", "must be jsonl or csv").into()),
    };
    let reader = state.audit.export(&caller.actor, &ws).await?;
    let header_sent = matches!(format, Format::Jsonl);
    let stream = futures_util::stream::unfold(
        (reader, header_sent),
        move |(mut reader, header_sent): (AuditReader, bool)| async move {
            if !header_sent {
                return Some((Ok(CSV_HEADER.to_owned()), (reader, true)));
            }
            match reader.next_chunk().await {
                Ok(Some(rows)) => {
                    let mut chunk = String::new();
                    for row in rows {
                        // Pruned bodies (retention) are not exported.
                        let Some(line) = row.body else { continue };
                        match format {
                            Format::Jsonl => {
                                chunk.push_str(&line);
                                chunk.push('\n');
                            }
                            Format::Csv => chunk.push_str(&csv_row(&line).unwrap_or_default()),
                        }
                    }
                    Some((Ok(chunk), (reader, true)))
                }
                Ok(None) => None,
                Err(e) => {
                    // Headers are gone: the stream breaks off, which the client sees as an
                    // incomplete body (and verification of the partial export fails).
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    Some((
                        Err(std::io::Error::other("audit export failed")),
                        (reader, true),
                    ))
                }
            }
        },
    );
    let (content_type, extension) = match format {
        Format::Jsonl => ("application/jsonl; charset=utf-8", "jsonl"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let disposition = format!("attachment; filename=\"audit-{ws}.{extension}\"");
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// The latest signed checkpoint of the log (a C2SP `tlog-checkpoint` in a signed note),
/// signing a fresh one first if the log grew since the last.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/audit/checkpoints/latest", tag = "audit",
    params(("wsId" = String, Path)),
    responses((status = 200, description = "The signed note", body = String, content_type = "text/plain"),
        (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn latest_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Response, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    Ok(text(
        state.audit.latest_checkpoint(&caller.actor, &ws).await?,
    ))
}

/// Every checkpoint verifier key, current and retired, one per line, in the format of Go's
/// `golang.org/x/mod/sumdb/note`: `<name>+<hex key id>+<base64(0x01 || Ed25519 key)>`.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/audit/keys", tag = "audit",
    params(("wsId" = String, Path)),
    responses((status = 200, description = "Verifier keys", body = String, content_type = "text/plain"),
        (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<Response, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let keys = state.audit.verifier_keys(&caller.actor, &ws).await?;
    Ok(text(keys.iter().map(|k| format!("{k}\n")).collect()))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProofParams {
    /// The entry's index.
    pub index: u64,
    /// The size of the tree the proof is for (a checkpoint's size).
    pub tree_size: u64,
}

/// An RFC 6962 / 9162 inclusion proof; hashes are base64.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProofView {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub root_hash: String,
    pub proof: Vec<String>,
}

/// The inclusion proof of an entry in the tree of `treeSize` entries.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/audit/proof", tag = "audit",
    params(("wsId" = String, Path), ProofParams),
    responses((status = 200, body = InclusionProofView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn proof(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ProofParams>,
) -> Result<axum::Json<InclusionProofView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let p = state
        .audit
        .inclusion_proof(&caller.actor, &ws, params.index, params.tree_size)
        .await?;
    Ok(axum::Json(InclusionProofView {
        index: p.index,
        tree_size: p.tree_size,
        leaf_hash: B64.encode(p.leaf_hash),
        root_hash: B64.encode(p.root_hash),
        proof: p.proof.iter().map(|h| B64.encode(h)).collect(),
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyParams {
    /// The earlier tree size.
    pub from: u64,
    /// The later tree size.
    pub to: u64,
}

/// An RFC 6962 / 9162 consistency proof; hashes are base64.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencyProofView {
    pub from: u64,
    pub to: u64,
    pub from_root: String,
    pub to_root: String,
    pub proof: Vec<String>,
}

/// The proof that the tree of `from` entries is a prefix of the tree of `to` entries.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/audit/consistency", tag = "audit",
    params(("wsId" = String, Path), ConsistencyParams),
    responses((status = 200, body = ConsistencyProofView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(params): Query<ConsistencyParams>,
) -> Result<axum::Json<ConsistencyProofView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let p = state
        .audit
        .consistency_proof(&caller.actor, &ws, params.from, params.to)
        .await?;
    Ok(axum::Json(ConsistencyProofView {
        from: p.from,
        to: p.to,
        from_root: B64.encode(p.from_root),
        to_root: B64.encode(p.to_root),
        proof: p.proof.iter().map(|h| B64.encode(h)).collect(),
    }))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditFailureView {
    pub index: Option<u64>,
    pub id: Option<String>,
    pub reason: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditVerificationView {
    pub valid: bool,
    pub entries: Option<u64>,
    pub checkpoints: Option<u64>,
    /// Base64 Merkle root of the whole log.
    pub root_hash: Option<String>,
    /// The first entry that fails, when one does.
    pub failure: Option<AuditFailureView>,
}

/// Re-checks the stored log server-side: every entry against its leaf hash, the chain, the
/// head and every signed checkpoint; names the first entry that fails.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/audit/verify", tag = "audit",
    params(("wsId" = String, Path)),
    responses((status = 200, body = AuditVerificationView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<AuditVerificationView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let view = match state.audit.verify_stored(&caller.actor, &ws).await? {
        Ok(ok) => AuditVerificationView {
            valid: true,
            entries: Some(ok.entries),
            checkpoints: Some(ok.checkpoints),
            root_hash: Some(B64.encode(ok.root_hash)),
            failure: None,
        },
        Err(f) => AuditVerificationView {
            valid: false,
            entries: None,
            checkpoints: None,
            root_hash: None,
            failure: Some(AuditFailureView {
                index: f.index,
                id: f.id,
                reason: f.reason,
            }),
        },
    };
    Ok(axum::Json(view))
}

/// The compact range (RFC 6962 perfect-subtree roots, largest first, base64) of the entries
/// retention pruned: what an export that starts at the first kept entry is verified from.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrefixView {
    /// Entries pruned: the export starts at this index.
    pub tree_size: u64,
    pub peaks: Vec<String>,
}

/// The pruned prefix of the log, for `authsome audit verify --prefix`.
#[utoipa::path(get, path = "/control/v1/workspaces/{wsId}/audit/prefix", tag = "audit",
    params(("wsId" = String, Path)),
    responses((status = 200, body = PrefixView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn prefix(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<axum::Json<PrefixView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    let range = state.audit.prefix(&caller.actor, &ws).await?;
    Ok(axum::Json(PrefixView {
        tree_size: range.size(),
        peaks: range.peaks().iter().map(|h| B64.encode(h)).collect(),
    }))
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashRequest {
    /// The value to look for (an email, for example).
    pub value: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HashView {
    /// `hmac-sha256:<hex>`, as the log stores this value.
    pub hmac: String,
}

/// The keyed HMAC this workspace's log stores for a value, to search for it.
#[utoipa::path(post, path = "/control/v1/workspaces/{wsId}/audit/hash", tag = "audit",
    params(("wsId" = String, Path)),
    request_body = HashRequest,
    responses((status = 200, body = HashView), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn hash(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(input): Json<HashRequest>,
) -> Result<axum::Json<HashView>, ApiError> {
    let ws: WorkspaceId = path_id(&ws, "workspace")?;
    if input.value.len() > 1024 {
        return Err(ValidationError::new("value", "must be at most 1024 bytes").into());
    }
    let hmac = state
        .audit
        .hash_value(&caller.actor, &ws, &input.value)
        .await?;
    Ok(axum::Json(HashView { hmac }))
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedAuditKey {
    /// `<name>+<hex key id>` of the new checkpoint signing key.
    pub key_id: String,
}

/// Replaces the checkpoint signing key (platform operators). Retired keys stay listed, so
/// older checkpoints keep verifying.
#[utoipa::path(post, path = "/control/v1/admin/audit/signing-keys/rotate", tag = "admin",
    responses((status = 200, body = RotatedAuditKey), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_signing_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<RotatedAuditKey>, ApiError> {
    state
        .control
        .require_platform_operator(&caller.actor)
        .await?;
    let key_id = state.audit.rotate_signing_key().await?;
    state.events.emit(
        authsome_domain::event::DomainEvent::new("admin.audit.signing_key.rotated").target(&key_id),
    );
    Ok(axum::Json(RotatedAuditKey { key_id }))
}
