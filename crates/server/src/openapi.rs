//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations while the
//! router is built, so a route cannot exist without being documented. `openapi.json` at the
//! repository root is this document committed; a test fails when the two drift.

use std::sync::OnceLock;

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Spec;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ErrorBody;
use crate::routes::{
    admin, alerts, applications, audit, auth, billing, customer, customer_auth, customer_orgs,
    customer_users, health, keys, members, providers, rotation, usage, vault, workspaces,
};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "AuthSome",
        description = "Multi-tenant identity and credential control plane. Errors always have the \
                       `ErrorBody` shape; every response carries `X-AuthSome-Request-ID`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness, metrics, this document"),
        (name = "auth", description = "Team-member sessions and invitations"),
        (name = "workspaces", description = "Workspaces: the customer accounts"),
        (name = "members", description = "Team members and roles"),
        (name = "applications", description = "Applications: isolated environments"),
        (name = "keys", description = "Publishable, secret and management keys"),
        (name = "admin", description = "Platform operators"),
        (name = "audit", description = "The tamper-evident audit log: entries, export, signed checkpoints, proofs"),
        (name = "vault", description = "The credential vault: vaults, secrets, versions and values"),
        (name = "providers", description = "Provider credentials: where AuthSome gets the credential it acts with on each platform (hosted, kms, oauth, api_key)"),
        (name = "rotation", description = "Rotation: settings, the closed loop (mint, store, push, redeploy, verify), policies, two-person approvals, schedules and metering"),
        (name = "billing", description = "Usage by month (monthly active users, requests, storage, rotations) and the users counted; plans, invoices (JSON, HTML, CSV)"),
        (name = "alerts", description = "Alert channels (Slack, email, signed webhooks) and the workspace's alerts"),
        (name = "customer", description = "The customer API of one application: auth and tokens"),
        (name = "users", description = "An application's users and sessions (secret key)"),
        (name = "organizations", description = "An application's organizations and memberships"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Spec) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Control plane: a session token (`cst_…`) or management key (`wk_live_…`); \
                         on the secrets routes also a principal access token (`pat_…`, from \
                         `/control/v1/principals/token`). \
                         Customer API: a publishable or secret key, or instead a request signed \
                         with a secret key (`X-Api-Key-Id`, `X-Timestamp`, `X-Signature`: hex \
                         HMAC-SHA256 of method, path with query, timestamp and hex SHA-256 of \
                         the body, one per line; ±300 s; each signature once).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "pop",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "A machine principal's proof of possession, `PoP <JWS>`: a compact JWS signed \
                 with its registered Ed25519 key (`alg` `EdDSA`, `kid` its `prn_…` id) over the \
                 claims `htm`, `htu` (scheme, host and path), `iat` (within 60 s), `jti` (once) \
                 and `body_sha256` (lowercase hex SHA-256 of the body).",
            ))),
        );
        components.add_security_scheme(
            "publishableKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Publishable-Key",
                "Customer API, where a publishable key is enough: the key (`pk_live_…`, \
                 `pk_test_…`) instead of `Authorization: Bearer`.",
            ))),
        );
    }
}

