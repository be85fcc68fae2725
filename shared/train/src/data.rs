//! Datasets: CSV (with a header) or JSON lines read from the store into a dense feature matrix and
//! a target vector, with every missing or non-numeric value reported by line and column; the
//! seeded train/validation split; and feature standardisation statistics.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::TrainError;
use crate::spec::{BadRows, DatasetFormat, DatasetSpec, Task};

/// Problems listed in full before the rest are counted.
const PROBLEMS_SHOWN: usize = 10;

/// The rows of a dataset, ready for training.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Feature column names, in input order.
    pub features: Vec<String>,
    /// Row-major features, `rows × features.len()`.
    pub x: Vec<f32>,
    /// Targets: the value (regression), 0/1 (binary) or the class index (multiclass).
    pub y: Vec<f32>,
    /// Class names for classification targets that were not already 0/1.
    pub labels: Option<Vec<String>>,
    /// Rows left out because of bad values (`bad_rows: drop`).
    pub dropped: u64,
    /// Width of the network's output: the number of classes for multiclass, else 1.
    pub outputs: usize,
}

impl Dataset {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Width of a row.
    pub fn width(&self) -> usize {
        self.features.len()
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let w = self.width();
        let mut x = Vec::with_capacity(indices.len() * w);
        let mut y = Vec::with_capacity(indices.len());
        for &i in indices {
            x.extend_from_slice(&self.x[i * w..(i + 1) * w]);
            y.push(self.y[i]);
        }
        (x, y)
    }
}

/// One row's raw cells, as read, before conversion.
struct RawRow {
    line: u64,
    cells: Vec<Option<String>>, // features then target; None = missing
}

/// Parses a dataset document.
pub fn parse(bytes: &[u8], spec: &DatasetSpec, task: Task) -> Result<Dataset, TrainError> {
    let (columns, raw) = match spec.format.unwrap_or(DatasetFormat::Csv) {
        DatasetFormat::Csv => read_csv(bytes, spec)?,
        DatasetFormat::Jsonl => read_jsonl(bytes, spec)?,
    };
    convert(columns, raw, spec, task)
}

fn column_order(header: &[String], spec: &DatasetSpec) -> Result<Vec<String>, TrainError> {
    if !header.contains(&spec.target) {
        return Err(TrainError::Dataset(format!(
            "the target column {:?} is not in the data (columns: {})",
            spec.target,
            preview(header)
        )));
    }
    let features: Vec<String> = match &spec.features {
        Some(list) => {
            let missing: Vec<&String> = list.iter().filter(|f| !header.contains(f)).collect();
            if !missing.is_empty() {
                return Err(TrainError::Dataset(format!(
                    "feature columns {missing:?} are not in the data (columns: {})",
                    preview(header)
                )));
            }
            list.clone()
        }
        None => header
            .iter()
            .filter(|c| **c != spec.target)
            .cloned()
            .collect(),
    };
    if features.is_empty() {
        return Err(TrainError::Dataset(
            "the data has no feature columns besides the target".into(),
        ));
    }
    Ok(features)
}

fn preview(columns: &[String]) -> String {
    if columns.len() <= 8 {
        columns.join(", ")
    } else {
        format!("{}, … ({} in all)", columns[..8].join(", "), columns.len())
    }
}

fn read_csv(bytes: &[u8], spec: &DatasetSpec) -> Result<(Vec<String>, Vec<RawRow>), TrainError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| TrainError::Dataset(format!("cannot read the CSV header: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    if header.iter().all(String::is_empty) {
        return Err(TrainError::Dataset(
            "the CSV is empty; it needs a header line and rows".into(),
        ));
    }
    let features = column_order(&header, spec)?;
    let positions: Vec<usize> = features
        .iter()
        .chain(std::iter::once(&spec.target))
        .map(|c| header.iter().position(|h| h == c).unwrap_or(usize::MAX))
        .collect();
    let mut rows = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.len() == 1 && record.get(0).is_some_and(|c| c.trim().is_empty()) {
                    continue; // blank line
                }
                let cells = positions
                    .iter()
                    .map(|&p| {
                        record
                            .get(p)
                            .map(str::trim)
                            .filter(|c| !c.is_empty())
                            .map(str::to_string)
                    })
                    .collect();
                rows.push(RawRow { line, cells });
            }
            Err(e) => {
                return Err(TrainError::Dataset(format!("the CSV cannot be read: {e}")));
            }
        }
    }
    Ok((features, rows))
}

