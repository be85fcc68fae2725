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

/// Reads a thread count as `MAAS_ENGINE_THREADS` gives it: unset means 1; anything but a
/// positive whole number is refused with a message naming the variable.
pub fn threads_from(value: Option<&str>) -> Result<usize, String> {
    let Some(raw) = value else {
        return Ok(1);
    };
    match raw.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "MAAS_ENGINE_THREADS={raw:?} is not a positive whole number; set it to the threads per prediction (e.g. 1 or 2) or unset it for 1"
        )),
    }
}

/// Applies `MAAS_ENGINE_THREADS` (threads per prediction for tract and the dense kernels; 1 when
/// unset) and returns the count; a value that isn't a positive number is an error, so a
/// misconfigured process stops at start instead of silently running on one thread.
pub fn configure_from_env() -> Result<usize, String> {
    let n = threads_from(std::env::var("MAAS_ENGINE_THREADS").ok().as_deref())?;
    set_threads(n);
    Ok(n)
}

/// The thread count candle will use, from `RAYON_NUM_THREADS` (all cores when unset).
pub fn candle_threads() -> usize {
    candle_core::utils::get_num_threads()
}

#[cfg(test)]
mod tests {
    use super::threads_from;

    #[test]
    fn thread_counts_are_positive_numbers_or_refused() {
        assert_eq!(threads_from(None), Ok(1));
        assert_eq!(threads_from(Some("2")), Ok(2));
        assert_eq!(threads_from(Some(" 4 ")), Ok(4));
        for bad in ["", "0", "two", "-1", "1.5"] {
            let err = threads_from(Some(bad)).expect_err(bad);
            assert!(err.contains("MAAS_ENGINE_THREADS"), "{err}");
        }
    }
}
