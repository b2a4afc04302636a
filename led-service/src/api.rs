//! The HTTP API: routes, handlers, the bearer-token check, limits and the one error type.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State};
use axum::handler::Handler as _;
use axum::http::{HeaderName, HeaderValue, StatusCode, header, request::Parts};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use prometheus_client::metrics::gauge::Gauge;
use qwiic_bus::Bus;
use qwiic_button::LedConfig;
use serde::{Deserialize, Serialize};
use service_kit::CancellationToken;
use service_kit::http::Limits;
use service_kit::mqtt::Mqtt;
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::WatchStream;
use tokio_util::task::TaskTracker;
use tower::ServiceBuilder;
use tower_http::timeout::TimeoutLayer;
use utoipa::{OpenApi, ToSchema};

use crate::config::Config;
use crate::front_door::FrontDoorLayer;
use crate::led::{DeviceFault, LedDevice, LedState};
use crate::metrics::Metrics;
use crate::state::{ACCEPTED, parse_state};

/// Largest request body: a full `PUT /led` is under 100 bytes.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Deadline of a request that sends a body (`PUT /led`), from its head to its answer: a body
/// that stalls is answered 408. (The other device routes wait only for the device, which has its
/// own deadline, `--bus-timeout`.)
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Live event streams at once (each holds a connection and a little memory).
pub const MAX_EVENT_STREAMS: usize = 64;

/// What every handler shares: one allocation, so that the clone each request makes of it is
/// one reference count (a clone of every field cost ~10% of the throughput).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The LED's owner.
    pub led: LedDevice,
    /// Metrics for /metrics.
    pub metrics: Metrics,
    /// When set, mutating routes need `Authorization: Bearer <token>`.
    pub token: Option<Arc<str>>,
    /// Brightness of `POST /true`.
    pub default_brightness: u8,
    /// Cancelled when the service starts shutting down: live streams end.
    pub shutdown: CancellationToken,
    /// Random at every start, in /healthz: a client that sees it change knows the service
    /// restarted (and switched the LED off on its way out).
    pub instance: Arc<str>,
    /// Slots for live event streams.
    pub streams: Arc<Semaphore>,
    /// Requests on the device routes now (at most `limits.requests`; see [`RequestSlot`]).
    device_requests: Arc<AtomicUsize>,
    /// How long a peer may hold a connection, and how many it may open.
    pub limits: Limits,
    /// The MQTT link, when MQTT is set.
    pub mqtt: Option<Mqtt>,
    /// Tasks [`run`](crate::run) waits for at the end (the MQTT task's goodbye).
    pub tasks: TaskTracker,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The API token file could not be read.
    #[error(transparent)]
    Token(#[from] service_kit::args::SecretError),
    /// The MQTT settings are unusable.
    #[error(transparent)]
    Mqtt(#[from] service_kit::mqtt::MqttSettingsError),
    /// The LED's owner thread could not start.
    #[error("cannot start the LED's owner thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl AppState {
    /// The one way to build the state: starts the LED's owner on `bus` (opened from
    /// `config`'s bus string, or a test's simulated button) as `config` says. `shutdown` ends
    /// the live streams.
    pub fn start(
        bus: Bus,
        config: &Config,
        shutdown: CancellationToken,
    ) -> Result<AppState, StartError> {
        let metrics = Metrics::default();
        let link = config
            .service
            .link(bus, metrics.bus.clone(), "retrying on every request");
        let led = LedDevice::spawn(link, &metrics, config.bus_timeout)?;
        let tasks = TaskTracker::new();
        let mqtt = config.mqtt.settings()?.map(|settings| {
            let (mqtt, commands) = Mqtt::start("led", settings, metrics.mqtt.clone());
            tasks.spawn(crate::mqtt::run(
                mqtt.clone(),
                commands,
                led.clone(),
                config.brightness,
                metrics.clone(),
                shutdown.clone(),
            ));
            mqtt
        });
        Ok(AppState(Arc::new(Shared {
            led,
            metrics,
            token: config.service.api_token()?.map(Arc::from),
            default_brightness: config.brightness,
            shutdown,
            instance: Arc::from(format!("{:016x}", fastrand::u64(..))),
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
            device_requests: Arc::new(AtomicUsize::new(0)),
            limits: Limits::default(),
            mqtt,
            tasks,
        })))
    }

    /// The same state with other connection and request limits (tests use small ones).
    pub fn with_limits(mut self, limits: Limits) -> AppState {
        Arc::make_mut(&mut self.0).limits = limits;
        self
    }
}

/// The LED as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedView {
    /// True when the LED gives light (brightness above 0).
    pub on: bool,
    /// 0-255.
    #[schema(minimum = 0, maximum = 255)]
    pub brightness: u8,
    /// Pulse settings; `null` when the LED is steady.
    pub pulse: Option<Pulse>,
    /// When this service last changed the LED (RFC 3339, UTC); `null` if it has not yet.
    pub changed_at: Option<String>,
    /// Who changed it: the client's address and User-Agent, or `shutdown`.
    pub changed_by: Option<String>,
    /// EEPROM bytes this service's writes changed since it started: the button's firmware saves
    /// every changed LED byte, and each byte lasts about 100,000 writes.
    pub eeprom_byte_writes: u64,
}

