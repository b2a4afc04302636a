//! The HTTP client of the LED service: `POST /true` and `/false`, `GET /healthz`, each bounded
//! by a deadline, an error body read only as far as the log needs, and pooled connections
//! dropped before the service would close them.

use std::time::Duration;

use serde::Deserialize;
use service_kit::Secret;

/// How much of an error body is read and reported.
const ERROR_BODY_LIMIT: usize = 300;
/// The most of a /healthz body that is read.
const HEALTH_BODY_LIMIT: usize = 4096;

/// Why a request to the LED service failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Refused, reset, timed out, unresolvable.
    #[error("{url}: {source}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// The answer was not what the LED service answers.
    #[error("{url} answered something else than the LED service's health: {reason}")]
    Body {
        /// The URL requested.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The service answered, but not 2xx.
    #[error("{url} answered {status}: {body}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The start of the response body.
        body: String,
    },
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct LedClient {
    client: reqwest::Client,
    base: reqwest::Url,
    token: Option<Secret>,
}

/// How long an idle connection to the LED service is kept for the next request: not long (a
/// restarted LED container leaves dead ones), and less than the service waits for a request on
/// one ([`Limits::header_read`](service_kit::http::Limits), 5 s), so that a request is never
/// sent on a connection the service is closing at that moment.
const POOL_IDLE: Duration = Duration::from_secs(4);

impl LedClient {
    /// A client for the LED service at `base`, each request bounded by `timeout`.
    pub fn new(
        base: reqwest::Url,
        token: Option<Secret>,
        timeout: Duration,
    ) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("button-service/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(POOL_IDLE)
            .build()?;
        Ok(LedClient {
            client,
            base,
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        self.base
            .join(path)
            .map_or_else(|_| self.base.to_string(), |url| url.to_string())
    }

    /// POSTs `/true` or `/false`.
    pub async fn send(&self, on: bool) -> Result<(), SendError> {
        let url = self.url(if on { "true" } else { "false" });
        let mut request = self.client.post(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        Self::succeed(url, request.send().await).await.map(drop)
    }

    /// `GET /healthz`: the LED service's instance while it can drive the LED.
    pub async fn check(&self) -> Result<String, SendError> {
        #[derive(Deserialize)]
        struct Health {
            instance: String,
        }
        let url = self.url("healthz");
        let response = Self::succeed(url.clone(), self.client.get(&url).send().await).await?;
        let body = read_prefix(response, HEALTH_BODY_LIMIT).await;
        let health: Health = serde_json::from_slice(&body).map_err(|error| SendError::Body {
            url,
            reason: error.to_string(),
        })?;
        Ok(health.instance)
    }

    async fn succeed(
        url: String,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<reqwest::Response, SendError> {
        let response = response.map_err(|source| SendError::Transport {
            url: url.clone(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = read_prefix(response, ERROR_BODY_LIMIT).await;
        Err(SendError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// At most `limit` bytes of a body: a peer that answers with a huge one costs nothing.
async fn read_prefix(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pooled_connection_is_dropped_before_the_led_service_would_close_it() {
        let server_waits = service_kit::http::Limits::default().header_read;
        assert!(
            POOL_IDLE + Duration::from_millis(500) <= server_waits,
            "{POOL_IDLE:?} idle in the pool against the service's {server_waits:?}: a request could meet a closing connection"
        );
    }

    /// A peer that answers 500 with exactly [`ERROR_BODY_LIMIT`] bytes of body and then
    /// neither sends more nor ends it.
    async fn stalling_after_the_error_body_limit() -> (reqwest::Url, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let peer = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            let head = "HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n";
            let chunk = format!(
                "{ERROR_BODY_LIMIT:x}\r\n{}\r\n",
                "e".repeat(ERROR_BODY_LIMIT)
            );
            socket
                .write_all(format!("{head}{chunk}").as_bytes())
                .await
                .unwrap();
            std::future::pending::<()>().await; // holds the connection open
        });
        (url.parse().unwrap(), peer)
    }

    #[tokio::test]
    async fn an_error_body_is_read_up_to_its_limit_and_no_further() {
        let (url, peer) = stalling_after_the_error_body_limit().await;
        let client = LedClient::new(url, None, Duration::from_secs(30)).unwrap();
        let error = tokio::time::timeout(Duration::from_secs(10), client.send(true))
            .await
            .expect("the send waited for more body than it reports")
            .unwrap_err();
        let SendError::Status { status, body, .. } = error else {
            panic!("expected a status error, got {error}");
        };
        assert_eq!(status, reqwest::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "e".repeat(ERROR_BODY_LIMIT));
        peer.abort();
    }
}
