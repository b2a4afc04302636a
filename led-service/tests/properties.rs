//! Property tests: the state parser and the JSON body never panic and never produce a 5xx.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use axum::body::Body;
use axum::http::{Request, header};
use clap::Parser as _;
use led_service::config::Cli;
use led_service::spelling::parse_state;
use led_service::{AppState, app};
use proptest::prelude::*;
use qwiic_bus::Bus;
use qwiic_sim::SimButton;
use service_kit::CancellationToken;
use tower::ServiceExt;

/// The README's twelve spellings and the boolean each means, written out here rather than
/// taken from the code under test.
const SPELLINGS: [(&str, bool); 12] = [
    ("true", true),
    ("false", false),
    ("1", true),
    ("0", false),
    ("yes", true),
    ("no", false),
    ("on", true),
    ("off", false),
    ("t", true),
    ("f", false),
    ("y", true),
    ("n", false),
];

/// What the README says `input` means: a spelling in any letter case, else nothing.
fn documented_meaning(input: &str) -> Option<bool> {
    let lower = input.to_ascii_lowercase();
    SPELLINGS
        .iter()
        .find(|(spelling, _)| *spelling == lower)
        .map(|&(_, on)| on)
}

/// A documented spelling with each letter's case chosen at random.
fn documented_spelling_in_any_case() -> impl Strategy<Value = String> {
    (0..SPELLINGS.len(), prop::collection::vec(any::<bool>(), 5)).prop_map(|(index, upper)| {
        SPELLINGS[index]
            .0
            .chars()
            .zip(upper)
            .map(|(c, upper)| if upper { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn the_parser_gives_each_documented_spelling_its_boolean_in_any_case_and_refuses_the_rest(
        input in prop_oneof![
            documented_spelling_in_any_case(),
            // A spelling with something around it, and anything at all.
            (documented_spelling_in_any_case(), ".{0,2}", ".{0,2}")
                .prop_map(|(word, before, after)| format!("{before}{word}{after}")),
            ".{0,12}",
        ],
    ) {
        prop_assert_eq!(parse_state(&input), documented_meaning(&input), "{:?}", input);
    }
}

/// `path` with every byte a URI may not hold raw percent-encoded, so that the request always
/// builds; `%` stays raw, so that malformed escapes still reach the router.
fn percent_encode_path(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len() * 3);
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@%".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn router() -> axum::Router {
    let Cli { config, .. } = Cli::parse_from(["led-service", "--bus=sim"]);
    let bus = Bus::Sim(SimButton::new());
    app(AppState::start(bus, &config.resolve().unwrap(), CancellationToken::new()).unwrap())
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "[a-z_]{0,8}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("on".to_owned()),
                    Just("brightness".to_owned()),
                    Just("pulse".to_owned()),
                    Just("cycle_ms".to_owned()),
                    Just("off_ms".to_owned()),
                    Just("granularity".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..5,
            )
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn no_body_or_path_makes_a_5xx(
        body in prop_oneof![json_value().prop_map(|v| v.to_string().into_bytes()), prop::collection::vec(any::<u8>(), 0..64)],
        path in "/[ -~]{0,20}",
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let app = router();
            let put = Request::put("/led").header(header::CONTENT_TYPE, "application/json").body(Body::from(body)).unwrap();
            let status = app.clone().oneshot(put).await.unwrap().status();
            assert!(!status.is_server_error(), "PUT /led answered {status}");
            let post = Request::post(percent_encode_path(&path)).body(Body::empty()).unwrap();
            let status = app.oneshot(post).await.unwrap().status();
            assert!(!status.is_server_error(), "POST {path} answered {status}");
        });
    }
}
