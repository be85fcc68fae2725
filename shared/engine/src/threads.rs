//! How many threads the engines use for one prediction.
//!
//! tract runs single-threaded unless given an executor; [`set_threads`] installs a process-wide
//! pool of `n` threads for its matrix products, and gives the dense kernels `n` threads too. candle sizes its matrix products by the
//! `RAYON_NUM_THREADS` environment variable (read on each product; all cores when unset), which
//! the process must set before it starts — a Lambda function gets it from the template.
//!
//! One thread is the right default where a process has a vCPU or less (Lambda below 1769 MB) or
//! serves many requests at once; more pay off for large batches on whole spare cores.

use tract_linalg::multithread::{Executor, set_default_executor};

/// Lets tract and the dense kernels use `n` threads per prediction (1 restores the
/// single-threaded path).
pub fn set_threads(n: usize) {
    maas_dense::set_threads(n);
    if n > 1 {
        set_default_executor(Executor::multithread(n));
    } else {
        set_default_executor(Executor::SingleThread);
    }
}

/// Applies `MAAS_ENGINE_THREADS` (threads per prediction for tract and the dense kernels; 1 when
/// unset or not a positive number) and returns the count.
pub fn configure_from_env() -> usize {
    let n = std::env::var("MAAS_ENGINE_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1);
    set_threads(n);
    n
}

/// The thread count candle will use, from `RAYON_NUM_THREADS` (all cores when unset).
pub fn candle_threads() -> usize {
    candle_core::utils::get_num_threads()
}
