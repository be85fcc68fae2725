//! Validation metrics from raw network outputs: MSE and R² for regression; log-loss, accuracy and
//! ROC AUC (one-vs-rest, macro-averaged for multiclass) for classification. Computed in f64.

use std::collections::BTreeMap;

use crate::spec::Task;

/// Metrics of one evaluation, by manifest name (`val_mse`, `val_accuracy`, …).
pub fn evaluate(task: Task, outputs: &[f32], y: &[f32], classes: usize) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    match task {
        Task::Regression => {
            let n = y.len().max(1) as f64;
            let mean = y.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let sse: f64 = outputs
                .iter()
                .zip(y)
                .map(|(&p, &t)| (f64::from(p) - f64::from(t)).powi(2))
                .sum();
            let sst: f64 = y.iter().map(|&t| (f64::from(t) - mean).powi(2)).sum();
            m.insert("val_mse".into(), sse / n);
            m.insert(
                "val_r2".into(),
                if sst > 0.0 { 1.0 - sse / sst } else { 0.0 },
            );
        }
        Task::Binary => {
            let p: Vec<f64> = outputs.iter().map(|&z| sigmoid(f64::from(z))).collect();
            let t: Vec<bool> = y.iter().map(|&v| v > 0.5).collect();
            let log_loss = p
                .iter()
                .zip(&t)
                .map(|(&p, &t)| -(if t { p } else { 1.0 - p }).clamp(1e-15, 1.0).ln())
                .sum::<f64>()
                / p.len().max(1) as f64;
            let correct = p
                .iter()
                .zip(&t)
                .filter(|(p, t)| (**p >= 0.5) == **t)
                .count();
            m.insert("val_log_loss".into(), log_loss);
            m.insert(
                "val_accuracy".into(),
                correct as f64 / p.len().max(1) as f64,
            );
            if let Some(auc) = auc(&p, &t) {
                m.insert("val_auc".into(), auc);
            }
        }
        Task::Multiclass => {
            let rows = y.len();
            let mut log_loss = 0.0;
            let mut correct = 0;
            let mut probs = Vec::with_capacity(outputs.len());
            for (r, z) in outputs.chunks_exact(classes).enumerate() {
                let max = z
                    .iter()
                    .fold(f64::NEG_INFINITY, |a, &b| a.max(f64::from(b)));
                let exp: Vec<f64> = z.iter().map(|&v| (f64::from(v) - max).exp()).collect();
                let sum: f64 = exp.iter().sum();
                let p: Vec<f64> = exp.iter().map(|e| e / sum).collect();
                let truth = y[r] as usize;
                log_loss -= p[truth].clamp(1e-15, 1.0).ln();
                let best = p
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                if best == truth {
                    correct += 1;
                }
                probs.push(p);
            }
            m.insert("val_log_loss".into(), log_loss / rows.max(1) as f64);
            m.insert("val_accuracy".into(), correct as f64 / rows.max(1) as f64);
            let aucs: Vec<f64> = (0..classes)
                .filter_map(|c| {
                    let score: Vec<f64> = probs.iter().map(|p| p[c]).collect();
                    let truth: Vec<bool> = y.iter().map(|&v| v as usize == c).collect();
                    auc(&score, &truth)
                })
                .collect();
            if !aucs.is_empty() {
                m.insert(
                    "val_auc".into(),
                    aucs.iter().sum::<f64>() / aucs.len() as f64,
                );
            }
        }
    }
    m
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// ROC AUC by the rank-sum (Mann–Whitney) formula, ties counted half. `None` when one class is
/// absent.
pub fn auc(score: &[f64], truth: &[bool]) -> Option<f64> {
    let positives = truth.iter().filter(|&&t| t).count();
    let negatives = truth.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[a].total_cmp(&score[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && score[order[j + 1]] == score[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if truth[k] {
                rank_sum += mean_rank;
            }
        }
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_cases() {
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(auc(&[0.5], &[true]), None);
    }

    #[test]
    fn regression_metrics() {
        let m = evaluate(Task::Regression, &[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0], 1);
        assert!((m["val_mse"] - 1.0 / 3.0).abs() < 1e-12);
        assert!((m["val_r2"] - (1.0 - 1.0 / (14.0 / 3.0))).abs() < 1e-12);
    }
}
