//! What turns an ensemble's raw scores (margins) into the model's outputs: the ONNX-ML
//! `post_transform` values and the boosters' objectives.

/// The transform applied to each row's scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PostTransform {
    /// The scores as they are.
    #[default]
    None,
    /// `1 / (1 + e^-s)` on each score.
    Logistic,
    /// Softmax over the row.
    Softmax,
    /// Softmax over the row's non-zero scores; zeros stay zero (ONNX `SOFTMAX_ZERO`).
    SoftmaxZero,
    /// `√2 · erfinv(2s − 1)` on each score (ONNX `PROBIT`, with onnxruntime's approximation of
    /// erfinv, so answers match it).
    Probit,
    /// `e^s` on each score (Poisson, gamma and Tweedie objectives).
    Exp,
}

impl PostTransform {
    /// The ONNX-ML `post_transform` attribute value.
    pub fn from_onnx(name: &str) -> Option<Self> {
        Some(match name {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            _ => return None,
        })
    }

    /// Applies the transform to one row's scores.
    pub fn apply(self, row: &mut [f64]) {
        match self {
            PostTransform::None => {}
            PostTransform::Logistic => row.iter_mut().for_each(|s| *s = logistic(*s)),
            PostTransform::Exp => row.iter_mut().for_each(|s| *s = s.exp()),
            PostTransform::Probit => row.iter_mut().for_each(|s| *s = probit(*s)),
            PostTransform::Softmax => softmax(row, false),
            PostTransform::SoftmaxZero => softmax(row, true),
        }
    }
}

/// `1 / (1 + e^-s)`.
pub(crate) fn logistic(s: f64) -> f64 {
    1.0 / (1.0 + (-s).exp())
}

fn softmax(row: &mut [f64], skip_zeros: bool) {
    let max = row
        .iter()
        .copied()
        .filter(|&s| !(skip_zeros && s == 0.0))
        .fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for s in row.iter_mut() {
        if !(skip_zeros && *s == 0.0) {
            *s = (*s - max).exp();
            sum += *s;
        }
    }
    if sum > 0.0 {
        row.iter_mut().for_each(|s| *s /= sum);
    }
}

/// onnxruntime's `ComputeProbit`: `√2 · ErfInv(2s − 1)`, ErfInv by Winitzki's approximation in
/// `f32` as onnxruntime computes it.
fn probit(s: f64) -> f64 {
    let x = (2.0 * s - 1.0) as f32;
    let sign = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let ln = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * ln;
    let v2 = 1.0 / 0.147 * ln;
    let v3 = -v + (v * v - v2).sqrt();
    f64::from(std::f32::consts::SQRT_2 * sign * v3.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_softmax_zero_keeps_zeros() {
        let mut row = [1.0, 2.0, 3.0];
        PostTransform::Softmax.apply(&mut row);
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(row[2] > row[1] && row[1] > row[0]);
        let mut row = [0.0, 2.0, 3.0];
        PostTransform::SoftmaxZero.apply(&mut row);
        assert_eq!(row[0], 0.0);
        assert!((row[1] + row[2] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn probit_is_the_normal_quantile_to_the_approximations_precision() {
        for (p, z) in [(0.5, 0.0), (0.8413447, 1.0), (0.0227501, -2.0)] {
            let mut row = [p];
            PostTransform::Probit.apply(&mut row);
            assert!((row[0] - z).abs() < 5e-3, "{p}: {}", row[0]);
        }
    }
}
