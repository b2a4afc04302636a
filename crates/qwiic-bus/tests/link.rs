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
    let before = sim.stats().transactions;
    // A poller's pace: every 20 ms for three seconds.
    let started = Instant::now();
    let mut failures = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let result = link.run(|button, firmware| button.checked_status(firmware));
        failures += usize::from(result.is_err());
        std::thread::sleep(Duration::from_millis(20));
    }
    let transactions = sim.stats().transactions - before;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("figure: {transactions} transactions in {seconds:.1} s with the button unplugged");
    assert!(failures > 100, "every call failed: {failures}");
    assert!(
        transactions as f64 <= seconds / PROBE_INTERVAL.as_secs_f64() + 2.0,
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
