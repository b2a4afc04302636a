//! The page and the control API. Every event carries the simulator's own monotonic clock
//! (`at_ms`, and `at_us` to the microsecond), so a press and the LED change it causes are timed
//! by one clock.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt as _;
use qwiic_sim::{Fault, LedRegisters, SimButton, SimEvent, SimEventKind};
use serde::{Deserialize, Serialize};
use serde_json::json;
use service_kit::CancellationToken;
use service_kit::guard::AllowedHosts;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

/// Longest click the API accepts.
pub const MAX_CLICK_MS: u64 = 60_000;
/// Longest injected delay the API accepts.
pub const MAX_DELAY_MS: u64 = 10_000;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The one simulated button.
    pub button: SimButton,
    /// Every device event, for the event streams.
    pub events: broadcast::Sender<EventView>,
    /// Cancelled at shutdown, ending the event streams.
    pub shutdown: CancellationToken,
    /// How many clients the `tcp://` bus takes, and how long they may idle.
    pub bus_limits: qwiic_bus::server::Limits,
    /// The names the page and the control API answer to (besides any address).
    pub allowed_hosts: AllowedHosts,
}

/// The routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/state", get(get_state))
        .route("/api/led", get(get_led))
        .route("/api/press", post(press))
        .route("/api/release", post(release))
        .route("/api/click", post(click))
        .route("/api/unplug", post(unplug))
        .route("/api/replug", post(replug))
        .route("/api/eeprom/erase", post(erase_eeprom))
        .route("/api/jumpers", put(set_jumpers))
        .route("/api/faults", put(set_faults))
        .route("/api/events", get(events))
        .route("/api/events/recent", get(recent_events))
        .fallback(|| async { ApiError::NotFound })
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Keeps web pages out (see [`service_kit::guard`]): a request by a name the simulator does not
/// answer to is refused (421), and so is a request from a page of another site that would
/// change something (403): the control API has no token, and it presses the button.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Err(asked) = state.allowed_hosts.check(request.headers()) {
        return ApiError::UnknownHost(state.allowed_hosts.refusal(&asked)).into_response();
    }
    if request.method() != Method::GET {
        if let Some(site) = service_kit::guard::cross_site(request.headers()) {
            return ApiError::CrossSite(site).into_response();
        }
    }
    next.run(request).await
}

/// An error as JSON.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad request body.
    #[error("{0}")]
    Invalid(String),
    /// No such route.
    #[error("no such route; the control API is under /api (see the README)")]
    NotFound,
    /// A name the simulator does not answer to: what to do.
    #[error("{0}")]
    UnknownHost(String),
    /// A browser sent a request from a page of another site.
    #[error(
        "cross-site requests may not drive the simulator: this one came from a page of {0}; use the simulator's own page, or a client that is not a browser (curl)"
    )]
    CrossSite(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::CrossSite(_) => StatusCode::FORBIDDEN,
        };
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::Invalid(rejection.body_text())
    }
}

/// The LED registers and the light they give now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LedView {
    /// 0-255.
    pub brightness: u8,
    /// Pulse step size.
    pub granularity: u8,
    /// Pulse ramp time in ms; 0 = steady.
    pub cycle_ms: u16,
    /// Dark time between pulses in ms.
    pub off_ms: u16,
}

impl From<LedRegisters> for LedView {
    fn from(led: LedRegisters) -> Self {
        LedView {
            brightness: led.brightness,
            granularity: led.granularity,
            cycle_ms: led.cycle_time_ms,
            off_ms: led.off_time_ms,
        }
    }
}

/// One device event as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EventView {
    /// The simulator clock, ms since it started (rounded up).
    pub at_ms: u64,
    /// The same instant in microseconds since it started.
    pub at_us: u64,
    /// `pressed`, `released`, `led` (the output changed), `led_written` (a write to the LED
    /// registers arrived), `unplugged`, `replugged`, `address`, `int` or `int_answered` (the first
    /// status read since the line fell).
    pub kind: &'static str,
    /// The new LED registers, for `led`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub led: Option<LedView>,
    /// The new address, for `address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<u8>,
    /// Whether the INT line is now low, for `int`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<bool>,
}

