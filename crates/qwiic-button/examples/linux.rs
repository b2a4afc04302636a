//! Lights the LED while the button is held, on real hardware.
//!
//! ```text
//! cargo run -p qwiic-button --example linux -- /dev/i2c-1
//! ```
//!
//! The user needs read/write access to the i2c-dev node (group `i2c` on most boards).

#[cfg(target_os = "linux")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::time::Duration;

    use linux_embedded_hal::I2cdev;
    use qwiic_button::{Address, LedConfig, QwiicButton};

    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/dev/i2c-1".to_owned());
    let bus = I2cdev::new(&path).map_err(|error| format!("cannot open {path}: {error}"))?;
    let mut button = QwiicButton::new(bus, Address::DEFAULT);
    let firmware = button.check_identity()?;
    println!(
        "Qwiic Button at {} on {path}, firmware {firmware}; press it (Ctrl-C stops)",
        button.address()
    );

    let mut lit = button.led()?;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let status = match button.checked_status(firmware) {
            // A reading the bus mangled (a Raspberry Pi's clock-stretching bug): skip it.
            Err(error) if error.is_corrupted() => continue,
            status => status?,
        };
        let wanted = if status.is_pressed {
            LedConfig::steady(255)
        } else {
            LedConfig::OFF
        };
        if wanted != lit {
            button.set_led(wanted)?; // only on a change: every write costs an EEPROM cycle
            lit = wanted;
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("this example needs Linux i2c-dev; see the `simulated` example");
}
