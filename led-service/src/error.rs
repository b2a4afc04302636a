//! [`ApiError`]: everything a request can fail with, each answered with its status and a JSON
//! body that says what was wrong and what to do.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::led::DeviceFault;
use crate::limits::{MAX_BODY_BYTES, MAX_EVENT_STREAMS};
use crate::spelling::ACCEPTED;

/// A JSON error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong and what to do.
    pub error: String,
    /// The accepted values, when the input was one of a fixed set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted: Option<Vec<&'static str>>,
}

/// Everything a request can fail with. Internal details are logged by the device owner, once.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `POST /{state}` with something that is not a boolean spelling.
    #[error(
        "{0:?} is not a state: use one of true/false, 1/0, yes/no, on/off, t/f, y/n (any letter case)"
    )]
    InvalidState(String),
    /// A body that is not the expected JSON.
    #[error("{message}")]
    InvalidBody {
        /// 400, 415 or 422.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
    /// A body larger than [`MAX_BODY_BYTES`], announced or read.
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// Missing or wrong token.
    #[error("this route needs `Authorization: Bearer <token>` with the service's API token")]
    Unauthorized,
    /// A name the service does not answer to (DNS rebinding): what to do.
    #[error("{0}")]
    UnknownHost(String),
    /// A browser sent a request from a page of another site.
    #[error(
        "cross-site requests may not change the LED: this one came from a page of {0}; use the LED service's own page, or a client that is not a browser (curl)"
    )]
    CrossSite(String),
    /// Too many requests at once.
    #[error("too many requests at once; retry in a second")]
    Overloaded,
    /// Too many live event streams.
    #[error("too many live event streams ({MAX_EVENT_STREAMS}); retry later")]
    TooManyStreams,
    /// The device could not do it.
    #[error(transparent)]
    Device(#[from] DeviceFault),
    /// No such route.
    #[error("no such route; see GET /openapi.json")]
    NotFound,
    /// The route exists with other methods.
    #[error("method not allowed on this route; see GET /openapi.json")]
    MethodNotAllowed,
}

impl ApiError {
    /// An unprocessable body: what was wrong with it.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::InvalidBody {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidState(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidBody { status, .. } => *status,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::CrossSite(_) => StatusCode::FORBIDDEN,
            ApiError::Overloaded | ApiError::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Device(DeviceFault::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Device(DeviceFault::WearLimit(_)) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Device(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let accepted = matches!(self, ApiError::InvalidState(_)).then(|| ACCEPTED.to_vec());
        let body = ErrorBody {
            error: self.to_string(),
            accepted,
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        let retry_after = match &self {
            ApiError::Device(DeviceFault::WearLimit(wait)) => Some(wait.as_secs().max(1)),
            ApiError::Device(DeviceFault::Busy)
            | ApiError::Overloaded
            | ApiError::TooManyStreams => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let (status, message) = match &rejection {
            JsonRejection::MissingJsonContentType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the body as JSON with `Content-Type: application/json`".to_owned(),
            ),
            JsonRejection::JsonSyntaxError(error) => (
                StatusCode::BAD_REQUEST,
                format!("the body is not valid JSON: {}", error.body_text()),
            ),
            JsonRejection::JsonDataError(error) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "{}; expected {{\"on\": bool, \"brightness\": 0-255, \"pulse\": {{\"cycle_ms\": 1-65535, \"off_ms\": 0-65535, \"granularity\": 1-255}}}}",
                    error.body_text().trim_start_matches(
                        "Failed to deserialize the JSON body into the target type: "
                    )
                ),
            ),
            // Too long; other failures to read it (a body that stalled past the server's
            // limit, a connection cut mid-body) keep axum's 400 and its reason.
            JsonRejection::BytesRejection(bytes)
                if bytes.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                return ApiError::TooLarge;
            }
            other => (other.status(), other.body_text()),
        };
        ApiError::InvalidBody { status, message }
    }
}