impl From<SimEvent> for EventView {
    fn from(event: SimEvent) -> Self {
        let mut view = EventView {
            at_ms: event.at_ms,
            at_us: event.at_us,
            kind: "",
            led: None,
            address: None,
            low: None,
        };
        view.kind = match event.kind {
            SimEventKind::Pressed => "pressed",
            SimEventKind::Released => "released",
            SimEventKind::Led(led) => {
                view.led = Some(led.into());
                "led"
            }
            SimEventKind::LedWritten => "led_written",
            SimEventKind::IntAnswered => "int_answered",
            SimEventKind::Unplugged => "unplugged",
            SimEventKind::Replugged => "replugged",
            SimEventKind::AddressChanged(address) => {
                view.address = Some(address);
                "address"
            }
            SimEventKind::Int { low } => {
                view.low = Some(low);
                "int"
            }
        };
        view
    }
}

fn snapshot(button: &SimButton) -> serde_json::Value {
    let stats = button.stats();
    json!({
        "now_ms": button.now_ms(),
        "held": button.is_held(),
        "int_low": button.int_low(),
        "plugged": button.is_plugged(),
        "address": button.address(),
        "eeprom": {
            "bytes": button.eeprom().bytes(),
            "hardware_address": button.eeprom().hardware_address(),
        },
        "led": LedView::from(button.led()),
        "level": button.led_level(),
        "stats": {
            "transactions": stats.transactions,
            "failed_transactions": stats.failed_transactions,
            "led_writes": stats.led_writes,
            "eeprom_byte_writes": stats.eeprom_byte_writes,
            "corrupted_reads": stats.corrupted_reads,
            "corrupted_writes": stats.corrupted_writes,
        },
    })
}

async fn get_state(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(snapshot(&state.button))
}

async fn get_led(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "led": LedView::from(state.button.led()),
        "level": state.button.led_level(),
        "now_ms": state.button.now_ms(),
    }))
}

async fn press(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.button.press();
    Json(snapshot(&state.button))
}

async fn release(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.button.release();
    Json(snapshot(&state.button))
}

/// Body of `POST /api/click`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickRequest {
    /// How long to hold, 1-60000 ms.
    pub ms: u64,
}

async fn click(
    State(state): State<AppState>,
    body: Result<Json<ClickRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = body?;
    if !(1..=MAX_CLICK_MS).contains(&request.ms) {
        return Err(ApiError::Invalid(format!(
            "ms must be 1 to {MAX_CLICK_MS}, got {}",
            request.ms
        )));
    }
    state.button.click(Duration::from_millis(request.ms));
    Ok(Json(snapshot(&state.button)))
}

async fn unplug(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.button.unplug();
    Json(snapshot(&state.button))
}

async fn replug(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.button.replug();
    Json(snapshot(&state.button))
}

/// Erases the EEPROM and boots on it: a button as it leaves the factory (LED on at 255).
async fn erase_eeprom(State(state): State<AppState>) -> Json<serde_json::Value> {
    state.button.erase_eeprom();
    tracing::info!("EEPROM erased; the firmware booted on it");
    Json(snapshot(&state.button))
}

/// Body of `PUT /api/jumpers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JumpersRequest {
    /// Closed address jumpers, bits 0-3 (0-15). The firmware reads them when it starts and
    /// after an address write.
    pub closed: u8,
}

async fn set_jumpers(
    State(state): State<AppState>,
    body: Result<Json<JumpersRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = body?;
    if request.closed > 0x0F {
        return Err(ApiError::Invalid(format!(
            "closed must be 0 to 15 (bits 0-3, one per address jumper), got {}",
            request.closed
        )));
    }
    state.button.set_jumpers(request.closed);
    Ok(Json(snapshot(&state.button)))
}

/// Longest switch bounce the API accepts (the firmware debounces 10 ms by default).
pub const MAX_BOUNCE_MS: u64 = 50;

/// Body of `PUT /api/faults`; omitted fields are left as they are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// Share of transactions that fail with `error`, 0.0-1.0.
    pub error_rate: Option<f64>,
    /// How `error_rate` and `fail_next` fail: `nack` (the default), `bus`, `arbitration` or
    /// `other`, as a Linux adapter reports them.
    #[serde(default)]
    pub error: FaultKind,
    /// Fail exactly the next N transactions with `error`.
    pub fail_next: Option<u32>,
    /// Added to every transaction, 0-10000 ms.
    pub delay_ms: Option<u64>,
    /// Share of reads returned shifted by one bit from one of their bytes on, with no error (a
    /// Raspberry Pi's clock-stretching bug), 0.0-1.0.
    pub corrupt_rate: Option<f64>,
    /// Share of writes acknowledged and then lost or applied one bit late (the same bug, on
    /// writes), 0.0-1.0.
    pub write_corrupt_rate: Option<f64>,
    /// Share of switch edges followed by one more bounce just after the debounce lockout,
    /// which the firmware takes for an edge, 0.0-1.0.
    pub late_bounce_rate: Option<f64>,
    /// How long the switch chatters after each edge (reads of `isPressed` flicker), 0-50 ms.
    pub bounce_ms: Option<u64>,
}

