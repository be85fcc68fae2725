//! maas-inference's integration tests, in one binary (each test binary links the whole stack, so
//! one per crate keeps build time and disk down).

mod classifiers;
mod fuzz_decoding;
mod router;