fn read_jsonl(bytes: &[u8], spec: &DatasetSpec) -> Result<(Vec<String>, Vec<RawRow>), TrainError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| TrainError::Dataset(format!("the JSON lines file is not UTF-8: {e}")))?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let doc: Value = serde_json::from_str(line)
            .map_err(|e| TrainError::Dataset(format!("line {}: not a JSON object ({e})", i + 1)))?;
        let Value::Object(map) = doc else {
            return Err(TrainError::Dataset(format!(
                "line {}: each line must be a JSON object keyed by column",
                i + 1
            )));
        };
        docs.push((i as u64 + 1, map));
    }
    let Some((_, first)) = docs.first() else {
        return Err(TrainError::Dataset(
            "the JSON lines file has no rows".into(),
        ));
    };
    let header: Vec<String> = first.keys().cloned().collect();
    let features = column_order(&header, spec)?;
    let rows = docs
        .into_iter()
        .map(|(line, map)| RawRow {
            line,
            cells: features
                .iter()
                .chain(std::iter::once(&spec.target))
                .map(|c| match map.get(c) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().is_empty() => None,
                    Some(Value::String(s)) => Some(s.trim().to_string()),
                    Some(other) => Some(other.to_string()),
                })
                .collect(),
        })
        .collect();
    Ok((features, rows))
}

fn convert(
    features: Vec<String>,
    raw: Vec<RawRow>,
    spec: &DatasetSpec,
    task: Task,
) -> Result<Dataset, TrainError> {
    let width = features.len();
    let mut problems: Vec<String> = Vec::new();
    let mut problem_count = 0usize;
    let mut note = |line: u64, column: &str, what: &str, problems: &mut Vec<String>| {
        problem_count += 1;
        if problems.len() < PROBLEMS_SHOWN {
            problems.push(format!("line {line}, column {column:?}: {what}"));
        }
    };
    // Classification targets: decide the label set first.
    let labels = match task {
        Task::Regression => None,
        Task::Binary | Task::Multiclass => class_labels(&raw, task)?,
    };
    let mut x = Vec::with_capacity(raw.len() * width);
    let mut y = Vec::with_capacity(raw.len());
    let mut dropped = 0u64;
    for row in &raw {
        let mut values = Vec::with_capacity(width);
        let mut ok = true;
        for (j, cell) in row.cells[..width].iter().enumerate() {
            match cell.as_deref().map(str::parse::<f32>) {
                None => {
                    ok = false;
                    note(row.line, &features[j], "missing value", &mut problems);
                }
                Some(Ok(v)) if v.is_finite() => values.push(v),
                Some(_) => {
                    ok = false;
                    let shown = cell.as_deref().unwrap_or_default();
                    note(
                        row.line,
                        &features[j],
                        &format!("{shown:?} is not a finite number"),
                        &mut problems,
                    );
                }
            }
        }
        let target = row.cells[width].as_deref();
        let t = match (task, target) {
            (_, None) => {
                note(row.line, &spec.target, "missing target", &mut problems);
                None
            }
            (Task::Regression, Some(s)) => match s.parse::<f32>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    note(
                        row.line,
                        &spec.target,
                        &format!("{s:?} is not a finite number"),
                        &mut problems,
                    );
                    None
                }
            },
            (_, Some(s)) => match &labels {
                Some(labels) => labels.iter().position(|l| l == s).map(|i| i as f32),
                None => binary_value(s),
            },
        };
        match (ok, t) {
            (true, Some(t)) => {
                x.extend(values);
                y.push(t);
            }
            _ => dropped += 1,
        }
    }
    if problem_count > 0 && spec.bad_rows == BadRows::Reject {
        let more = problem_count.saturating_sub(problems.len());
        let mut msg = format!(
            "{problem_count} bad value(s) in the dataset: {}",
            problems.join("; ")
        );
        if more > 0 {
            msg.push_str(&format!("; and {more} more"));
        }
        msg.push_str(
            ". Fix them, or set \"bad_rows\": \"drop\" in the dataset spec to leave such rows out",
        );
        return Err(TrainError::Dataset(msg));
    }
    if y.len() < 2 {
        return Err(TrainError::Dataset(format!(
            "the dataset has {} usable row(s); training needs at least 2 (one for validation)",
            y.len()
        )));
    }
    let outputs = match (task, &labels) {
        (Task::Multiclass, Some(labels)) => labels.len(),
        _ => 1,
    };
    Ok(Dataset {
        features,
        x,
        y,
        labels,
        dropped,
        outputs,
    })
}

fn binary_value(s: &str) -> Option<f32> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "1.0" | "true" => Some(1.0),
        "0" | "0.0" | "false" => Some(0.0),
        _ => None,
    }
}

