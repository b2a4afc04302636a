//! button-service: reads the Qwiic Button. Its HTTP API arrives with its own issue.
fn main() {}
