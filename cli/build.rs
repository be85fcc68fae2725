//! Links `maas` as a position-dependent executable on x86-64 Linux.
//!
//! A position-independent `maas` carries ~80,000 relative relocations (1.9 MB) that the dynamic
//! loader applies at every start, writing 1.1 MB of relocated pointers: about 1.5 ms of the
//! ~2.5 ms it takes to start, on a command whose point is answering in a few milliseconds. Linked
//! at a fixed address there is nothing to relocate. The cost is that the executable's own
//! code is not address-randomised (libraries, heap and stacks still are). The Lambda binaries are
//! built by cargo-lambda for arm64 and stay position-independent.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu") {
        println!("cargo:rustc-link-arg-bin=maas=-no-pie");
    }
}
