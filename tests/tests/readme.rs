//! The README and docs/ cannot drift: the configuration table matches the flags in the code, every
//! script and option it shows exists, every method and route it documents is served by the
//! real router, every state spelling it shows means what it says to the real parser, the
//! limits it gives are the code's, and every command it gives that runs without hardware or a
//! registry is run by this suite or by scripts/test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

mod code_settings;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use button_service::config::Cli as ButtonCli;
use clap::Parser as _;
use led_service::config::Cli;
use led_service::spelling::parse_state;
use qwiic_bus::Bus;
use qwiic_sim::SimButton;
use service_kit::CancellationToken;
use tower::ServiceExt as _;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap()
}

/// The README followed by each file of docs/, in name order: a section is found wherever it
/// lives.
fn documentation() -> String {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "md"))
        .collect();
    pages.sort();
    pages.iter().fold(read("README.md"), |text, page| {
        text + "\n" + &std::fs::read_to_string(page).unwrap()
    })
}

/// One row of the README's configuration table: (service, flag, env, default).
type Row = (String, String, String, Option<String>);

/// The configuration table, with "both" rows expanded to led and button.
fn documented_settings(readme: &str) -> BTreeSet<Row> {
    let table = section(readme, "## Configuration");
    let unquote = |cell: &str| {
        let cell = cell.trim();
        cell.strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .map(str::to_owned)
    };
    let mut rows = BTreeSet::new();
    for line in table.lines().filter(|line| line.starts_with("| ")) {
        let cells: Vec<&str> = line.split('|').collect();
        let (Some(flag), Some(env)) = (unquote(cells[2]), unquote(cells[3])) else {
            continue; // the header and the separator
        };
        let default = unquote(cells[4]);
        assert!(
            default.is_some() || cells[4].trim() == "none",
            "{line}: a default is `value` or none"
        );
        let services: &[&str] = match cells[1].trim() {
            "both" => &["led", "button"],
            "led" => &["led"],
            "button" => &["button"],
            "simulator" => &["simulator"],
            other => panic!("unknown service {other:?} in {line}"),
        };
        for service in services {
            rows.insert((
                service.to_string(),
                flag.clone(),
                env.clone(),
                default.clone(),
            ));
        }
    }
    rows
}

/// Every setting each binary's command line has, read from clap itself.
fn settings_in_code() -> BTreeSet<Row> {
    code_settings::settings_in_code()
        .into_iter()
        .map(|(service, setting)| {
            (
                service.to_owned(),
                setting.flag,
                setting.env,
                setting.default,
            )
        })
        .collect()
}

/// The text of a README section, up to the next `## ` heading.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    readme
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("the README has no {heading:?}"))
        .split("\n## ")
        .next()
        .unwrap()
}

#[test]
fn the_configuration_table_lists_exactly_the_settings_each_binary_takes() {
    let documented = documented_settings(&documentation());
    let in_code = settings_in_code();
    let missing: Vec<_> = in_code.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&in_code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "README configuration table vs each binary's flags (service, flag, env, default):\nnot documented: {missing:#?}\ndocumented but not in the code: {stale:#?}"
    );
}

#[test]
fn compose_variables_in_the_readme_exist_in_the_compose_files() {
    let readme = documentation();
    let compose = read("docker-compose.yml")
        + &read("docker-compose.override.yml")
        + &read("docker-compose.device.yml")
        + &read("docker-compose.token.yml");
    let paragraph = readme
        .split("Compose also reads")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let mut seen = 0;
    for name in paragraph.split('`').skip(1).step_by(2) {
        if name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            assert!(
                compose.contains(&format!("${{{name}")),
                "{name} is not used by the compose files"
            );
            seen += 1;
        }
    }
    assert!(seen >= 6, "the paragraph lost its variables");
    for name in ["COMPOSE_FILE", "I2C_DEVICE", "I2C_GID"] {
        assert!(
            read("init_os.sh").contains(&format!("{name}=")),
            "init_os.sh must write {name}"
        );
    }
}