impl From<LedState> for LedView {
    fn from(state: LedState) -> Self {
        let led = state.led;
        LedView {
            on: led.is_on(),
            brightness: led.brightness,
            pulse: (led.cycle_time_ms != 0).then_some(Pulse {
                cycle_ms: led.cycle_time_ms,
                off_ms: led.off_time_ms,
                granularity: led.granularity,
            }),
            changed_at: state
                .change
                .as_ref()
                .map(|c| humantime::format_rfc3339_millis(c.at).to_string()),
            changed_by: state.change.map(|c| c.by),
            eeprom_byte_writes: state.eeprom_byte_writes,
        }
    }
}

/// Pulse settings of the LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pulse {
    /// Length of one ramp up and down, in ms (1-65535).
    #[serde(deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 1, maximum = 65535)]
    pub cycle_ms: u16,
    /// Dark time between pulses, in ms (0-65535).
    #[serde(default, deserialize_with = "crate::integer::deserialize")]
    #[schema(minimum = 0, maximum = 65535)]
    pub off_ms: u16,
    /// Brightness step size (1-255).
    #[serde(
        default = "default_granularity",
        deserialize_with = "crate::integer::deserialize"
    )]
    #[schema(minimum = 1, maximum = 255)]
    pub granularity: u8,
}

fn default_granularity() -> u8 {
    1
}

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

/// Every route pattern [`app`] serves: the metrics label them without an allocation (a
/// pattern missing here is labelled all the same, with one).
pub(crate) const ROUTES: [&str; 7] = [
    "/",
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/events",
    "/led",
    "/{state}",
];

/// The router with every route, limit and the metrics middleware.
///
/// The routes that use the device take a [`RequestSlot`]: at most `state.limits.requests` at
/// once, more answered 503 at once (never queued). `/healthz`, `/metrics` and the page are
/// outside that limit, so they answer while a flood is shed (the event streams have their own
/// cap). Every route refuses a body announced over [`MAX_BODY_BYTES`] before reading it
/// (the front door); the one route that reads a body, `PUT /led`, also stops reading one that
/// grows past it unannounced (chunked), and answers 408 when it has not arrived within
/// [`REQUEST_TIMEOUT`].
pub fn app(state: AppState) -> Router {
    let body_limits = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/events", get(events))
        .route("/led", get(get_led).put(put_led.layer(body_limits)))
        .route("/{state}", post(post_state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Each `layer` call wraps every route once more, and each wrapping costs every request
        // a boxed clone of the route and a boxed future: the front door is the only one.
        .layer(FrontDoorLayer::new(state.metrics.clone()))
        .with_state(state)
}

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
        /// 400, 413, 415 or 422.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
    /// Missing or wrong token.
    #[error("this route needs `Authorization: Bearer <token>` with the service's API token")]
    Unauthorized,
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::InvalidState(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidBody { status, .. } => *status,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::CrossSite(_) => StatusCode::FORBIDDEN,
            ApiError::Overloaded | ApiError::TooManyStreams => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Device(DeviceFault::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Device(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        };
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
        if matches!(
            self,
            ApiError::Device(DeviceFault::Busy) | ApiError::Overloaded | ApiError::TooManyStreams
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
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
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                )
            }
            other => (other.status(), other.body_text()),
        };
        ApiError::InvalidBody { status, message }
    }
}

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
        if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
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
        let header = |name| {
            parts
                .headers
                .get(name)
                .map(|value| value.to_str().unwrap_or("?"))
        };
        let origin = header(header::ORIGIN);
        let cross_site = match (header(HeaderName::from_static("sec-fetch-site")), origin) {
            // The browser's own verdict: "none" is a person typing the URL.
            (Some(site), _) => !matches!(site, "same-origin" | "none"),
            (None, Some(origin)) => {
                let host = header(header::HOST).unwrap_or_default();
                !(origin == format!("http://{host}") || origin == format!("https://{host}"))
            }
            (None, None) => false,
        };
        if cross_site {
            return Err(ApiError::CrossSite(
                origin.unwrap_or("another site").chars().take(100).collect(),
            ));
        }
        Ok(SameOrigin)
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

