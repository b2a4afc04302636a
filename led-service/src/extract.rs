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
        if tokens_match(given.as_bytes(), expected.expose().as_bytes()) {
            Ok(Authorized)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Whether `given` is `expected`, in a time that depends on `expected`'s length only: every
/// byte of it is compared, whatever `given`'s length or content (a comparison that stops at a
/// length mismatch tells the length away).
fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let mut same = (given.len() as u64).ct_eq(&(expected.len() as u64));
    for (at, byte) in expected.iter().enumerate() {
        same &= given.get(at).copied().unwrap_or(!*byte).ct_eq(byte);
    }
    bool::from(same)
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
    /// The peer address as the server saw it, then what the client says it is, quoted and
    /// marked as its own words: `192.168.1.5, User-Agent "curl/8.0"`. A client cannot pass
    /// itself off as another address or as `shutdown`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let agent = self
            .agent
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .map(|agent| {
                agent
                    .chars()
                    .filter(|c| !c.is_control() && *c != '"' && *c != '\\')
                    .take(64)
                    .collect::<String>()
            });
        match (self.peer, agent) {
            (Some(peer), Some(agent)) => write!(f, "{peer}, User-Agent \"{agent}\""),
            (Some(peer), None) => write!(f, "{peer}"),
            (None, Some(agent)) => write!(f, "User-Agent \"{agent}\""),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal_whatever_the_lengths() {
        assert!(tokens_match(b"s3cret", b"s3cret"));
        for given in [&b"s3cre"[..], b"s3cret!", b"", b"S3cret", b"s3cre\0"] {
            assert!(!tokens_match(given, b"s3cret"), "{given:?}");
        }
    }

    #[test]
    fn who_asked_is_the_address_then_the_client_s_own_words_quoted() {
        let requester = |peer: Option<&str>, agent: Option<&str>| Requester {
            peer: peer.map(|peer| peer.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            agent: agent.and_then(|agent| HeaderValue::from_str(agent).ok()),
        };
        let cases = [
            (
                Some("192.168.1.5"),
                Some("curl/8.0"),
                "192.168.1.5, User-Agent \"curl/8.0\"",
            ),
            (
                Some("192.168.1.5"),
                Some("x\" 10.0.0.1 \"shutdown"),
                "192.168.1.5, User-Agent \"x 10.0.0.1 shutdown\"",
            ),
            (Some("192.168.1.5"), None, "192.168.1.5"),
            (None, Some("shutdown"), "User-Agent \"shutdown\""),
            (None, None, "unknown"),
        ];
        for (peer, agent, shown) in cases {
            assert_eq!(requester(peer, agent).to_string(), shown);
        }
    }
}