/// The classes of a classification target. `None` for a binary target already coded 0/1.
fn class_labels(raw: &[RawRow], task: Task) -> Result<Option<Vec<String>>, TrainError> {
    let values: BTreeSet<&str> = raw
        .iter()
        .filter_map(|r| r.cells.last().and_then(|c| c.as_deref()))
        .collect();
    if task == Task::Binary {
        if values.iter().all(|v| binary_value(v).is_some()) {
            return Ok(None);
        }
        if values.len() != 2 {
            return Err(TrainError::Dataset(format!(
                "a binary target needs 0/1, true/false or exactly two distinct values; found {}: {}",
                values.len(),
                values
                    .iter()
                    .take(10)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if task == Task::Multiclass && values.len() < 2 {
        return Err(TrainError::Dataset(format!(
            "a multiclass target needs at least two distinct values; found {}",
            values.len()
        )));
    }
    if values.len() > 10_000 {
        return Err(TrainError::Dataset(format!(
            "the target has {} distinct values; is it a regression target?",
            values.len()
        )));
    }
    let mut labels: Vec<String> = values.into_iter().map(str::to_string).collect();
    // Numeric classes sort by value (2 before 10); others by text.
    if labels.iter().all(|l| l.parse::<f64>().is_ok()) {
        labels.sort_by(|a, b| {
            let (a, b) = (
                a.parse::<f64>().unwrap_or(0.0),
                b.parse::<f64>().unwrap_or(0.0),
            );
            a.total_cmp(&b)
        });
    }
    Ok(Some(labels))
}

/// A seeded shuffle of the rows into training and validation indices.
pub fn split(rows: usize, validation_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x05EE_D0F5_B117);
    order.shuffle(&mut rng);
    let val = ((rows as f64 * validation_fraction).round() as usize).clamp(1, rows - 1);
    let train = order.split_off(val);
    (train, order)
}

/// Per-feature mean and standard deviation of row-major `x` (population std; 1 where a feature
/// is constant, so it passes through centred).
pub fn standardization(x: &[f32], width: usize) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / width.max(1);
    let mut mean = vec![0f64; width];
    for row in x.chunks_exact(width) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += f64::from(*v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    let mut var = vec![0f64; width];
    for row in x.chunks_exact(width) {
        for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
            let d = f64::from(*v) - m;
            *s += d * d;
        }
    }
    let std = var
        .iter()
        .map(|s| {
            let sd = (s / rows.max(1) as f64).sqrt();
            if sd > 1e-12 { sd as f32 } else { 1.0 }
        })
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

/// Applies `(x - mean) / std` in place.
pub fn apply_standardization(x: &mut [f32], mean: &[f32], std: &[f32]) {
    for row in x.chunks_exact_mut(mean.len()) {
        for ((v, m), s) in row.iter_mut().zip(mean).zip(std) {
            *v = (*v - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(target: &str, bad_rows: BadRows, format: DatasetFormat) -> DatasetSpec {
        DatasetSpec {
            key: "d".into(),
            format: Some(format),
            target: target.into(),
            features: None,
            bad_rows,
        }
    }

    #[test]
    fn csv_bad_values_are_reported_by_line_and_column() {
        let csv = b"a,b,y\n1,2,3\n1,,3\nx,2,3\n4,5,6\n";
        let err = parse(
            csv,
            &spec("y", BadRows::Reject, DatasetFormat::Csv),
            Task::Regression,
        )
        .expect_err("bad")
        .to_string();
        assert!(err.contains("line 3, column \"b\": missing value"), "{err}");
        assert!(
            err.contains("line 4, column \"a\": \"x\" is not a finite number"),
            "{err}"
        );
        let ok = parse(
            csv,
            &spec("y", BadRows::Drop, DatasetFormat::Csv),
            Task::Regression,
        )
        .expect("dropped");
        assert_eq!((ok.rows(), ok.dropped), (2, 2));
        assert_eq!(ok.x, [1.0, 2.0, 4.0, 5.0]);
    }

    #[test]
    fn class_labels_come_from_the_target() {
        let jsonl = b"{\"a\": 1, \"kind\": \"cat\"}\n{\"a\": 2, \"kind\": \"dog\"}\n{\"a\": 3, \"kind\": \"bird\"}\n";
        let d = parse(
            jsonl,
            &spec("kind", BadRows::Reject, DatasetFormat::Jsonl),
            Task::Multiclass,
        )
        .expect("parses");
        assert_eq!(
            d.labels.as_deref(),
            Some(&["bird".to_string(), "cat".into(), "dog".into()][..])
        );
        assert_eq!(d.y, [1.0, 2.0, 0.0]);
        let err = parse(
            jsonl,
            &spec("kind", BadRows::Reject, DatasetFormat::Jsonl),
            Task::Binary,
        )
        .expect_err("three classes")
        .to_string();
        assert!(err.contains("exactly two"), "{err}");
    }

    #[test]
    fn the_split_is_seeded() {
        assert_eq!(split(100, 0.2, 7), split(100, 0.2, 7));
        assert_ne!(split(100, 0.2, 7), split(100, 0.2, 8));
        let (train, val) = split(100, 0.2, 7);
        assert_eq!((train.len(), val.len()), (80, 20));
    }
}
