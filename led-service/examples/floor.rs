//! The floor of led-service's HTTP figures (scripts/bench): a bare axum server that answers
//! `POST /{state}` with the same JSON (`LedView`), with nothing between the socket and the
//! handler (no limits, no timeouts, no metrics, no token or origin checks) and no device.
//! Built the same way as the service (release profile, same allocator), so that
//! led-service's requests/s divided by this server's is what the service's own work costs.
//!
//!   floor 127.0.0.1:0     # prints the bound address on stdout, serves until killed

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use led_service::spelling::parse_state;
use led_service::views::LedView;

/// The service's allocator (led-service's main.rs), so that the ratio compares the work only.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn post_state(Path(raw): Path<String>) -> Result<Json<LedView>, StatusCode> {
    let on = parse_state(&raw).ok_or(StatusCode::UNPROCESSABLE_ENTITY)?;
    let brightness = if on { 255 } else { 0 };
    Ok(Json(LedView {
        on,
        brightness,
        pulse: None,
        changed_at: Some(
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        ),
        changed_by: Some("127.0.0.1 wrk".to_owned()),
        eeprom_byte_writes: 0,
    }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("{}", listener.local_addr()?);
    let app = axum::Router::new().route("/{state}", post(post_state));
    axum::serve(listener, app).await
}