/// A failure kind, by name.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// No acknowledge.
    #[default]
    Nack,
    /// Bus error.
    Bus,
    /// Arbitration lost.
    Arbitration,
    /// Any other error.
    Other,
}

impl From<FaultKind> for Fault {
    fn from(kind: FaultKind) -> Self {
        match kind {
            FaultKind::Nack => Fault::Nack,
            FaultKind::Bus => Fault::Bus,
            FaultKind::Arbitration => Fault::ArbitrationLoss,
            FaultKind::Other => Fault::Other,
        }
    }
}

async fn set_faults(
    State(state): State<AppState>,
    body: Result<Json<FaultRequest>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(request) = body?;
    let invalid = |message: String| ApiError::Invalid(message);
    if let Some(delay) = request.delay_ms.filter(|delay| *delay > MAX_DELAY_MS) {
        return Err(invalid(format!(
            "delay_ms must be 0 to {MAX_DELAY_MS}, got {delay}"
        )));
    }
    if let Some(bounce) = request.bounce_ms.filter(|bounce| *bounce > MAX_BOUNCE_MS) {
        return Err(invalid(format!(
            "bounce_ms must be 0 to {MAX_BOUNCE_MS}, got {bounce}"
        )));
    }
    let in_range = |name: &str, rate: Option<f64>| match rate {
        Some(rate) if !(0.0..=1.0).contains(&rate) => Err(invalid(format!(
            "{name}: fault rate {rate} is out of range: give a fraction from 0.0 (never) to 1.0 (always)"
        ))),
        _ => Ok(()),
    };
    in_range("error_rate", request.error_rate)?;
    in_range("corrupt_rate", request.corrupt_rate)?;
    in_range("write_corrupt_rate", request.write_corrupt_rate)?;
    in_range("late_bounce_rate", request.late_bounce_rate)?;
    let button = &state.button;
    let fault = Fault::from(request.error);
    if let Some(rate) = request.error_rate {
        button
            .set_fault_rate(rate, fault)
            .map_err(|error| invalid(format!("error_rate: {error}")))?;
    }
    if let Some(rate) = request.corrupt_rate {
        button
            .set_corrupt_rate(rate)
            .map_err(|error| invalid(format!("corrupt_rate: {error}")))?;
    }
    if let Some(rate) = request.write_corrupt_rate {
        button
            .set_write_corrupt_rate(rate)
            .map_err(|error| invalid(format!("write_corrupt_rate: {error}")))?;
    }
    if let Some(rate) = request.late_bounce_rate {
        button
            .set_late_bounce_rate(rate)
            .map_err(|error| invalid(format!("late_bounce_rate: {error}")))?;
    }
    if let Some(delay) = request.delay_ms {
        button.set_delay(Duration::from_millis(delay));
    }
    if let Some(bounce) = request.bounce_ms {
        button.set_bounce(Duration::from_millis(bounce));
    }
    if let Some(count) = request.fail_next {
        button.fail_next(count, fault);
    }
    let answer = json!({
        "error_rate": request.error_rate,
        "error": request.error,
        "fail_next": request.fail_next,
        "delay_ms": request.delay_ms,
        "corrupt_rate": request.corrupt_rate,
        "write_corrupt_rate": request.write_corrupt_rate,
        "late_bounce_rate": request.late_bounce_rate,
        "bounce_ms": request.bounce_ms,
    });
    tracing::info!(faults = %answer, "faults set");
    Ok(Json(answer))
}

/// Server-sent events: one `event: device` per press, release, LED change, unplug or replug.
async fn events(State(state): State<AppState>) -> impl IntoResponse {
    // A client too slow to keep up skips what it missed.
    let events = BroadcastStream::new(state.events.subscribe())
        .filter_map(|event| std::future::ready(event.ok()));
    service_kit::sse::json_events("device", events, state.shutdown.cancelled_owned())
}

async fn recent_events(State(state): State<AppState>) -> Json<Vec<EventView>> {
    Json(
        state
            .button
            .recent_events()
            .into_iter()
            .map(EventView::from)
            .collect(),
    )
}

async fn page() -> impl IntoResponse {
    (
        service_kit::guard::PAGE_HEADERS,
        Html(include_str!("../static/index.html")),
    )
}
