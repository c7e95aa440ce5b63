//! DPoP (RFC 9449) at the HTTP edge: the `DPoP` proof header is verified (signature, method,
//! URL, time window, one-time `jti` through the replay cache, server nonce) and reduced to the
//! thumbprint of the client's key, which the identity engine binds sessions and tokens to.
//!
//! Server nonces: every response to a request with a proof carries a fresh `DPoP-Nonce`; a
//! proof that carries a nonce must carry a current one, and with
//! `AUTHSOME_DPOP_REQUIRE_NONCE=true` every proof must (else 401 `use_dpop_nonce` with the nonce
//! to use). Nonces are stateless: an HMAC of the five-minute window under a key derived from the
//! master key, so every replica accepts every other's.

use std::time::Duration;

use authsome_identity::dpop::{DpopError, Expected, Proof};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::ApiError;
use crate::AppState;

pub const DPOP_HEADER: HeaderName = HeaderName::from_static("dpop");
pub const NONCE_HEADER: HeaderName = HeaderName::from_static("dpop-nonce");

/// How far a proof's `iat` may be from the server's clock (and how long its `jti` is kept).
const WINDOW_SECONDS: i64 = 60;
/// Nonces change every five minutes; the previous one stays good.
const NONCE_PERIOD_SECONDS: i64 = 300;

fn nonce_for(state: &AppState, period: i64) -> String {
    let key = state
        .identity
        .master_key()
        .derive(b"authsome:dpop-nonce:v1");
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(&period.to_be_bytes());
    let tag = mac.finalize().into_bytes();
    let mut raw = period.to_be_bytes().to_vec();
    raw.extend_from_slice(&tag[..16]);
    B64URL.encode(raw)
}

/// The nonce clients should put in their next proof.
pub fn current_nonce(state: &AppState) -> String {
    nonce_for(state, chrono::Utc::now().timestamp() / NONCE_PERIOD_SECONDS)
}

fn nonce_is_current(state: &AppState, nonce: &str) -> bool {
    let period = chrono::Utc::now().timestamp() / NONCE_PERIOD_SECONDS;
    [period, period - 1]
        .iter()
        .any(|p| nonce_for(state, *p).as_bytes() == nonce.as_bytes())
}

fn invalid(why: impl std::fmt::Display) -> ApiError {
    ApiError::unauthorized(format!("invalid DPoP proof: {why}")).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("DPoP error=\"invalid_dpop_proof\""),
    )
}

fn use_nonce(state: &AppState) -> ApiError {
    let mut error = ApiError::unauthorized("the DPoP proof must carry the server's nonce")
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("DPoP error=\"use_dpop_nonce\""),
        );
    if let Ok(v) = HeaderValue::from_str(&current_nonce(state)) {
        error = error.with_header(NONCE_HEADER, v);
    }
    error
}

/// Verifies the request's `DPoP` proof, if it has one; `access_token` is the token presented
/// with it (then the proof's `ath` must match). Returns the thumbprint of the proof's key.
/// Under a gateway's forwarding assertion the gateway has used the proof's `jti` already
/// ([`use_proof_at_gateway`]); otherwise it is used here.
pub async fn verify(
    state: &AppState,
    parts: &Parts,
    access_token: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(header) = parts.headers.get(DPOP_HEADER) else {
        return Ok(None);
    };
    crate::request_id::set_dpop_nonce(current_nonce(state));
    let proof = header.to_str().map_err(|_| invalid("not text"))?;
    let proof = checked(
        state,
        parts.method.as_str(),
        parts.uri.path(),
        proof,
        access_token,
    )?;
    if parts
        .extensions
        .get::<crate::gateway::Forwarded>()
        .is_none()
    {
        // Proofs are only checked on customer-API routes, whose path names the application.
        let app = crate::gateway::customer_app(parts.uri.path()).unwrap_or("-");
        first_use(state, app, &proof).await?;
    }
    Ok(Some(proof.jkt))
}

/// At a gateway, before forwarding a dedicated application's request with a `DPoP` proof:
/// the proof checked (all but its access-token hash, which the instance checks) and its `jti`
/// used, in the gateway's replay cache, so that however many instances serve the application
/// (each with a cache of its own, without Redis), a proof is accepted once.
pub async fn use_proof_at_gateway(
    state: &AppState,
    app: &str,
    method: &str,
    path: &str,
    proof: Option<&str>,
) -> Result<(), ApiError> {
    let Some(proof) = proof else { return Ok(()) };
    let proof = checked(state, method, path, proof, None)?;
    first_use(state, app, &proof).await
}

/// The proof, verified for `method` on `path` now, with the server's nonce when it carries one
/// (or when every proof must).
fn checked(
    state: &AppState,
    method: &str,
    path: &str,
    proof: &str,
    access_token: Option<&str>,
) -> Result<Proof, ApiError> {
    let proof = Proof::verify(proof).map_err(invalid)?;
    let url = format!("{}{path}", state.identity.public_url());
    proof
        .check(&Expected {
            method,
            url: &url,
            now: chrono::Utc::now().timestamp(),
            window: WINDOW_SECONDS,
            access_token,
        })
        .map_err(|e| match e {
            DpopError::UseNonce => use_nonce(state),
            other => invalid(other),
        })?;
    match &proof.nonce {
        Some(nonce) if !nonce_is_current(state, nonce) => Err(use_nonce(state)),
        None if state.http.dpop_require_nonce => Err(use_nonce(state)),
        _ => Ok(proof),
    }
}

/// Each proof once, on any replica, for as long as its iat would pass.
async fn first_use(state: &AppState, app: &str, proof: &Proof) -> Result<(), ApiError> {
    let memo = authsome_domain::shared_state::app_scoped(
        app,
        "replay-dpop",
        &format!("{}:{}", proof.jkt, proof.jti),
    );
    let window = Duration::from_secs(2 * WINDOW_SECONDS as u64 + 5);
    match state.replay.first_use(&memo, window).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(invalid("its jti was already used")),
        Err(e) => {
            tracing::error!(error = %e, "replay cache unavailable; DPoP proof refused");
            Err(ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "DPoP proofs cannot be checked right now",
                )
            })
        }
    }
}
