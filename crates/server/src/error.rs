//! The one mapping from failures to HTTP: every error leaves the server as
//! `{"error": {"code", "message", "details"?, "requestId"}}` with the matching status.

use authsome_control::ControlError;
use authsome_domain::ValidationError;
use authsome_identity::IdentityError;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::request_id::current_request_id;

/// The error body of CONTRACT.md.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// `invalid_request`, `unauthorized`, `payment_required`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `rate_limit_exceeded`,
    /// `internal_error`, `bad_gateway` (a dedicated instance failed), `service_unavailable` or
    /// `gateway_timeout` (a dedicated instance did not answer in time).
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    pub request_id: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub details: Option<serde_json::Value>,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
    /// Further response headers (`WWW-Authenticate`, `DPoP-Nonce`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            details: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// The body's error object, as the response would carry it (for one item of a batch).
    pub fn detail(self) -> ErrorDetail {
        detail_for(self.status, self.message, self.details).1
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

/// The error code for a status.
pub fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 415 | 422 => "invalid_request",
        401 => "unauthorized",
        402 => "payment_required",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        412 => "precondition_failed",
        413 => "payload_too_large",
        414 => "uri_too_long",
        431 => "request_header_fields_too_large",
        429 => "rate_limit_exceeded",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "internal_error",
    }
}

/// The status an error is answered with and its body's error object, with the current
/// request's id.
fn detail_for(
    status: StatusCode,
    message: String,
    details: Option<serde_json::Value>,
) -> (StatusCode, ErrorDetail) {
    // 415 and 422 are reported as 400 `invalid_request`, the contract's status for bad input.
    let status = match status.as_u16() {
        415 | 422 => StatusCode::BAD_REQUEST,
        _ => status,
    };
    let detail = ErrorDetail {
        code: code_for(status),
        message,
        details,
        request_id: current_request_id(),
    };
    (status, detail)
}

/// Renders an error body for `status` with the current request's id.
pub fn error_response(
    status: StatusCode,
    message: String,
    details: Option<serde_json::Value>,
) -> Response {
    let (status, error) = detail_for(status, message, details);
    let body = ErrorBody { error };
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_response(self.status, self.message, self.details);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::bad_request(e.to_string()).with_details(serde_json::json!({ "field": e.field }))
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Invalid(v) => v.into(),
            ControlError::Unauthenticated(m) => ApiError::unauthorized(m),
            ControlError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            ControlError::NotFound(what) => ApiError::not_found(what),
            ControlError::Conflict(m) => ApiError::conflict(m),
            ControlError::RateLimited { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many attempts; retry in {retry_after_secs} s"),
                )
            },
            ControlError::Unavailable(m) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m)
            },
            ControlError::PaymentRequired(m) => ApiError::new(StatusCode::PAYMENT_REQUIRED, m),
            ControlError::PreconditionFailed(m) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, m)
            }
            ControlError::Busy(busy) => busy.into(),
            ControlError::Storage(e) => storage_failure(&e, "storage failure"),
        }
    }
}

impl From<authsome_control::admission::Refusal> for ApiError {
    fn from(refusal: authsome_control::admission::Refusal) -> Self {
        use authsome_control::admission::Reason;
        match refusal.reason {
            Reason::Unauthenticated(m) => ApiError::unauthorized(m),
            Reason::NotFound(what) => ApiError::not_found(what),
            Reason::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            Reason::PaymentRequired(m) => ApiError::new(StatusCode::PAYMENT_REQUIRED, m),
            Reason::TooManyRequests {
                message,
                retry_after_secs,
            } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, message)
            },
            Reason::Unavailable {
                message,
                retry_after_secs,
            } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            },
            Reason::Failed(e) => e.into(),
        }
    }
}

/// The hashing pool turned the work away: 503 at once, with when to retry.
impl From<authsome_control::hashing::Busy> for ApiError {
    fn from(busy: authsome_control::hashing::Busy) -> Self {
        ApiError {
            retry_after: Some(busy.retry_after_secs),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many sign-ins are being processed; retry shortly",
            )
        }
    }
}

/// A storage failure: 503 with `Retry-After` when the database was unreachable (nothing was
/// decided; a retry may succeed), 500 otherwise. The cause chain goes to the log; the caller
/// gets only the request id.
fn storage_failure(e: &authsome_storage::StorageError, what: &'static str) -> ApiError {
    tracing::error!(error = %e, source = ?std::error::Error::source(e), "{what}");
    if e.is_unavailable() {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; retry shortly",
            )
        }
    } else {
        ApiError::internal()
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Invalid(v) => v.into(),
            IdentityError::Unauthenticated(m) => ApiError::unauthorized(m),
            IdentityError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            IdentityError::NotFound(what) => ApiError::not_found(what),
            IdentityError::Conflict(m) => ApiError::conflict(m),
            IdentityError::RateLimited { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("too many attempts; retry in {retry_after_secs} s"),
                )
            },
            IdentityError::Unavailable(m) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, m)
            },
            IdentityError::Busy(busy) => busy.into(),
            IdentityError::Storage(e) => storage_failure(&e, "application storage failure"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authsome_storage::StorageError;

    #[test]
    fn an_unreachable_database_is_503_with_retry_after_and_other_failures_500() {
        let unavailable: ApiError =
            ControlError::Storage(StorageError::Database(sqlx::Error::PoolTimedOut)).into();
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unavailable.retry_after, Some(1));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let unavailable: ApiError =
            IdentityError::Storage(StorageError::Database(sqlx::Error::Io(reset))).into();
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        let broken: ApiError =
            ControlError::Storage(StorageError::Database(sqlx::Error::RowNotFound)).into();
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
        let corrupt: ApiError = IdentityError::Storage(StorageError::Corrupt("x")).into();
        assert_eq!(corrupt.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
