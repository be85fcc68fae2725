//! Generated datasets with a known structure, for the demo, the training benchmark and tests:
//! a regression target that is a noisy function of the features, and binary and multiclass
//! targets cut from linear scores. Deterministic for a seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The kind of target to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `y = x·w + 0.5·tanh(x₀·x₁) + noise` (noise σ = 0.1).
    Regression,
    /// `label = "yes"` when a linear score is positive, else `"no"`.
    Binary,
    /// One of `red`, `green`, `blue`: the largest of three linear scores.
    Multiclass,
}

/// A CSV document with columns `f0…f{features-1}` and `y`.
pub fn csv(target: Target, rows: usize, features: usize, seed: u64) -> String {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 1.0 / (features as f64).sqrt();
    let outputs = if target == Target::Multiclass { 3 } else { 1 };
    let weights: Vec<f64> = (0..features * outputs)
        .map(|_| rng.random_range(-2.0..2.0) * scale)
        .collect();
    let mut out = String::with_capacity(rows * features * 7);
    let header: Vec<String> = (0..features).map(|i| format!("f{i}")).collect();
    out.push_str(&header.join(","));
    out.push_str(",y\n");
    let mut x = vec![0f64; features];
    for _ in 0..rows {
        for v in x.iter_mut() {
            *v = rng.random_range(-1.0..1.0);
        }
        let score = |k: usize| -> f64 {
            x.iter()
                .zip(&weights[k * features..(k + 1) * features])
                .map(|(a, b)| a * b)
                .sum()
        };
        let y = match target {
            Target::Regression => {
                let noise: f64 = rng.random_range(-0.17..0.17);
                format!(
                    "{:.5}",
                    score(0) + 0.5 * (x[0] * x[1.min(features - 1)]).tanh() + noise
                )
            }
            Target::Binary => (if score(0) > 0.0 { "yes" } else { "no" }).to_string(),
            Target::Multiclass => {
                let s = [score(0), score(1), score(2)];
                let best = (0..3).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(0);
                ["red", "green", "blue"][best].to_string()
            }
        };
        for v in &x {
            out.push_str(&format!("{v:.4},"));
        }
        out.push_str(&y);
        out.push('\n');
    }
    out
}

/// The same rows as [`csv`], as JSON lines: one object per row keyed by column name, with the
/// target a number (regression) or a string label.
pub fn jsonl(target: Target, rows: usize, features: usize, seed: u64) -> String {
    let table = csv(target, rows, features, seed);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .map(|h| h.split(',').collect())
        .unwrap_or_default();
    let mut out = String::with_capacity(table.len() * 2);
    for line in lines {
        let mut row = serde_json::Map::with_capacity(header.len());
        for (name, cell) in header.iter().zip(line.split(',')) {
            let value = match cell.parse::<f64>() {
                Ok(v) if *name != "y" || target == Target::Regression => serde_json::json!(v),
                _ => serde_json::json!(cell),
            };
            row.insert((*name).to_string(), value);
        }
        out.push_str(&serde_json::Value::Object(row).to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_holds_the_csv_rows_as_objects() {
        let table = csv(Target::Multiclass, 3, 2, 4);
        let lines = jsonl(Target::Multiclass, 3, 2, 4);
        let first_csv: Vec<&str> = table.lines().nth(1).expect("row").split(',').collect();
        let first: serde_json::Value =
            serde_json::from_str(lines.lines().next().expect("line")).expect("json");
        assert_eq!(first["f0"].as_f64(), first_csv[0].parse().ok());
        assert_eq!(first["y"].as_str(), Some(first_csv[2]));
        assert_eq!(lines.lines().count(), 3);
    }
}