/// A whole LED setting for `PUT /led`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LedRequest {
    /// Light or dark.
    pub on: bool,
    /// 0-255 (default: the service's default brightness); 0 means dark. Ignored when off.
    #[serde(default, deserialize_with = "crate::integer::deserialize_option")]
    #[schema(minimum = 0, maximum = 255)]
    pub brightness: Option<u8>,
    /// Pulse instead of steady light; omit or `null` for steady.
    pub pulse: Option<Pulse>,
}

impl LedRequest {
    fn to_config(&self, default_brightness: u8) -> Result<LedConfig, ApiError> {
        let invalid = |message: &str| ApiError::InvalidBody {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: message.to_owned(),
        };
        // Every field is checked, even the ones an "off" makes moot: what is refused must not
        // depend on the value of another field.
        if let Some(pulse) = self.pulse {
            if pulse.cycle_ms == 0 {
                return Err(invalid(
                    "pulse.cycle_ms must be 1-65535; omit pulse for a steady light",
                ));
            }
            if pulse.granularity == 0 {
                return Err(invalid(
                    "pulse.granularity must be 1-255 (0 would make the firmware divide by zero)",
                ));
            }
        }
        let brightness = self.brightness.unwrap_or(default_brightness);
        if !self.on || brightness == 0 {
            return Ok(LedConfig::OFF);
        }
        Ok(match self.pulse {
            Some(pulse) => LedConfig {
                brightness,
                granularity: pulse.granularity,
                cycle_time_ms: pulse.cycle_ms,
                off_time_ms: pulse.off_ms,
            },
            None => LedConfig::steady(brightness),
        })
    }
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
    body: Result<Json<LedRequest>, JsonRejection>,
) -> Result<Json<LedView>, ApiError> {
    let Json(request) = body?;
    let led = request.to_config(state.default_brightness)?;
    Ok(Json(state.led.set(led, by).await?.into()))
}

/// Health of the service.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
    /// The button's firmware version.
    pub firmware: String,
    /// Changes when the service restarts (random at every start).
    pub instance: String,
    /// The MQTT link (`connected`, `connecting` or `down: why`), when MQTT is set; it never
    /// makes the service unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
}

/// 200 while the button answers with its ID, else 503 with the reason.
#[utoipa::path(
    get,
    path = "/healthz",
    responses(
        (status = 200, description = "The button answers", body = Health),
        (status = 503, description = "The button does not answer; the reason says what to check", body = ErrorBody),
    )
)]
async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let firmware = state.led.health().await?;
    Ok(Json(Health {
        status: "ok",
        firmware: firmware.to_string(),
        instance: state.instance.to_string(),
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
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// The LED as server-sent events: one `led` event per change, ending when the service stops.
/// At most [`MAX_EVENT_STREAMS`] at once.
async fn events(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let slot = Arc::clone(&state.streams)
        .try_acquire_owned()
        .map_err(|_| ApiError::TooManyStreams)?;
    let open = StreamGauge::new(state.metrics.event_streams.clone(), slot);
    let stream = WatchStream::new(state.led.updates())
        .filter_map(std::future::ready)
        .map(|led| {
            let view = LedView::from(led);
            let event = Event::default().event("led").json_data(view);
            Ok::<_, Infallible>(
                event.unwrap_or_else(|_| Event::default().comment("encoding failed")),
            )
        })
        .take_until(state.shutdown.clone().cancelled_owned())
        // The gauge and the slot are released when the stream is dropped.
        .map(move |event| {
            let _ = &open;
            event
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One open event stream: counted in /metrics while it lives, holding its slot.
struct StreamGauge {
    gauge: Gauge,
    _slot: OwnedSemaphorePermit,
}

impl StreamGauge {
    fn new(gauge: Gauge, slot: OwnedSemaphorePermit) -> Self {
        gauge.inc();
        StreamGauge { gauge, _slot: slot }
    }
}

impl Drop for StreamGauge {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("../static/index.html"))
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
