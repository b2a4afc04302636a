//! What keeps web pages away from a service that has no login: a browser will send a request
//! anywhere a page tells it to, so a page a person opens on the LAN could drive the LED.
//!
//! - [`AllowedHosts`]: the names the service answers to. DNS rebinding points a name the
//!   attacker owns at the device, so that the attacker's page counts as same-origin: a request
//!   whose `Host` is a name outside the list is refused (421). IP literals are always fine (a
//!   page loaded from an address is that address's own), and so are `localhost` and this
//!   machine's host name.
//! - [`cross_site`]: a request a browser sent from a page of another site (its
//!   `Sec-Fetch-Site`, or an `Origin` that is not the `Host`); routes that change something
//!   refuse it. Clients that are not browsers (curl, button-service) send neither and pass.
//! - [`PAGE_HEADERS`]: a page may not be framed by another site (clickjacking of its buttons).

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, header};

/// The headers every page is served with: no site may frame it.
pub const PAGE_HEADERS: [(HeaderName, &str); 2] = [
    (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// The flag that names the service's host names, shared by every service with a page.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    /// Host names the service answers to besides localhost, this machine's host name and any
    /// IP address (comma-separated, such as `jetson,jetson.local`); a request by another name
    /// is refused (421), which stops DNS rebinding.
    #[arg(long, env = "ALLOWED_HOSTS", value_delimiter = ',', value_parser = parse_host_name)]
    pub allowed_hosts: Vec<String>,
}

/// Checks a host name for clap: letters, digits, `-` and `.`, at most 253 characters.
fn parse_host_name(input: &str) -> Result<String, String> {
    let name = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if name.is_empty() && input.trim().is_empty() {
        // An empty entry (ALLOWED_HOSTS="" from compose) adds nothing.
        return Ok(String::new());
    }
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "{input:?} is not a host name: use letters, digits, '-' and '.', such as jetson.local (addresses need no entry)"
        ))
    }
}

/// The names a service answers to. Clones share the list.
#[derive(Debug, Clone)]
pub struct AllowedHosts(Arc<[String]>);

impl AllowedHosts {
    /// `localhost`, this machine's host name (also with `.local`), and `extra`.
    pub fn new(extra: &[String]) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host = host.trim().to_ascii_lowercase();
        let mut names = vec!["localhost".to_owned()];
        if !host.is_empty() {
            names.push(format!("{host}.local"));
            names.push(host);
        }
        names.extend(extra.iter().filter(|name| !name.is_empty()).cloned());
        names.sort();
        names.dedup();
        AllowedHosts(names.into())
    }

    /// The names, for messages.
    pub fn names(&self) -> &[String] {
        &self.0
    }

    /// `Ok` when the request's `Host` is allowed (or absent: not a browser); else the name it
    /// asked for, for the refusal.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(host) = headers.get(header::HOST) else {
            return Ok(());
        };
        let host = host.to_str().unwrap_or("?");
        let name = strip_port(host);
        if name.parse::<IpAddr>().is_ok()
            || self
                .0
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(name.trim_end_matches('.')))
        {
            return Ok(());
        }
        Err(host.chars().take(100).collect())
    }

    /// The message a refused request gets.
    pub fn refusal(&self, asked: &str) -> String {
        format!(
            "this service does not answer to the name {asked:?}: use its address, or add the name to ALLOWED_HOSTS (it answers to any IP address and to {})",
            self.0.join(", ")
        )
    }
}

/// A `Host` value without its port; an IPv6 literal without its brackets.
fn strip_port(host: &str) -> &str {
    if let Some(bracketed) = host.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    }
}

/// The site a browser says this request came from, when that is another site than the
/// service's own; `None` for a same-site request and for clients that are not browsers.
pub fn cross_site(headers: &HeaderMap) -> Option<String> {
    let header = |name| headers.get(name).map(|value| value.to_str().unwrap_or("?"));
    let origin = header(header::ORIGIN);
    let cross = match (header(HeaderName::from_static("sec-fetch-site")), origin) {
        // The browser's own verdict: "none" is a person typing the URL.
        (Some(site), _) => !matches!(site, "same-origin" | "none"),
        (None, Some(origin)) => {
            let host = header(header::HOST).unwrap_or_default();
            !(origin == format!("http://{host}") || origin == format!("https://{host}"))
        }
        (None, None) => false,
    };
    cross.then(|| origin.unwrap_or("another site").chars().take(100).collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn addresses_localhost_and_listed_names_are_answered_and_other_names_refused() {
        let allowed = AllowedHosts::new(&["jetson.local".to_owned(), String::new()]);
        for host in [
            "192.168.1.20:8080",
            "[fe80::1]:8080",
            "[::1]",
            "localhost:8080",
            "LOCALHOST",
            "jetson.local:8080",
            "jetson.local.",
        ] {
            assert!(allowed.check(&headers(&[("host", host)])).is_ok(), "{host}");
        }
        assert!(
            allowed.check(&headers(&[])).is_ok(),
            "no Host: not a browser"
        );
        let asked = allowed
            .check(&headers(&[("host", "rebind.attacker.example:8080")]))
            .unwrap_err();
        let message = allowed.refusal(&asked);
        assert!(
            message.contains("\"rebind.attacker.example:8080\"")
                && message.contains("ALLOWED_HOSTS")
                && message.contains("jetson.local"),
            "{message}"
        );
    }

    #[test]
    fn host_names_in_the_flag_are_checked() {
        assert_eq!(parse_host_name(" Jetson.Local. ").unwrap(), "jetson.local");
        assert_eq!(parse_host_name("").unwrap(), "");
        let message = parse_host_name("bad name").unwrap_err();
        assert!(message.contains("not a host name"), "{message}");
    }

    #[test]
    fn browsers_say_when_a_page_of_another_site_sent_the_request() {
        let cases: [(&[(&str, &str)], bool); 6] = [
            (
                &[("sec-fetch-site", "cross-site"), ("origin", "http://evil")],
                true,
            ),
            (&[("sec-fetch-site", "same-origin")], false),
            (&[("sec-fetch-site", "none")], false),
            (&[("origin", "http://evil"), ("host", "led:8080")], true),
            (
                &[("origin", "http://led:8080"), ("host", "led:8080")],
                false,
            ),
            (&[], false),
        ];
        for (pairs, cross) in cases {
            assert_eq!(cross_site(&headers(pairs)).is_some(), cross, "{pairs:?}");
        }
    }
}
