//! Tests across crates and containers live in `tests/`; see `compose.rs`.
