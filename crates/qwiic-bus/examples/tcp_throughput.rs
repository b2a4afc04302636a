//! Measures `tcp://` bus transactions per second from one client (the simulator benchmark).
//!
//! ```text
//! cargo run --release -p qwiic-bus --example tcp_throughput -- tcp://127.0.0.1:7070 [seconds]
//! ```
//!
//! Prints one JSON object: transactions, seconds, transactions_per_second.

use std::time::{Duration, Instant};

use embedded_hal::i2c::I2c;
use qwiic_bus::{BusSpec, TcpBus, TcpTimeouts};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let spec: BusSpec = args
        .next()
        .unwrap_or_else(|| "tcp://127.0.0.1:7070".into())
        .parse()?;
    let seconds: f64 = args.next().map_or(Ok(3.0), |s| s.parse())?;
    let BusSpec::Tcp { host, port } = spec else {
        return Err("give a tcp://HOST:PORT bus".into());
    };
    let mut bus = TcpBus::new(host, port, TcpTimeouts::default());
    let mut status = [0u8; 1];
    bus.write_read(0x6F, &[0x03], &mut status)?; // connect and warm up
    let run_for = Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut transactions = 0u64;
    while started.elapsed() < run_for {
        for _ in 0..1000 {
            bus.write_read(0x6F, &[0x03], &mut status)?;
        }
        transactions += 1000;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"transactions\": {transactions}, \"seconds\": {elapsed:.3}, \"transactions_per_second\": {:.0}}}",
        transactions as f64 / elapsed
    );
    Ok(())
}
