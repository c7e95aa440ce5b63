//! Extractors that fail with the contract's error body: JSON bodies (bad JSON, unknown fields,
//! wrong types → 400; too large → 413), query strings, path ids (malformed → 404), and the
//! control-plane caller.

use std::str::FromStr;

use authsome_domain::event::EventActor;
use authsome_domain::page::PageRequest;
use authsome_domain::tenancy::Actor;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::AppState;

/// `axum::Json` with contract errors.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("expected a JSON body with Content-Type: application/json")
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("malformed JSON: {}", inner_message(&e.body_text())))
        }
        JsonRejection::JsonDataError(e) => {
            ApiError::bad_request(format!("invalid body: {}", inner_message(&e.body_text())))
        }
        other => ApiError::new(other.status(), other.body_text()),
    }
}

/// Serde's message without axum's "Failed to deserialize…" preamble.
fn inner_message(text: &str) -> String {
    text.rsplit_once(": ")
        .map(|(_, m)| m)
        .unwrap_or(text)
        .to_owned()
}

/// `axum::extract::Query` with contract errors. No parameter of the API may hold a NUL
/// character (`%00`), which no database text type can store.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(ApiError::bad_request(
                "invalid query string: a parameter contains a NUL character (%00)",
            ));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::bad_request(
                format!("invalid query string: {}", inner_message(&e.body_text())),
            )),
            Err(other) => Err(ApiError::bad_request(other.body_text())),
        }
    }
}

/// `?limit=&cursor=` on every list.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::parse(self.limit, self.cursor.as_deref())?)
    }
}

/// Parses an id in a path; a malformed or wrong-prefix id is a 404, like any unknown resource.
pub fn path_id<T: FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(what))
}

/// The bearer credential of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_of(parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The token of an `Authorization` value of the `Bearer` scheme.
pub(crate) fn bearer_of(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// An authenticated control-plane caller: a team member's session or a management key.
pub struct Caller {
    pub actor: Actor,
    pub token: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer credential"))?
            .to_owned();
        let actor = state.control.authenticate(&token).await?;
        crate::request_id::set_actor(match &actor {
            Actor::Account(id) => EventActor::Account(id.clone()),
            Actor::ManagementKey { key_id, .. } => EventActor::Key(key_id.clone()),
        });
        Ok(Caller { actor, token })
    }
}

/// An optional JSON body: absent (no `Content-Type`, or `Content-Length: 0`: many clients send
/// `Content-Type: application/json` on every request) or `null` is `None`; present but bad is
/// an error.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let headers = req.headers();
        let empty = headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|n| n.as_bytes() == b"0");
        if empty || !headers.contains_key(header::CONTENT_TYPE) {
            return Ok(None);
        }
        // A JSON `null` body is no body, as the description's `oneOf: [null, …]` says.
        <Json<Option<T>> as FromRequest<S>>::from_request(req, state)
            .await
            .map(|Json(body)| body.map(Json))
    }
}

/// The proof of `Authorization: PoP <JWS>`, if that is the scheme.
pub(crate) fn pop_proof(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, proof) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("pop")
        .then(|| proof.trim())
        .filter(|p| !p.is_empty())
}

/// Who may act on a vault's secrets: a team member ([`Caller`]) or a machine principal proving
/// itself with `Authorization: PoP <JWS>` (its signature, method, URL, time, body and one-time
/// `jti` checked by the control plane).
pub struct VaultCaller(pub authsome_control::VaultActor);

impl FromRequestParts<AppState> for VaultCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(proof) = pop_proof(parts) else {
            if let Some(token) = bearer(parts).filter(|t| t.starts_with("pat_")) {
                let principal = state.control.authenticate_principal_token(token).await?;
                crate::request_id::set_actor(EventActor::Principal(principal.id.clone()));
                return Ok(Self(authsome_control::VaultActor::Principal(principal)));
            }
            let caller = Caller::from_request_parts(parts, state).await?;
            return Ok(Self(authsome_control::VaultActor::Team(caller.actor)));
        };
        let url = format!("{}{}", state.identity.public_url(), parts.uri.path());
        let digest = parts
            .extensions
            .get::<crate::routes::customer::BodyDigest>()
            .map_or(authsome_domain::keys::signing::EMPTY_BODY_DIGEST, |d| {
                d.0.as_str()
            });
        let principal = state
            .control
            .authenticate_principal(
                proof,
                &authsome_control::PopRequest {
                    method: parts.method.as_str(),
                    url: &url,
                    body_sha256: digest,
                },
            )
            .await?;
        crate::request_id::set_actor(EventActor::Principal(principal.id.clone()));
        Ok(Self(authsome_control::VaultActor::Principal(principal)))
    }
}
