//! The HTTP API: the one table of routes that the router and the metrics labels are both built
//! from, the handlers, and the OpenAPI document generated from them. What handlers share is in
//! [`state`](crate::state), what they extract in [`extract`](crate::extract), what they answer
//! in [`views`](crate::views) and [`error`](crate::error).

use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::handler::Handler as _;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use qwiic_button::LedConfig;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

use crate::error::{ApiError, ErrorBody};
use crate::events::events;
use crate::extract::{AppJson, Authorized, RequestSlot, Requester, SameOrigin};
use crate::front_door::FrontDoorLayer;
use crate::led::DeviceFault;
use crate::limits::{MAX_BODY_BYTES, REQUEST_TIMEOUT};
use crate::spelling::parse_state;
use crate::state::AppState;
use crate::views::{Health, LedRequest, LedView, Pulse};

/// The API description, generated from the handlers below.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "led-service",
        description = "Drives the SparkFun Qwiic Button's LED. Compatible with the original FastAPI service: POST /True and /False keep working."
    ),
    paths(post_state, get_led, put_led, healthz, metrics),
    components(schemas(LedView, Pulse, LedRequest, ErrorBody, Health)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every route: its pattern and what serves it, the one table the router and the metrics
/// labels are built from.
///
/// The routes that use the device take a [`RequestSlot`]: at most `state.limits.requests` at
/// once, more answered 503 at once (never queued). `/healthz`, `/metrics` and the page are
/// outside that limit, so they answer while a flood is shed (the event streams have their own
/// cap). `PUT /led`, the one route that reads a body, stops reading one that grows past
/// [`MAX_BODY_BYTES`] unannounced (chunked), and answers 408 when it has not arrived within
/// [`REQUEST_TIMEOUT`]; every route refuses a body announced over the limit before reading it
/// (the front door).
fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let body_limits = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    vec![
        ("/", get(page)),
        ("/healthz", get(healthz)),
        ("/metrics", get(metrics)),
        ("/openapi.json", get(openapi)),
        ("/events", get(events)),
        ("/led", get(get_led).put(put_led.layer(body_limits))),
        ("/{state}", post(post_state)),
    ]
}

/// The router: every route of [`routes`], behind the front door.
pub fn app(state: AppState) -> Router {
    let routes = routes();
    let labels = routes.iter().map(|(pattern, _)| *pattern).collect();
    routes
        .into_iter()
        .fold(Router::new(), |router, (pattern, handler)| {
            router.route(pattern, handler)
        })
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Each `layer` call wraps every route once more, and each wrapping costs every request
        // a boxed clone of the route and a boxed future: the front door is the only one.
        .layer(FrontDoorLayer::new(
            state.metrics.clone(),
            labels,
            state.allowed_hosts.clone(),
        ))
        .with_state(state)
}

/// Switch the LED on or off.
///
/// Accepts what the original FastAPI service accepted: true/false, 1/0, yes/no, on/off, t/f,
/// y/n, in any case (the original button module sends `/True` and `/False`). Re-sending the
/// current state writes nothing to the device.
#[utoipa::path(
    post,
    path = "/{state}",
    params(("state" = String, Path,
        description = "true/false, 1/0, yes/no, on/off, t/f or y/n, any case",
        pattern = "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|1|0|[Yy][Ee][Ss]|[Nn][Oo]|[Oo][Nn]|[Oo][Ff][Ff]|[Tt]|[Ff]|[Yy]|[Nn])$")),
    responses(
        (status = 200, description = "The LED after the change", body = LedView),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Sent by a browser from a page of another site", body = ErrorBody),
        (status = 421, description = "Asked by a name the service does not answer to (ALLOWED_HOSTS)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Not a state; lists the accepted values", body = ErrorBody),
        (status = 503, description = "The button does not answer", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
async fn post_state(
    _: RequestSlot,
    _: SameOrigin,
    _: Authorized,
    State(state): State<AppState>,
    by: Requester,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<LedView>, ApiError> {
    let Path(raw) = path.map_err(|rejection| ApiError::InvalidState(rejection.body_text()))?;
    let on =
        parse_state(&raw).ok_or_else(|| ApiError::InvalidState(raw.chars().take(32).collect()))?;
    let led = if on {
        LedConfig::steady(state.default_brightness)
    } else {
        LedConfig::OFF
    };
    Ok(Json(state.led.set(led, by).await?.into()))
}

/// Read the LED from the device.
#[utoipa::path(
    get,
    path = "/led",
    responses(
        (status = 200, description = "The LED as the device reports it", body = LedView),
        (status = 503, description = "The button does not answer", body = ErrorBody),
    )
)]
async fn get_led(_: RequestSlot, State(state): State<AppState>) -> Result<Json<LedView>, ApiError> {
    Ok(Json(state.led.get().await?.into()))
}

/// Set the whole LED: on/off, brightness and pulse.
#[utoipa::path(
    put,
    path = "/led",
    request_body = LedRequest,
    responses(
        (status = 200, description = "The LED after the change", body = LedView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "Sent by a browser from a page of another site", body = ErrorBody),
        (status = 421, description = "Asked by a name the service does not answer to (ALLOWED_HOSTS)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not application/json", body = ErrorBody),
        (status = 422, description = "Out-of-range or unknown fields", body = ErrorBody),
        (status = 503, description = "The button does not answer", body = ErrorBody),
    ),
    security((), ("bearer" = []))
)]
async fn put_led(
    _: RequestSlot,
    _: SameOrigin,
    _: Authorized,
    State(state): State<AppState>,
    by: Requester,
    AppJson(request): AppJson<LedRequest>,
) -> Result<Json<LedView>, ApiError> {
    let led = request.to_config(state.default_brightness)?;
    Ok(Json(state.led.set(led, by).await?.into()))
}

/// 200 while the service serves, with whether the button answers (`status`: `ok` or
/// `degraded`, and `button`: why not): a missing button is not the service failing, and
/// restarting it would not bring the button back. 503 only while it shuts down.
#[utoipa::path(
    get,
    path = "/healthz",
    responses(
        (status = 200, description = "The service serves; `status` says whether the button answers", body = Health),
        (status = 503, description = "The service is shutting down", body = ErrorBody),
    )
)]
async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let (status, button, firmware) = match state.led.health().await {
        Ok(firmware) => ("ok", "ok".to_owned(), Some(firmware.to_string())),
        Err(DeviceFault::Stopped) => return Err(DeviceFault::Stopped.into()),
        Err(fault) => ("degraded", fault.to_string(), None),
    };
    Ok(Json(Health {
        status,
        button,
        firmware,
        instance: state.instance.to_string(),
        bus: state.bus.to_string(),
        simulated: state.bus.is_simulated(),
        mqtt: state.mqtt.as_ref().map(|mqtt| mqtt.health().to_string()),
    }))
}

/// Prometheus metrics, text format.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus/OpenMetrics text exposition", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"))
)]
async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.response()
}

async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

async fn page() -> impl IntoResponse {
    (
        service_kit::guard::PAGE_HEADERS,
        Html(include_str!("../static/index.html")),
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_the_api_document_is_in_the_route_table() {
        let served: Vec<&str> = routes().iter().map(|(pattern, _)| *pattern).collect();
        for path in ApiDoc::openapi().paths.paths.keys() {
            assert!(
                served.contains(&path.as_str()),
                "{path} is documented but not in api::routes()"
            );
        }
    }
}
