//! The plans against an f64 reference: every kernel the CPU runs, both weight layouts, every
//! activation, random chains (property tests), and sizes that must be refused.

use super::*;
use crate::kernel::Kernel;
use crate::pack::{LayerWeights, Weights};
use crate::plan::DensePlan;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The same network in f64, weights as given.
fn reference(layers: &[LayerWeights<'_>], input: &[f32], rows: usize) -> Vec<f32> {
    let mut x: Vec<f64> = input.iter().map(|&v| v as f64).collect();
    for l in layers {
        let (k, n) = (l.in_features, l.out_features);
        let mut y = vec![0.0f64; rows * n];
        for r in 0..rows {
            for j in 0..n {
                let mut sum = l.bias.map_or(0.0, |b| b[j] as f64);
                for p in 0..k {
                    let at = if l.out_major { j * k + p } else { p * n + j };
                    let mut w = [0.0f32];
                    l.weights.read(at, &mut w);
                    let w = w[0];
                    sum += x[r * k + p] * w as f64;
                }
                y[r * n + j] = match l.activation {
                    Activation::None => sum,
                    // NaN stays NaN, as in PyTorch (f64::max would make it 0).
                    Activation::Relu if sum.is_nan() => sum,
                    Activation::Relu => sum.max(0.0),
                    Activation::Sigmoid => 1.0 / (1.0 + (-sum).exp()),
                    Activation::Tanh => sum.tanh(),
                };
            }
        }
        x = y;
    }
    x.into_iter().map(|v| v as f32).collect()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    // f32 sums of thousands of terms drift from f64 by a little of the outputs' scale;
    // a wrong row, column or bias is off by the whole scale.
    let scale = want.iter().fold(1.0f32, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * scale,
            "{what}: element {i}: {g} vs {w}"
        );
    }
}

#[test]
fn every_kernel_matches_a_reference_across_shapes_layouts_and_activations() {
    let kernels = Kernel::available();
    if kernels.is_empty() {
        eprintln!("no dense kernel on this CPU; nothing to check");
        return;
    }
    let activations = [
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::None,
    ];
    let mut seed = 1;
    // Widths around the panel (32) and the AVX-512 kernel's half (16); row counts around
    // both kernels' blocks (6 and 3) and a row chunk of several blocks.
    for &(k, hidden, n) in &[
        (1, 1, 1),
        (3, 16, 5),
        (17, 33, 31),
        (100, 64, 1),
        (64, 70, 32),
        (2000, 40, 17),
    ] {
        for out_major in [true, false] {
            for activation in activations {
                let (w1, b1) = (values(k * hidden, seed), values(hidden, seed + 1));
                let (w2, b2) = (values(hidden * n, seed + 2), values(n, seed + 3));
                let w2_bytes: Vec<u8> = w2.iter().flat_map(|v| v.to_le_bytes()).collect();
                seed += 4;
                let layers = [
                    LayerWeights {
                        weights: Weights::F32(&w1),
                        out_major,
                        in_features: k,
                        out_features: hidden,
                        bias: Some(&b1),
                        activation,
                    },
                    LayerWeights {
                        weights: Weights::LeBytes(&w2_bytes),
                        out_major: !out_major,
                        in_features: hidden,
                        out_features: n,
                        bias: (n % 2 == 1).then_some(&b2[..]),
                        activation: Activation::None,
                    },
                ];
                for &kernel in &kernels {
                    let plan = DensePlan::with_kernel(&layers, kernel).expect("plan");
                    for rows in [1, 2, 3, 4, 5, 6, 7, 13, 200] {
                        let input = values(rows * k, seed);
                        let what = format!(
                            "{kernel:?} k={k} hidden={hidden} n={n} out_major={out_major} {activation:?} rows={rows}"
                        );
                        assert_close(
                            &plan.forward(&input, rows).expect("sizes fit"),
                            &reference(&layers, &input, rows),
                            &what,
                        );
                    }
                }
            }
        }
    }
}

/// Like [`assert_close`], with NaN allowed where the reference has NaN (and only there).
fn assert_close_or_both_nan(got: &[f32], want: &[f32], what: &str) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!("{what}: length {} vs {}", got.len(), want.len()));
    }
    let scale = want
        .iter()
        .filter(|w| w.is_finite())
        .fold(1.0f32, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = if w.is_nan() {
            g.is_nan()
        } else {
            (g - w).abs() <= 1e-4 * scale
        };
        if !ok {
            return Err(format!("{what}: element {i}: {g} vs {w}"));
        }
    }
    Ok(())
}

