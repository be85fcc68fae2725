//! The `maas` CLI's integration tests, in one binary (each test binary links the whole stack, so
//! one per crate keeps build time and disk down).

mod cli;
mod kill;
mod soak;
mod tritonclient;
