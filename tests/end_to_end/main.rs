//! The end-to-end tests against real storage endpoints and binaries, in one binary (each test
//! binary links the whole stack, so one binary keeps build time and disk down).

mod boosters;
mod engines;
mod faults;
mod onnx_ml;
mod push_refusals;
mod registry_concurrency;
mod store_conformance;
