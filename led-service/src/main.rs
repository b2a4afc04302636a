//! led-service: drives the Qwiic Button's LED. Its HTTP API arrives with its own issue.
fn main() {}
