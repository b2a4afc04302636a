//! Where every request comes in: it is recorded in the metrics when it ends (answered or
//! abandoned), a request by a name the service does not answer to is refused with 421 (DNS
//! rebinding, see [`service_kit::guard`]), and a body announced as larger than
//! [`MAX_BODY_BYTES`] is refused with 413 at once instead of read.
//!
//! A tower layer rather than `axum::middleware::from_fn`, which boxes a future and clones the
//! inner service into a box for every request. Its state is one allocation, cloned once per
//! request: the metrics, and the route patterns it labels them with (handed over by the
//! router, so that a known route's label is borrowed, never allocated).

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use service_kit::guard::AllowedHosts;

use crate::error::ApiError;
use crate::limits::MAX_BODY_BYTES;
use crate::metrics::{Metrics, RequestLabels, RouteLabels};

/// Puts the front door before every route.
#[derive(Debug, Clone)]
pub struct FrontDoorLayer {
    door: Arc<Door>,
}

/// What every request's observation needs.
#[derive(Debug)]
struct Door {
    metrics: Metrics,
    allowed_hosts: AllowedHosts,
    /// The patterns of the routes served: their labels are borrowed from here.
    routes: Box<[&'static str]>,
}

impl FrontDoorLayer {
    /// Records into `metrics`, labelling requests with the patterns of `routes`; lets in
    /// requests by the names of `allowed_hosts` only.
    pub fn new(metrics: Metrics, routes: Vec<&'static str>, allowed_hosts: AllowedHosts) -> Self {
        FrontDoorLayer {
            door: Arc::new(Door {
                metrics,
                allowed_hosts,
                routes: routes.into_boxed_slice(),
            }),
        }
    }
}

impl<S> Layer<S> for FrontDoorLayer {
    type Service = FrontDoor<S>;

    fn layer(&self, inner: S) -> FrontDoor<S> {
        FrontDoor {
            inner,
            door: Arc::clone(&self.door),
        }
    }
}

/// A route behind the front door.
#[derive(Debug, Clone)]
pub struct FrontDoor<S> {
    inner: S,
    door: Arc<Door>,
}

impl<S> Service<Request> for FrontDoor<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let observation = Observation::start(&self.door, &request);
        let refusal = match self.door.allowed_hosts.check(request.headers()) {
            Err(asked) => {
                Some(ApiError::UnknownHost(self.door.allowed_hosts.refusal(&asked)).into_response())
            }
            Ok(()) => refuse_oversized_body(&request),
        };
        let answer = match refusal {
            Some(refusal) => Answer::Refused(Some(refusal)),
            None => Answer::Routed(self.inner.call(request)),
        };
        Recorded {
            answer,
            observation,
        }
    }
}

/// The answer to one request, which records its status when it is ready.
pub struct Recorded<F> {
    answer: Answer<F>,
    observation: Observation,
}

enum Answer<F> {
    Refused(Option<Response>),
    Routed(F),
}

impl<F> Future for Recorded<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let response = match &mut this.answer {
            Answer::Refused(refusal) => refusal.take().unwrap_or_else(|| {
                // Polled again after it was ready: a caller's bug, answered, never a panic.
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }),
            Answer::Routed(future) => match Pin::new(future).poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(never)) => match never {},
                Poll::Pending => return Poll::Pending,
            },
        };
        this.observation.status = response.status().as_u16();
        Poll::Ready(Ok(response))
    }
}

/// A 413 for a body announced as larger than [`MAX_BODY_BYTES`] (a `Content-Length:
/// 10000000000` is never waited for).
fn refuse_oversized_body(request: &Request) -> Option<Response> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    announced
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        .then(|| ApiError::TooLarge.into_response())
}

/// What nginx logs for a request whose client closed the connection before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// One request being served; recorded when dropped, whether it was answered or abandoned,
/// with bounded labels: the route pattern (or `unmatched`), the method when it is one of
/// HTTP's (else `OTHER`: a peer inventing methods must not grow /metrics), and the status, or
/// 499 when the client went away before the answer.
struct Observation {
    door: Arc<Door>,
    route: Cow<'static, str>,
    method: &'static str,
    started: Instant,
    status: u16,
}

impl Observation {
    fn start(door: &Arc<Door>, request: &Request) -> Self {
        let route = door.route_label(request.extensions().get::<MatchedPath>());
        Observation {
            door: Arc::clone(door),
            route,
            method: method_label(request.method()),
            started: Instant::now(),
            status: CLIENT_CLOSED_REQUEST,
        }
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        self.door
            .metrics
            .requests
            .get_or_create(&RequestLabels {
                route: self.route.clone(),
                method: self.method,
                status: self.status,
            })
            .inc();
        self.door
            .metrics
            .latency
            .get_or_create(&RouteLabels {
                route: self.route.clone(),
            })
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Door {
    /// The route pattern as a metric label: a served route's without an allocation,
    /// `unmatched` when no route matched.
    fn route_label(&self, matched: Option<&MatchedPath>) -> Cow<'static, str> {
        let Some(matched) = matched else {
            return Cow::Borrowed("unmatched");
        };
        self.routes
            .iter()
            .find(|route| **route == matched.as_str())
            .map_or_else(
                || Cow::Owned(matched.as_str().to_owned()),
                |route| Cow::Borrowed(*route),
            )
    }
}

/// The method as a metric label: HTTP's own methods by name, anything else as `OTHER`.
fn method_label(method: &Method) -> &'static str {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("OTHER", Method::as_str)
}
