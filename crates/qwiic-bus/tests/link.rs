//! The device link over a simulated button: a missing button is looked for about once a
//! second, not at every call, and found again by itself when it comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::time::{Duration, Instant};

use qwiic_bus::{Bus, BusCounters, BusSpec, DeviceLink, PROBE_INTERVAL};
use qwiic_button::Address;
use qwiic_sim::SimButton;

#[test]
fn an_unplugged_button_is_looked_for_about_once_a_second_and_found_again_by_itself() {
    let sim = SimButton::new();
    let mut link = DeviceLink::new(
        Bus::Sim(sim.clone()),
        BusSpec::Sim,
        Address::DEFAULT,
        BusCounters::default(),
        "retrying",
    );
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
