//! The table of the kernel's I2C errors in docs/hardware.md says what the code does with each.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use embedded_hal::i2c::ErrorKind;
use qwiic_bus::linux::{errno_name, kind_of_errno};

/// The errno rows of docs/hardware.md: name, number, and what the services read it as.
fn readme_rows() -> Vec<(String, i32, String)> {
    let readme = include_str!("../../../docs/hardware.md");
    readme
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("| `E"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let (name, number) = cells[0].split_once(' ').unwrap();
            let number = number.trim_matches(['(', ')']).parse().unwrap();
            (
                name.trim_matches('`').to_owned(),
                number,
                cells[2].to_owned(),
            )
        })
        .collect()
}

fn read_as(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NoAcknowledge(_) => "no acknowledge",
        ErrorKind::Bus => "bus error",
        ErrorKind::ArbitrationLoss => "arbitration lost",
        _ => "other",
    }
}

#[test]
fn every_errno_in_the_readme_is_named_and_read_as_it_says() {
    let rows = readme_rows();
    assert!(
        rows.len() >= 7,
        "the errno table of docs/hardware.md: {rows:?}"
    );
    for (name, number, says) in &rows {
        assert_eq!(
            errno_name(*number).map(|(name, _)| name),
            Some(name.as_str())
        );
        assert_eq!(read_as(kind_of_errno(*number)), says, "{name}");
    }
}

#[test]
fn every_errno_the_services_act_on_is_in_the_readme() {
    let rows = readme_rows();
    for errno in 1..200 {
        let kind = kind_of_errno(errno);
        if kind != ErrorKind::Other {
            assert!(
                rows.iter().any(|(_, number, _)| *number == errno),
                "errno {errno} is read as {kind:?} but the table in docs/hardware.md leaves it out"
            );
        }
    }
}