fn activation_of(i: usize) -> Activation {
    [
        Activation::None,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
    ][i % 4]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Random chains — 1 to 5 layers, widths around the kernels' blocks (16, 32) and the
    /// one-row kernel, 0 to 300 rows, every activation, either weight layout, NaN inputs —
    /// give the f64 reference's answer on every kernel the CPU has, on 1 and 2 threads.
    #[test]
    fn random_chains_match_an_f64_reference(
        widths in proptest::collection::vec(
            proptest::prop_oneof![1usize..=4, 14usize..=18, 30usize..=34, 62usize..=66, 95usize..=97],
            2..=6,
        ),
        activations in proptest::collection::vec(0usize..4, 5),
        layouts in proptest::collection::vec(proptest::bool::ANY, 5),
        rows in proptest::prop_oneof![0usize..=8, 0usize..=300],
        nan_at in proptest::option::of(0usize..100_000),
        threads in 1usize..=2,
        seed in 0u64..1_000_000,
    ) {
        let kernels = Kernel::available();
        let depth = widths.len() - 1;
        let weights: Vec<(Vec<f32>, Vec<f32>)> = (0..depth)
            .map(|i| {
                let s = seed * 16 + i as u64 * 2;
                (values(widths[i] * widths[i + 1], s), values(widths[i + 1], s + 1))
            })
            .collect();
        let layers: Vec<LayerWeights<'_>> = (0..depth)
            .map(|i| LayerWeights {
                weights: Weights::F32(&weights[i].0),
                out_major: layouts[i],
                in_features: widths[i],
                out_features: widths[i + 1],
                bias: (i % 2 == 0).then_some(&weights[i].1[..]),
                activation: activation_of(activations[i]),
            })
            .collect();
        let mut input = values(rows * widths[0], seed + 7);
        if let Some(at) = nan_at
            && !input.is_empty()
        {
            let at = at % input.len();
            input[at] = f32::NAN;
        }
        let want = reference(&layers, &input, rows);
        for &kernel in &kernels {
            let plan = DensePlan::with_kernel(&layers, kernel).expect("plan");
            let got = plan.forward_with(&input, rows, threads).expect("sizes fit");
            let what = format!("{kernel:?} widths={widths:?} rows={rows} threads={threads}");
            assert_close_or_both_nan(&got, &want, &what).map_err(proptest::test_runner::TestCaseError::fail)?;
        }
    }
}

/// Sizes that would overflow or don't match are refused before any kernel runs.
#[test]
fn sizes_that_overflow_or_disagree_are_errors_not_writes() {
    let Some(kernel) = Kernel::detect() else {
        return;
    };
    let (w, b) = (values(8 * 40, 3), values(40, 4));
    let layers = [LayerWeights {
        weights: Weights::F32(&w),
        out_major: true,
        in_features: 8,
        out_features: 40,
        bias: Some(&b),
        activation: Activation::Relu,
    }];
    let plan = DensePlan::with_kernel(&layers, kernel).expect("plan");
    // rows × 8 wraps to 0 = the empty input's length.
    let wraps = (usize::MAX / 8) + 1;
    assert_eq!(wraps.wrapping_mul(8), 0);
    assert!(matches!(
        plan.forward(&[], wraps),
        Err(DenseError::InputSize { .. })
    ));
    assert!(matches!(
        plan.forward(&[1.0; 7], 1),
        Err(DenseError::InputSize { .. })
    ));
    assert_eq!(plan.forward(&[], 0).expect("no rows"), Vec::<f32>::new());
}

#[test]
fn two_threads_give_the_results_of_one() {
    let Some(kernel) = Kernel::detect() else {
        return;
    };
    let (k, n) = (700, 257);
    let (w, b) = (values(k * n, 7), values(n, 8));
    let layers = [LayerWeights {
        weights: Weights::F32(&w),
        out_major: true,
        in_features: k,
        out_features: n,
        bias: Some(&b),
        activation: Activation::Relu,
    }];
    let plan = DensePlan::with_kernel(&layers, kernel).expect("plan");
    // 50 rows: each thread takes 25 rows through the chain; 7 rows (over PARALLEL_MIN_MACS):
    // the threads split each layer's columns; 1 row: one thread.
    for rows in [50, 7, 1] {
        let input = values(rows * k, 9);
        let one = plan.forward_with(&input, rows, 1).expect("sizes fit");
        let two = plan.forward_with(&input, rows, 2).expect("sizes fit");
        // Row blocks differ with the split (a lone row sums in four lanes): the last bits may.
        assert_close(&two, &one, "two threads vs one");
        assert_close(&one, &reference(&layers, &input, rows), "threads");
    }
    assert!(7 * k * n >= PARALLEL_MIN_MACS && k * n < PARALLEL_MIN_MACS);
}

#[test]
fn matmul_packs_large_operands_on_every_thread_with_the_same_result() {
    if Kernel::detect().is_none() {
        return;
    }
    let (m, k, n) = (20, 600, 500);
    assert!(k * n >= PARALLEL_MIN_MACS / 4, "the packing is split");
    let a = values(m * k, 11);
    let b = values(k * n, 12);
    for out_major in [false, true] {
        let layer = LayerWeights {
            weights: Weights::F32(&b),
            out_major,
            in_features: k,
            out_features: n,
            bias: None,
            activation: Activation::None,
        };
        let want = reference(&[layer], &a, m);
        for threads in [1, 2] {
            let got = matmul(&a, m, k, Weights::F32(&b), out_major, n, threads).expect("kernel");
            assert_close(
                &got,
                &want,
                &format!("out_major={out_major} threads={threads}"),
            );
        }
    }
}

#[test]
fn layers_that_do_not_chain_or_hold_the_wrong_count_are_refused() {
    let Some(kernel) = Kernel::detect() else {
        return;
    };
    let w = values(12, 1);
    let layer = |k, n| LayerWeights {
        weights: Weights::F32(&w),
        out_major: true,
        in_features: k,
        out_features: n,
        bias: None,
        activation: Activation::None,
    };
    assert!(DensePlan::with_kernel(&[layer(3, 4), layer(4, 3)], kernel).is_some());
    assert!(DensePlan::with_kernel(&[layer(3, 4), layer(3, 4)], kernel).is_none());
    assert!(DensePlan::with_kernel(&[layer(5, 4)], kernel).is_none());
    assert!(DensePlan::with_kernel(&[], kernel).is_none());
}