/// Every route, with its documentation.
pub fn router_and_spec() -> (Router<AppState>, Spec) {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let (router, spec) = OpenApiRouter::with_openapi(doc)
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(health::openapi_json))
        .routes(routes!(health::metrics))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(auth::accept_invitation))
        .routes(routes!(workspaces::create, workspaces::list))
        .routes(routes!(
            workspaces::get,
            workspaces::update,
            workspaces::delete
        ))
        .routes(routes!(members::list, members::add))
        .routes(routes!(members::update, members::remove))
        .routes(routes!(
            keys::list_management_keys,
            keys::create_management_key
        ))
        .routes(routes!(keys::roll_management_key))
        .routes(routes!(keys::revoke_management_key))
        .routes(routes!(keys::reassign_management_key))
        .routes(routes!(applications::create, applications::list))
        .routes(routes!(
            applications::get,
            applications::update,
            applications::delete
        ))
        .routes(routes!(applications::restore))
        .routes(routes!(applications::usage))
        .routes(routes!(applications::signing_keys))
        .routes(routes!(applications::rotate_signing_key))
        .routes(routes!(keys::list_app_keys, keys::create_app_key))
        .routes(routes!(keys::roll_app_key))
        .routes(routes!(keys::revoke_app_key))
        .routes(routes!(audit::list))
        .routes(routes!(audit::export))
        .routes(routes!(audit::latest_checkpoint))
        .routes(routes!(audit::keys))
        .routes(routes!(audit::proof))
        .routes(routes!(audit::consistency))
        .routes(routes!(audit::verify))
        .routes(routes!(audit::prefix))
        .routes(routes!(audit::hash))
        .routes(routes!(audit::rotate_signing_key))
        .routes(routes!(vault::create, vault::list))
        .routes(routes!(vault::get, vault::update, vault::delete))
        .routes(routes!(vault::secrets))
        .routes(routes!(
            vault::put_secret,
            vault::secret,
            vault::delete_secret
        ))
        .routes(routes!(vault::value))
        .routes(routes!(vault::restore_secret))
        .routes(routes!(vault::destroy_version))
        .routes(routes!(vault::keyring))
        .routes(routes!(vault::rotate_keyring))
        .routes(routes!(vault::rekey_keyring))
        .routes(routes!(vault::set_customer_key))
        .routes(routes!(vault::destroy_keyring))
        .routes(routes!(vault::create_principal, vault::principals))
        .routes(routes!(vault::principal, vault::delete_principal))
        .routes(routes!(vault::bind, vault::bindings))
        .routes(routes!(
            vault::create_trusted_issuer,
            vault::trusted_issuers
        ))
        .routes(routes!(vault::delete_trusted_issuer))
        .routes(routes!(vault::exchange_token))
        .routes(routes!(vault::operators))
        .routes(routes!(vault::bind_operator, vault::unbind_operator))
        .routes(routes!(providers::list))
        .routes(routes!(providers::put, providers::get, providers::delete))
        .routes(routes!(providers::test))
        .routes(routes!(rotation::put_settings, rotation::get_settings))
        .routes(routes!(rotation::start))
        .routes(routes!(rotation::start_batch))
        .routes(routes!(usage::usage))
        .routes(routes!(usage::counted_users))
        .routes(routes!(billing::billing))
        .routes(routes!(billing::invoices))
        .routes(routes!(billing::invoice))
        .routes(routes!(billing::close))
        .routes(routes!(billing::stripe_webhook))
        .routes(routes!(rotation::get))
        .routes(routes!(rotation::rollback))
        .routes(routes!(rotation::list))
        .routes(routes!(rotation::usage))
        .routes(routes!(rotation::approvals))
        .routes(routes!(rotation::approval))
        .routes(routes!(rotation::approve))
        .routes(routes!(rotation::deny))
        .routes(routes!(rotation::cancel))
        .routes(routes!(rotation::break_glass))
        .routes(routes!(alerts::create_channel, alerts::channels))
        .routes(routes!(alerts::delete_channel))
        .routes(routes!(alerts::alerts))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(rotation::create_policy, rotation::policies))
        .routes(routes!(rotation::update_policy, rotation::delete_policy))
        .routes(routes!(admin::list_workspaces))
        .routes(routes!(admin::get_workspace, admin::update_workspace))
        .routes(routes!(admin::update_application))
        .routes(routes!(admin::reissue_invitation))
        .routes(routes!(customer::identify))
        .routes(routes!(customer_auth::sign_up))
        .routes(routes!(customer_auth::sign_in))
        .routes(routes!(customer_auth::refresh))
        .routes(routes!(customer_auth::sign_out))
        .routes(routes!(customer_auth::me))
        .routes(routes!(customer_auth::jwks))
        .routes(routes!(customer_auth::openid_configuration))
        .routes(routes!(customer_users::create, customer_users::list))
        .routes(routes!(
            customer_users::get,
            customer_users::update,
            customer_users::delete
        ))
        .routes(routes!(customer_users::disable))
        .routes(routes!(customer_users::enable))
        .routes(routes!(customer_users::sessions))
        .routes(routes!(customer_users::revoke_session))
        .routes(routes!(customer_auth::my_sessions))
        .routes(routes!(customer_auth::revoke_my_session))
        .routes(routes!(customer_orgs::switch_organization))
        .routes(routes!(customer_orgs::create, customer_orgs::list))
        .routes(routes!(
            customer_orgs::get,
            customer_orgs::update,
            customer_orgs::delete
        ))
        .routes(routes!(
            customer_orgs::add_membership,
            customer_orgs::memberships
        ))
        .routes(routes!(
            customer_orgs::update_membership,
            customer_orgs::remove_membership
        ))
        .routes(routes!(customer_orgs::invite))
        .routes(routes!(customer_orgs::accept_invitation))
        .split_for_parts();
    let mut spec = spec;
    document_error_statuses(&mut spec);
    (router, spec)
}

