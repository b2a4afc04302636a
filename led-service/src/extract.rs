//! What handlers take from a request besides the state: a device request slot, the token
//! check, the cross-site check, who asked, and a JSON body whose rejection is an [`ApiError`].

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, header, request::Parts};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// First in the arguments of a handler that uses the device: one of the `limits.requests`
/// slots, held until the answer, or 503 at once when all are taken (a flood is shed, never
/// queued). A counter, not a semaphore: each request costs two atomic operations and no lock.
pub struct RequestSlot(AppState);

impl FromRequestParts<AppState> for RequestSlot {
    type Rejection = ApiError;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits.requests;
        state
            .device_requests
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < limit).then_some(taken + 1)
            })
            .map_err(|_| ApiError::Overloaded)?;
        Ok(RequestSlot(state.clone()))
    }
}

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.0.device_requests.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Present in a handler's arguments when the route mutates: checks the bearer token, in
/// constant time, if the service has one.
pub struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.token else {
            return Ok(Authorized);
        };
        // The scheme is case-insensitive (RFC 9110): "bearer x" is as good as "Bearer x".
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim_start());
        if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
            Ok(Authorized)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Present in a handler's arguments when the route mutates: refuses a request a browser sent
/// from a page of another site (a page anyone on the LAN opens could otherwise flip the LED in
/// a loop and wear out the button's EEPROM). Browsers say where a request comes from
/// (`Sec-Fetch-Site`, `Origin`); clients that are not browsers (curl, button-service) send
/// neither and pass.
pub struct SameOrigin;

impl<S: Sync> FromRequestParts<S> for SameOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match service_kit::guard::cross_site(&parts.headers) {
            Some(site) => Err(ApiError::CrossSite(site)),
            None => Ok(SameOrigin),
        }
    }
}

/// Who asked, for `changed_by`: the peer address (when served over a socket) and the
/// User-Agent, shortened. Written out only when the LED changes (most requests find it set).
pub struct Requester {
    peer: Option<IpAddr>,
    agent: Option<HeaderValue>,
}

impl<S: Sync> FromRequestParts<S> for Requester {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Requester {
            peer: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip()),
            agent: parts.headers.get(header::USER_AGENT).cloned(),
        })
    }
}

impl fmt::Display for Requester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let agent = self
            .agent
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .map(|agent| agent.chars().take(64).collect::<String>());
        match (self.peer, agent) {
            (Some(peer), Some(agent)) => write!(f, "{peer} ({agent})"),
            (Some(peer), None) => write!(f, "{peer}"),
            (None, Some(agent)) => f.write_str(&agent),
            (None, None) => f.write_str("unknown"),
        }
    }
}

/// A JSON body, refused with an [`ApiError`] that says what was wrong and what is expected.
pub struct AppJson<T>(pub T);

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(AppJson(value))
    }
}
