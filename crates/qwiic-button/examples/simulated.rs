//! The driver against the in-process simulated button: no hardware needed.
//!
//! ```text
//! cargo run -p qwiic-button --example simulated
//! ```

use std::time::Duration;

use qwiic_button::{Address, LedConfig, Queue, QwiicButton};
use qwiic_sim::{ManualClock, SimButton};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clock = ManualClock::new();
    let sim = SimButton::with_clock(clock.clone());
    let mut button = QwiicButton::new(sim.clone(), Address::DEFAULT);

    let firmware = button.check_identity()?;
    println!("firmware {firmware}");
    clock.advance(Duration::from_secs(1));
    sim.click(Duration::from_millis(120));
    clock.advance(Duration::from_millis(500));

    println!("status: {:?}", button.checked_status(firmware)?);
    println!("clicked queue: {:?}", button.queue(Queue::Clicked)?);
    button.set_led(LedConfig::pulse(255, 1000, 500, 1)?)?;
    println!("LED: {:?}", button.led()?);
    Ok(())
}
