//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations while the
//! router is built, so a route cannot exist without being documented. `openapi.json` at the
//! repository root is this document committed; a test fails when the two drift.

use std::sync::OnceLock;

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Spec;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ErrorBody;
use crate::routes::{
    admin, applications, audit, auth, customer, customer_auth, customer_orgs, customer_users,
    health, keys, members, workspaces,
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
                        "Control plane: a session token (`cst_…`) or management key (`wk_live_…`). \
                         Customer API: a publishable or secret key, or instead a request signed \
                         with a secret key (`X-Api-Key-Id`, `X-Timestamp`, `X-Signature`: hex \
                         HMAC-SHA256 of method, path with query, timestamp and hex SHA-256 of \
                         the body, one per line; ±300 s; each signature once).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route, with its documentation.
pub fn router_and_spec() -> (Router<AppState>, Spec) {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    OpenApiRouter::with_openapi(doc)
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
        .split_for_parts()
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
