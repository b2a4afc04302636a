//! Opening buses from strings, and the errors that say what to check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed unwrap is a failed test

use qwiic_bus::{Bus, BusError, BusSpec, ConnectError, DeviceError, OpenError};
use qwiic_button::Address;

#[test]
fn sim_opens_a_simulated_button() {
    let spec: BusSpec = "sim".parse().unwrap();
    let (mut button, firmware) = qwiic_bus::connect(&spec, Address::DEFAULT).unwrap();
    assert_eq!(firmware.to_string(), "1.3");
    assert!(!button.status().unwrap().is_pressed);
    assert!(matches!(button.destroy(), Bus::Sim(_)));
}

#[test]
fn a_missing_device_node_says_to_enable_i2c_and_how_each_engine_maps_it() {
    let spec: BusSpec = "/dev/i2c-99".parse().unwrap();
    let error = spec.open().unwrap_err();
    assert!(matches!(error, OpenError::NotFound { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("/dev/i2c-99 does not exist") && message.contains("init_os.sh"),
        "{message}"
    );
    for engine in [
        "compose `devices:`",
        "HostConfig.Devices",
        "the device plugin",
    ] {
        assert!(message.contains(engine), "{engine}: {message}");
    }
}

#[test]
fn a_regular_file_is_not_a_bus() {
    let file = std::env::temp_dir().join(format!("qwiic-bus-test-{}", std::process::id()));
    std::fs::write(&file, b"").unwrap();
    let error = BusSpec::Linux(file.clone()).open().unwrap_err();
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(error, OpenError::NotADevice { .. }), "{error}");
}

#[test]
fn a_character_device_that_is_not_i2c_is_refused() {
    // /dev/null opens, but refuses the I2C ioctls.
    let spec: BusSpec = "/dev/null".parse().unwrap();
    match qwiic_bus::connect(&spec, Address::DEFAULT) {
        Err(ConnectError::Open(error @ OpenError::NotADevice { .. })) => {
            assert!(
                error
                    .to_string()
                    .contains("/dev/null is not an i2c-dev device"),
                "{error}"
            )
        }
        other => panic!("expected NotADevice, got {other:?}"),
    }
}

#[test]
fn an_absent_button_names_the_bus_address_and_what_to_check() {
    let spec: BusSpec = "sim".parse().unwrap();
    let address = Address::new(0x22).unwrap();
    let Err(ConnectError::Device(error)) = qwiic_bus::connect(&spec, address) else {
        panic!("a button at 0x22 answered");
    };
    assert!(error.is_absent());
    assert_eq!(
        error.to_string(),
        "no Qwiic Button answers at 0x22 on sim (no acknowledge); the in-process simulator is unplugged or at another address"
    );
}

#[test]
fn a_wrong_id_message_is_the_one_the_issue_asks_for() {
    let spec: BusSpec = "/dev/i2c-1".parse().unwrap();
    let error = DeviceError::new(
        &spec,
        Address::DEFAULT,
        qwiic_button::Error::<BusError>::WrongId {
            address: Address::DEFAULT,
            found: 0x00,
        },
    );
    assert_eq!(
        error.to_string(),
        "no Qwiic Button at 0x6f on /dev/i2c-1: ID register read 0x00, expected 0x5d; check the cable and `i2cdetect -y -r 1`"
    );
}

/// What the services decide from a Linux adapter's errno: the message, whether the button is
/// absent, and whether a transaction is tried again.
#[cfg(target_os = "linux")]
#[test]
fn a_pi_or_jetson_nack_reads_as_no_button_and_is_tried_once_a_broken_transfer_three_times() {
    use embedded_hal::i2c::{ErrorType, I2c, Operation};
    use qwiic_bus::linux::LinuxError;
    use qwiic_bus::{BusCounters, service_bus};

    let spec: BusSpec = "/dev/i2c-1".parse().unwrap();
    let device_error = |errno| {
        DeviceError::new(
            &spec,
            Address::DEFAULT,
            qwiic_button::Error::I2C(BusError::Linux(LinuxError::from_errno(errno))),
        )
    };
    let nack = device_error(121); // EREMOTEIO: i2c-bcm2835 and i2c-tegra on a NACK
    assert!(nack.is_absent());
    assert_eq!(
        nack.to_string(),
        "no Qwiic Button answers at 0x6f on /dev/i2c-1 (no acknowledge); check the cable and `i2cdetect -y -r 1`"
    );
    let unsupported = device_error(95); // EOPNOTSUPP
    assert!(!unsupported.is_absent());
    assert!(
        unsupported
            .to_string()
            .contains("EOPNOTSUPP (errno 95): the adapter does not support this transfer"),
        "{unsupported}"
    );

    /// Fails every transaction with one errno, counting the attempts.
    struct Failing(i32, u32);
    impl ErrorType for Failing {
        type Error = LinuxError;
    }
    impl I2c for Failing {
        fn transaction(&mut self, _: u8, _: &mut [Operation<'_>]) -> Result<(), LinuxError> {
            self.1 += 1;
            Err(LinuxError::from_errno(self.0))
        }
    }
    // A NACK (EREMOTEIO, ENXIO, ENODEV) is tried once: the device is not there, and on a
    // Jetson each NACK is a kernel log line. A broken transfer is tried three times.
    for (errno, attempts) in [
        (121, 1),
        (6, 1),
        (19, 1),
        (110, 3),
        (5, 3),
        (16, 3),
        (11, 3),
        (95, 1),
        (22, 1),
    ] {
        let counters = BusCounters::default();
        let mut bus = service_bus(Failing(errno, 0), 3, counters.clone());
        assert!(bus.write(0x6F, &[0]).is_err());
        assert_eq!(counters.transactions.get(), attempts, "errno {errno}");
    }
}
