//! The simulator binary itself, configured by environment variables as its container runs it:
//! its flags, firmware 1.2, the healthcheck subcommand, SIGTERM, and running out of file
//! descriptors without spinning.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use qwiic_bus::{TcpBus, TcpTimeouts};
use qwiic_button::{Address, FirmwareVersion, QwiicButton};
use test_kit::{RunningBinary, binary_command};

const BINARY: &str = env!("CARGO_BIN_EXE_simulator");
const ANYWHERE: [(&str, &str); 2] = [
    ("TCP_LISTEN", "127.0.0.1:0"),
    ("HTTP_LISTEN", "127.0.0.1:0"),
];

fn button_at(bus: SocketAddr, address: u8) -> QwiicButton<TcpBus> {
    let bus = TcpBus::new("127.0.0.1", bus.port(), TcpTimeouts::default());
    QwiicButton::new(bus, Address::new(address).unwrap())
}

#[test]
fn its_settings_take_effect_its_healthcheck_answers_and_sigterm_stops_it() {
    let mut env = ANYWHERE.to_vec();
    env.extend([("FIRMWARE", "1.2"), ("I2C_ADDRESS", "0x42")]);
    let mut simulator = RunningBinary::start(BINARY, &env);
    let (bus, http) = (
        simulator.address("tcp", Duration::from_secs(10)),
        simulator.address("http", Duration::from_secs(10)),
    );
    let firmware = button_at(bus, 0x42).check_identity().unwrap();
    assert_eq!(firmware, FirmwareVersion { major: 1, minor: 2 });
    assert!(
        button_at(bus, 0x6F)
            .check_identity()
            .unwrap_err()
            .is_no_acknowledge()
    );
    let healthy = binary_command(BINARY)
        .arg("healthcheck")
        .env("HTTP_LISTEN", http.to_string())
        .status()
        .unwrap();
    assert!(healthy.success());
    let (status, took) = simulator.terminate(Duration::from_secs(5));
    assert!(status.success(), "{status:?}\n{}", simulator.log());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(simulator.log().contains("bye"), "{}", simulator.log());
}

#[test]
fn out_of_file_descriptors_it_backs_off_logs_once_and_recovers() {
    let mut command = Command::new("prlimit");
    command
        .args(["--nofile=32:32", "--"])
        .arg(BINARY)
        .envs(ANYWHERE);
    if let Some(wrapper) = std::env::var_os("TEST_EXEC_WRAPPER").filter(|w| !w.is_empty()) {
        command = Command::new("prlimit");
        command
            .args(["--nofile=64:64", "--"])
            .arg(wrapper)
            .arg(BINARY)
            .envs(ANYWHERE);
    }
    let simulator = RunningBinary::spawn(BINARY, command);
    let bus = simulator.address("tcp", Duration::from_secs(10));
    // Far more clients than descriptors: accept starts failing with EMFILE.
    let held: Vec<TcpStream> = (0..80).map(|_| TcpStream::connect(bus).unwrap()).collect();
    simulator.wait_for_log("accepting simulator clients failed", Duration::from_secs(5));
    let cpu_before = cpu_seconds(simulator.pid());
    std::thread::sleep(Duration::from_secs(1)); // a second of being out of descriptors
    let cpu = cpu_seconds(simulator.pid()) - cpu_before;
    assert!(
        cpu < 0.3,
        "{cpu:.2} s of CPU in one second: it spins on accept"
    );
    assert_eq!(
        simulator
            .log()
            .matches("accepting simulator clients failed")
            .count(),
        1,
        "one line for the burst:\n{}",
        simulator.log()
    );
    drop(held);
    simulator.wait_for_log("accepting simulator clients again", Duration::from_secs(10));
    // The clients it had accepted close on its side in their own time (slower under
    // emulation): a new one gets through within a bound.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(error) = button_at(bus, 0x6F).check_identity() {
        assert!(
            std::time::Instant::now() < until,
            "no client gets through: {error}\n{}",
            simulator.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// User and system CPU time of a process, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn a_flood_of_malformed_connections_is_logged_once_at_each_end() {
    use std::io::{Read, Write};
    let simulator = RunningBinary::start(BINARY, &ANYWHERE);
    let bus = simulator.address("tcp", Duration::from_secs(10));
    for _ in 0..50 {
        let mut garbage = TcpStream::connect(bus).unwrap();
        garbage.write_all(&[3, 0, 9, 9, 9]).unwrap(); // version 9: refused
        let mut answer = Vec::new();
        let _ = garbage.read_to_end(&mut answer); // the server answers, then closes
    }
    // A client served well (then gone) ends the burst.
    let mut button = button_at(bus, 0x6F);
    button.check_identity().unwrap();
    drop(button);
    simulator.wait_for_log("served well again", Duration::from_secs(10));
    let log = simulator.log();
    assert_eq!(log.matches("that misbehave").count(), 1, "{log}");
    assert!(log.contains("\"closed\":50"), "{log}");
}
