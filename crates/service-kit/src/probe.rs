//! The `healthcheck` subcommand's probe: a plain HTTP/1.0 `GET` over a socket, because the
//! scratch images have no curl and a probe needs nothing more.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// `GET http://{address}{path}` with a deadline; Ok when the status is 2xx.
///
/// A plain HTTP/1.0 request over a socket: the scratch images have no curl, and a probe needs
/// nothing more.
pub fn healthcheck(address: &str, path: &str, timeout: Duration) -> Result<(), String> {
    let addresses: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|error| format!("cannot resolve {address}: {error}"))?
        .collect();
    let target = addresses
        .first()
        .ok_or_else(|| format!("{address} has no address"))?;
    let mut stream = TcpStream::connect_timeout(target, timeout)
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    let io = |error: io::Error| format!("health request to {address} failed: {error}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").map_err(io)?;
    let mut response = Vec::new();
    // A server may reset the connection right after answering; what arrived still counts.
    if let Err(error) = stream.take(64 * 1024).read_to_end(&mut response) {
        if response.is_empty() {
            return Err(io(error));
        }
    }
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("malformed response from {address}: {status_line:?}"))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        Err(format!("{path} answered {status}: {}", body.trim()))
    }
}

/// The address to probe for a listen address: 0.0.0.0 and [::] become loopback.
pub fn probe_address(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        if listen.is_ipv4() {
            "127.0.0.1".to_owned()
        } else {
            "[::1]".to_owned()
        }
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!("{ip}:{}", listen.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_addresses_use_loopback_for_wildcards() {
        assert_eq!(
            probe_address("0.0.0.0:8080".parse().unwrap()),
            "127.0.0.1:8080"
        );
        assert_eq!(probe_address("[::]:8080".parse().unwrap()), "[::1]:8080");
        assert_eq!(probe_address("10.1.2.3:80".parse().unwrap()), "10.1.2.3:80");
    }

    #[test]
    fn healthcheck_reads_the_status() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for reply in [
                "HTTP/1.1 200 OK\r\n\r\nok",
                "HTTP/1.1 503 Service Unavailable\r\n\r\n{\"error\":\"no button\"}",
            ] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut byte = [0];
                while !request.ends_with(b"\r\n\r\n") {
                    stream.read_exact(&mut byte).unwrap();
                    request.push(byte[0]);
                }
                assert!(request.starts_with(b"GET /healthz HTTP/1.0\r\n"));
                stream.write_all(reply.as_bytes()).unwrap();
            }
        });
        assert_eq!(
            healthcheck(&address, "/healthz", Duration::from_secs(2)),
            Ok(())
        );
        let error = healthcheck(&address, "/healthz", Duration::from_secs(2)).unwrap_err();
        assert!(
            error.contains("503") && error.contains("no button"),
            "{error}"
        );
        server.join().unwrap();
    }

    #[test]
    fn healthcheck_reports_a_refused_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let error = healthcheck(&address, "/healthz", Duration::from_secs(1)).unwrap_err();
        assert!(error.contains("cannot connect"), "{error}");
    }
}
