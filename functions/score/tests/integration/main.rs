//! The score function's integration tests, in one binary (each test binary links the whole stack,
//! so one per crate keeps build time and disk down).

mod events;
mod lambda_invoke;
