//! Shared helpers for maas's end-to-end tests: the committed seed fixture and its PyTorch
//! reference, generators for the bad files a push must refuse, an S3 endpoint (s3s-fs) served on
//! 127.0.0.1 inside the test process, the Lambda runtime emulator for the function binaries,
//! the store conformance suite every backend must pass, and a store wrapper that injects faults.

pub mod conformance;
pub mod faults;
pub mod fixtures;
pub mod http;
pub mod invariants;
pub mod lambda;
pub mod s3;

pub use lambda::{Invocation, LambdaEmulator};
pub use s3::{MotoServer, S3Endpoint};
