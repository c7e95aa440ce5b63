//! Route handlers, one module per area. Each handler parses, calls the control plane once, and
//! renders; the `#[utoipa::path]` on it is what `/openapi.json` is generated from.

pub mod admin;
pub mod alerts;
pub mod applications;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod customer;
pub mod customer_auth;
pub mod customer_orgs;
pub mod customer_users;
pub mod health;
pub mod keys;
pub mod members;
pub mod providers;
pub mod rotation;
pub mod usage;
pub mod vault;
pub mod workspaces;

use axum::http::StatusCode;

use crate::error::ApiError;

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route not found")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}
