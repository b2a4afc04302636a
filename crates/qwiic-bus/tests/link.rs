//! The device link over a simulated button: a missing button is looked for about once a
//! second, not at every call, and found again by itself when it comes back; a health check
//! costs one transaction and is not fooled by corrupted readings.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::{Duration, Instant};

use qwiic_bus::{Bus, BusCounters, BusSpec, DeviceLink, FRESH, PROBE_INTERVAL};
use qwiic_button::Address;
use qwiic_sim::SimButton;

/// A link to `sim`'s button at its default address.
fn link_on(sim: &SimButton) -> DeviceLink {
    DeviceLink::new(
        Bus::Sim(sim.clone()),
        BusSpec::Sim,
        Address::DEFAULT,
        BusCounters::default(),
        "retrying",
    )
}

#[test]
fn an_unplugged_button_is_looked_for_about_once_a_second_and_found_again_by_itself() {
    let sim = SimButton::new();
    let mut link = link_on(&sim);
    link.identify().unwrap();
    sim.unplug();
    // A poller's pace: every 20 ms. The pauses grow from 50 ms to a second within two
    // seconds; then the bus is watched for three more.
    let poll = |link: &mut DeviceLink, for_: Duration| {
        let started = Instant::now();
        let mut failures = 0;
        while started.elapsed() < for_ {
            let result = link.run(|button, firmware| button.checked_status(firmware));
            failures += usize::from(result.is_err());
            std::thread::sleep(Duration::from_millis(20));
        }
        failures
    };
    let before = sim.stats().transactions;
    poll(&mut link, Duration::from_secs(2));
    let ramp = sim.stats().transactions - before;
    let before = sim.stats().transactions;
    let started = Instant::now();
    let failures = poll(&mut link, Duration::from_secs(3));
    let transactions = sim.stats().transactions - before;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "figure: {ramp} transactions in the first 2 s, then {transactions} in {seconds:.1} s with the button unplugged"
    );
    // The transaction that met the unplugging tried three times (the button was identified);
    // then a look after 50, 100, 200, 400 and 800 ms.
    assert!(ramp <= 10, "{ramp} transactions in the first two seconds");
    assert!(failures > 100, "every call failed: {failures}");
    assert!(
        transactions as f64 <= seconds / PROBE_INTERVAL.as_secs_f64() + 1.0,
        "{transactions} transactions in {seconds:.1} s"
    );
    let error = link.identify().unwrap_err();
    assert!(error.is_absent(), "{error}");
    assert!(error.to_string().contains("looked for again in"), "{error}");
    sim.replug();
    let until = Instant::now() + PROBE_INTERVAL * 3;
    while link.identify().is_err() {
        assert!(Instant::now() < until, "not found again");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A link that identified `sim`'s button, once the identification is no longer fresh (a
/// health check then reads the button).
async fn identified_and_stale(sim: &SimButton) -> DeviceLink {
    let mut link = link_on(sim);
    let firmware = link.identify().unwrap().firmware;
    let health = link.health();
    test_kit::wait_until(
        "the identification to be no longer fresh",
        FRESH * 3,
        || health.answered_within(FRESH).is_none(),
    )
    .await;
    assert_eq!(
        health.answered_within(Duration::from_secs(3600)),
        Some(firmware)
    );
    link
}

#[tokio::test]
async fn a_health_check_reads_the_button_once_when_it_shows_the_identity_known() {
    let sim = SimButton::new();
    let mut link = identified_and_stale(&sim).await;
    let before = sim.stats().transactions;
    assert!(link.check().is_ok());
    assert_eq!(sim.stats().transactions - before, 1);
    assert!(link.check().is_ok(), "fresh now: no transaction");
    assert_eq!(sim.stats().transactions - before, 1);
}

#[tokio::test]
async fn a_health_check_is_not_fooled_by_corrupted_readings() {
    let sim = SimButton::new();
    let mut link = identified_and_stale(&sim).await;
    sim.set_corrupt_rate(1.0).unwrap();
    let error = link.check().unwrap_err();
    assert!(!error.is_absent(), "{error}");
    assert!(
        sim.stats().transactions > 1,
        "agreeing readings were asked for"
    );
    sim.set_corrupt_rate(0.0).unwrap();
    assert!(
        link.identify().is_ok(),
        "found again once readings are clean"
    );
}
