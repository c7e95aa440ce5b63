//! HTTP integration tests: the real router on a random port, spoken to over HTTP. One test
//! binary; modules by area. Each test gets its own database (a temp SQLite file, or a throwaway
//! Postgres database for the `postgres` module).

/// Runs each named `async fn(TestApp)` on SQLite, on Postgres with a database per application,
/// and on Postgres with a schema per application (Postgres skipped outside CI when unreachable).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite_backend {
            $(#[tokio::test]
            async fn $name() {
                super::$name(crate::helpers::spawn_app().await).await;
            })*
        }
        mod postgres_backend {
            $(#[tokio::test]
            async fn $name() {
                if let Some(app) = crate::helpers::spawn_postgres().await {
                    super::$name(app).await;
                }
            })*
        }
        mod postgres_schema_isolation {
            $(#[tokio::test]
            async fn $name() {
                if let Some(app) = crate::helpers::spawn_postgres_schema().await {
                    super::$name(app).await;
                }
            })*
        }
    };
}

mod helpers;

mod abuse;
mod applications;
mod audit;
mod auth_and_members;
mod bad_input;
mod billing;
mod cross_tenant;
mod customer_auth;
mod customer_bad_input;
mod customer_keys;
mod customer_managed_keys;
mod customer_orgs;
mod dedicated;
mod dpop;
mod entry_point;
mod events;
mod federation;
mod http_basics;
mod providers;
mod provisioning;
mod redis_outage;
mod role_matrix;
mod rotation;
mod signed_requests;
mod stripe;
mod tenant_attacks;
mod usage;
mod vault;
mod workspaces_and_admin;
