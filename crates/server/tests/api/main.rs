//! HTTP integration tests: the real router on a random port, spoken to over HTTP. One test
//! binary; modules by area. Each test gets its own database (a temp SQLite file, or a throwaway
//! Postgres database for the `postgres` module).

mod helpers;

mod applications;
mod auth_and_members;
mod bad_input;
mod cross_tenant;
mod customer_auth;
mod customer_keys;
mod customer_orgs;
mod events;
mod http_basics;
mod role_matrix;
mod workspaces_and_admin;