/// Adds to every operation the error statuses that apply to it whatever its handler does,
/// each with the contract's error body: the request's own shape (400, 413), its credential
/// (401, 403), a resource in its path (404), a create's conflict (409), the customer API's
/// standing and limits (402, 429), credential throttles (429), and services it needs being
/// unavailable or at capacity (503). Statuses a handler documents itself are kept.
fn document_error_statuses(spec: &mut Spec) {
    use utoipa::openapi::path::HttpMethod;
    const UNSTORED: [&str; 4] = ["/health", "/openapi.json", "/metrics", "/ready"];
    const CREDENTIAL_ROUTES: [&str; 6] = [
        "/control/v1/auth/login",
        "/control/v1/principals/token",
        "/control/v1/auth/accept-invitation",
        "/v1/{appId}/auth/signin",
        "/v1/{appId}/auth/signup",
        "/v1/{appId}/auth/refresh",
    ];
    for (path, item) in spec.paths.paths.iter_mut() {
        for (method, operation) in [
            (HttpMethod::Get, item.get.as_mut()),
            (HttpMethod::Post, item.post.as_mut()),
            (HttpMethod::Put, item.put.as_mut()),
            (HttpMethod::Patch, item.patch.as_mut()),
            (HttpMethod::Delete, item.delete.as_mut()),
        ] {
            let Some(operation) = operation else { continue };
            let mut statuses: Vec<(&str, &str)> = Vec::new();
            if operation.request_body.is_some() {
                statuses.push(("400", "The body is not valid for this operation."));
                statuses.push(("413", "The body is larger than the server accepts."));
            }
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            if secured {
                statuses.push(("401", "No valid credential."));
                statuses.push(("403", "The credential may not do this."));
            }
            if path.contains('{') {
                statuses.push(("404", "Not found, or not visible to the caller."));
            }
            let creates =
                method == HttpMethod::Post && operation.responses.responses.contains_key("201");
            if creates {
                statuses.push((
                    "409",
                    "It conflicts with what exists, or an `Idempotency-Key` was reused differently.",
                ));
            }
            if path.starts_with("/v1/") && secured {
                statuses.push(("402", "The application's workspace is past due."));
                statuses.push((
                    "429",
                    "A rate limit or the monthly quota is exhausted (see `Retry-After`).",
                ));
            }
            if CREDENTIAL_ROUTES.contains(&path.as_str()) {
                statuses.push((
                    "429",
                    "Too many failed attempts from this account or address (see `Retry-After`).",
                ));
            }
            if !UNSTORED.contains(&path.as_str()) {
                statuses.push((
                    "503",
                    "A service it needs is unavailable or at capacity; retry after `Retry-After`.",
                ));
            }
            for (status, description) in statuses {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error_response(description).into());
            }
        }
    }
}

/// A response with the contract's error body.
fn error_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// The document as pretty JSON with a trailing newline, exactly as committed at the root.
pub fn spec_json() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| {
        let (_, spec) = router_and_spec();
        let mut json = spec.to_pretty_json().unwrap_or_else(|_| "{}".into());
        json.push('\n');
        json
    })
}