#[test]
fn every_script_and_option_shown_exists() {
    let readme = documentation();
    let mut checked = 0;
    // Each command of a line on its own: `a && b | c` is three.
    for line in readme
        .lines()
        .flat_map(|line| line.split("&&"))
        .flat_map(|part| part.split(" | "))
    {
        for word in line.split(|c: char| c.is_whitespace() || c == '`' || c == '(' || c == ')') {
            if let Some(script) = word
                .strip_prefix("scripts/")
                .filter(|s| !s.is_empty() && !s.contains('<'))
            {
                let script = script.trim_end_matches([',', '.', ':', ';']);
                let path = root().join("scripts").join(script);
                assert!(
                    path.exists(),
                    "README names scripts/{script}, which does not exist"
                );
                let source = std::fs::read_to_string(&path).unwrap();
                // Every --option on the same line must be one the script handles.
                for option in line.split_whitespace().filter(|w| w.starts_with("--")) {
                    let option = option.trim_end_matches([',', '.', ';', '`', ')']);
                    assert!(source.contains(option), "scripts/{script} has no {option}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 8, "only {checked} script mentions found");
    let init = read("init_os.sh");
    for option in ["--dry-run", "--bus"] {
        assert!(init.contains(option) && readme.contains(option));
    }
}

/// The code spans of `text`: what the README writes between backticks.
fn code_spans(text: &str) -> impl Iterator<Item = &str> {
    text.split('`').skip(1).step_by(2)
}

/// `GET /led` as (GET, /led), for a span that is an HTTP method and a route.
fn method_and_route(span: &str) -> Option<(Method, String)> {
    let (method, route) = span.split_once(' ')?;
    let method = match method {
        "GET" => Method::GET,
        "POST" => Method::POST,
        "PUT" => Method::PUT,
        "DELETE" => Method::DELETE,
        "PATCH" => Method::PATCH,
        _ => return None,
    };
    route.starts_with('/').then(|| (method, route.to_owned()))
}

/// The routes of one paragraph of the API section that starts with `opening`: each is
/// `METHOD /route`, or a bare `/route` with the method of the one before (GET at first).
fn documented_routes_of(api: &str, opening: &str) -> Vec<(Method, String)> {
    let paragraph = api
        .split("\n\n")
        .find(|paragraph| paragraph.starts_with(opening))
        .unwrap_or_else(|| panic!("the API section has no paragraph starting {opening:?}"));
    let mut method = Method::GET;
    let mut routes = Vec::new();
    for span in code_spans(paragraph) {
        if let Some((named, route)) = method_and_route(span) {
            method = named;
            routes.push((method.clone(), route));
        } else if span.starts_with('/') {
            routes.push((method.clone(), span.to_owned()));
        }
    }
    routes
}

/// Sends `method route` (with a body the route takes) through `router`; the status.
async fn status_of(
    router: &axum::Router,
    method: &Method,
    route: &str,
    body: Option<&str>,
) -> StatusCode {
    let mut request = Request::builder().method(method.clone()).uri(route);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_owned()));
    router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap()
        .status()
}

/// Sends every documented route through `router` and asserts each is served (neither 404 nor
/// 405); `request` gives the path and body to send for a documented route.
async fn assert_served(
    service: &str,
    router: &axum::Router,
    routes: &[(Method, String)],
    request: impl Fn(&str) -> (String, Option<&'static str>),
) {
    // The check can fail: this router does answer 404 to a route nobody documents.
    let status = status_of(router, &Method::GET, "/no/such/route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{service}");
    for (method, route) in routes {
        let (path, body) = request(route);
        let status = status_of(router, method, &path, body).await;
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "the README documents {method} {route} on {service}, which answers {status}"
        );
    }
}

#[tokio::test]
async fn every_documented_method_and_route_is_served_by_its_router() {
    let readme = documentation();
    let api = section(&readme, "## The API");

    // led-service: the table's `METHOD /route` spans (GET /events is in the page's row).
    let led_routes: Vec<_> = api
        .lines()
        .filter(|line| line.starts_with("| `"))
        .flat_map(code_spans)
        .filter_map(method_and_route)
        .collect();
    assert!(led_routes.len() >= 8, "{led_routes:?}");
    let Cli { config, .. } = Cli::parse_from(["led-service", "--bus=sim"]);
    let state = led_service::AppState::start(
        Bus::Sim(SimButton::new()),
        &config.resolve().unwrap(),
        CancellationToken::new(),
    )
    .unwrap();
    assert_served(
        "led-service",
        &led_service::app(state),
        &led_routes,
        |route| match route {
            "/led" => ("/led".to_owned(), Some(r#"{"on": true}"#)),
            route => (route.replace("{state}", "true"), None),
        },
    )
    .await;

    // button-service: its internal /healthz and /metrics.
    let button_routes = documented_routes_of(api, "button-service serves");
    assert!(button_routes.len() >= 2, "{button_routes:?}");
    let ButtonCli {
        config: button_config,
        ..
    } = ButtonCli::parse_from(["button-service", "--bus=sim"]);
    let metrics = button_service::metrics::Metrics::default();
    let link = button_config.device.link(
        Bus::Sim(SimButton::new()),
        metrics.bus.clone(),
        "retrying every poll",
    );
    let status = button_service::status::app(button_service::status::Status {
        button: link.health(),
        led_service: tokio::sync::watch::channel(button_service::sender::LinkState::Starting).1,
        metrics,
        mqtt: None,
    });
    assert_served("button-service", &status, &button_routes, |route| {
        (route.to_owned(), None)
    })
    .await;

    // The simulator's control API.
    let simulator_routes = documented_routes_of(api, "The simulator serves");
    assert!(simulator_routes.len() >= 10, "{simulator_routes:?}");
    let simulator = simulator::app(simulator::AppState::new(
        SimButton::new(),
        CancellationToken::new(),
    ));
    assert_served("the simulator", &simulator, &simulator_routes, |route| {
        let body = match route {
            "/api/click" => Some(r#"{"ms": 10}"#),
            "/api/faults" => Some(r#"{"fail_next": 0}"#),
            _ => None,
        };
        (route.to_owned(), body)
    })
    .await;
}

#[test]
fn the_limits_the_api_section_gives_are_the_code_s() {
    let readme = documentation();
    let api = section(&readme, "## The API (led-service, port 8080)");
    let led_service::Limits {
        http: limits,
        requests,
        ..
    } = led_service::Limits::default();
    let seconds = |duration: std::time::Duration| duration.as_secs();
    for claim in [
        format!(
            "408 a `PUT /led` body not all there within {} s",
            seconds(led_service::limits::REQUEST_TIMEOUT)
        ),
        format!(
            "413 body over {} KiB",
            led_service::limits::MAX_BODY_BYTES / 1024
        ),
        format!("{requests} requests for the device are already in progress"),
        format!(
            "no complete request head arrives within {} s",
            seconds(limits.header_read)
        ),
        format!(
            "a request body that stalls for {} s fails",
            seconds(limits.body_stall)
        ),
    ] {
        // The README wraps its lines anywhere: compare with spaces for line ends.
        let flat = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat(api).contains(&flat(&claim)),
            "the README's API section should say {claim:?} (the code's value)"
        );
    }
}

#[test]
fn every_documented_spelling_is_parsed_to_the_state_the_readme_gives_it() {
    let readme = documentation();
    // The curl examples: each line's comment says on or off, for every spelling on the line.
    let toggling = section(&readme, "## Toggling the LED by hand");
    let mut spellings = 0;
    for line in toggling
        .lines()
        .filter(|line| line.contains("curl -X POST"))
    {
        let (_, comment) = line.split_once('#').unwrap();
        let expected = match comment.split_whitespace().next() {
            Some("on") => true,
            Some("off") => false,
            other => panic!("{line}: the comment says {other:?}, not on or off"),
        };
        for token in line.split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')') {
            if !(token.starts_with("http://") || token.starts_with('/')) {
                continue;
            }
            let (_, spelling) = token.rsplit_once('/').unwrap();
            assert_eq!(
                parse_state(spelling),
                Some(expected),
                "README: POST /{spelling} turns the LED {}",
                if expected { "on" } else { "off" }
            );
            spellings += 1;
        }
    }
    assert!(
        spellings >= 14,
        "only {spellings} spellings in the curl examples"
    );

    // The API table: "`{state}` is true/false, 1/0, ... in any case": on/off pairs.
    let api = section(&readme, "## The API");
    let list = api
        .split("`{state}` is ")
        .nth(1)
        .and_then(|rest| rest.split(" in any case").next())
        .unwrap();
    let mut pairs = 0;
    for pair in list.split(", ") {
        let (on, off) = pair
            .split_once('/')
            .unwrap_or_else(|| panic!("{pair:?} is not on/off"));
        for (word, expected) in [(on, true), (off, false)] {
            let capitalized = format!("{}{}", word[..1].to_uppercase(), &word[1..]);
            for spelling in [word.to_owned(), word.to_uppercase(), capitalized] {
                assert_eq!(
                    parse_state(&spelling),
                    Some(expected),
                    "README: {spelling} means {}",
                    if expected { "on" } else { "off" }
                );
            }
        }
        pairs += 1;
    }
    assert_eq!(pairs, 6, "the table lists {list:?}");
}

#[test]
fn the_commands_without_hardware_are_run_by_the_test_suite() {
    let readme = documentation();
    let test_script = read("scripts/test");
    let compose_test = read("tests/tests/compose.rs") + &read("tests/tests/support/mod.rs");
    // Quick start and device start: compose up, exercised by the end-to-end tests.
    assert!(readme.contains("docker compose up -d"));
    assert!(compose_test.contains("\"up\", \"-d\""));
    // Toggling by hand: POST /true with curl from the host, and GET /led.
    assert!(readme.contains("curl -X POST http://localhost:8080/true"));
    assert!(compose_test.contains("\"curl\"") && compose_test.contains("/true"));
    assert!(compose_test.contains("\"/led\""));
    // Building images for arm64 from local binaries, and the test command itself.
    assert!(readme.contains("scripts/build-images --arch arm64"));
    assert!(test_script.contains("scripts/build-images --arch all"));
    assert!(read(".ci/run").contains("scripts/test"));
    // init_os.sh --dry-run: the fake-root tests run it.
    assert!(read("tests/tests/init_os.rs").contains("--dry-run"));
}

#[test]
fn the_device_steps_match_what_init_os_prints_and_takes() {
    let readme = documentation();
    let device = readme
        .split("## On the device")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let init = read("init_os.sh");
    // The start command it prints is one of the two the README shows, for each compose
    // (tests/tests/init_os.rs checks what it prints for each).
    assert!(init.contains("Start it with: $(start_command)"));
    for (assignment, command) in [
        (
            "compose=docker-compose\n",
            "(docker-compose pull || docker-compose build) && docker-compose up -d",
        ),
        ("compose=\"docker compose\"\n", "docker compose up -d"),
    ] {
        assert!(init.contains(assignment), "init_os.sh lost {assignment:?}");
        assert!(device.contains(command), "README lacks {command}");
    }
    assert!(init.contains(
        "printf '%s' \"(docker-compose pull || docker-compose build) && docker-compose up -d\""
    ));
    // Every option it takes, and the overlay line it writes, are the README's.
    for option in [
        "--dry-run",
        "--bus N",
        "--pi-i2c gpio",
        "--pi-i2c arm",
        "--pi-baudrate",
        "--int-pin 18",
        "--int-pin none",
    ] {
        assert!(init.contains(option), "init_os.sh has no {option}");
        assert!(
            device.contains(option),
            "README's device steps lack {option}"
        );
    }
    let overlay = "dtoverlay=i2c-gpio,bus=3,i2c_gpio_sda=2,i2c_gpio_scl=3";
    assert!(init.contains(overlay) && device.contains(overlay));
    assert!(init.contains("Nothing to change") && device.contains("Nothing to change"));
    assert!(init.contains("i2cdetect -y -r") && !init.contains("i2cdetect -y $"));
    assert!(
        !readme.contains("i2cdetect -y 1"),
        "README: i2cdetect needs -r"
    );
}

#[test]
fn the_verify_commands_the_readme_shows_are_the_ones_scripts_verify_image_runs() {
    let verify = read("docs/verify.md");
    let script = read("scripts/verify-image");
    // The release identity the script builds, for the default repository (no dot to escape).
    let pattern = script
        .lines()
        .find_map(|line| {
            line.trim()
                .strip_prefix("who=(--certificate-identity-regexp \"")
        })
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("scripts/verify-image builds no identity regexp");
    let pattern = pattern.replace(
        "${release_repository//./\\\\.}",
        "qwiic-containers/qwiic-containers",
    );
    assert!(
        verify.contains(&format!("--certificate-identity-regexp '{pattern}'")),
        "the README's identity is not {pattern}"
    );
    for flag in [
        "--certificate-oidc-issuer https://token.actions.githubusercontent.com",
        "--certificate-github-workflow-trigger push",
        "cosign verify-attestation --type cyclonedx",
    ] {
        let in_script = flag.replace(" qwiic-containers/qwiic-containers", "");
        assert!(verify.contains(flag), "the README lacks {flag}");
        assert!(
            script.contains(in_script.split(' ').next().unwrap()),
            "scripts/verify-image lacks {flag}"
        );
    }
    assert!(
        verify
            .contains("--certificate-github-workflow-repository qwiic-containers/qwiic-containers")
    );
    assert!(script.contains("--certificate-github-workflow-repository \"$release_repository\""));
}
