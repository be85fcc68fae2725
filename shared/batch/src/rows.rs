//! The blocking scoring loop: reads rows (CSV with a header, or JSON lines), predicts them in
//! chunks, writes each good row with its predictions and each bad row to the errors file with
//! its line and reason. A bad row never fails the file; an unreadable file or a model failure
//! does.

use std::io::{BufRead, BufReader, Read, Write};

use maas_engine::LoadedModel;
use serde_json::{Value, json};

use crate::BatchError;

/// Counts of one scoring run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Data rows read (header excluded, blank JSON lines excluded).
    pub read: u64,
    /// Rows written with predictions.
    pub scored: u64,
    /// Rows written to the errors file.
    pub rejected: u64,
}

/// How predictions are named: `prediction` or `prediction_{i}`, plus `label` when the manifest
/// names classes.
struct OutputShape {
    width: usize,
    labelled: bool,
}

impl OutputShape {
    fn of(model: &LoadedModel) -> Self {
        Self {
            width: model.outputs().first().map_or(1, |o| o.row_width().max(1)),
            labelled: model.has_labels(),
        }
    }

    fn columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = if self.width == 1 {
            vec!["prediction".into()]
        } else {
            (0..self.width).map(|i| format!("prediction_{i}")).collect()
        };
        if self.labelled {
            cols.push("label".into());
        }
        cols
    }
}

/// A float32 as JSON in its shortest form (`0.9461776`, not `0.946177601814270`).
fn f32_value(x: f32) -> Value {
    x.to_string()
        .parse::<serde_json::Number>()
        .map_or(Value::Null, Value::Number)
}

fn reject(
    errors: &mut impl Write,
    line: u64,
    reason: &str,
    counts: &mut RowCounts,
) -> Result<(), BatchError> {
    counts.rejected += 1;
    let entry = json!({"line": line, "reason": reason});
    writeln!(errors, "{entry}").map_err(|e| BatchError::Output(e.to_string()))
}

fn io_failure(e: std::io::Error) -> BatchError {
    BatchError::Input(e.to_string())
}

/// Row-shaped models only: one input whose rows are flat feature vectors.
fn input_width(model: &LoadedModel) -> Result<usize, BatchError> {
    if model.inputs().len() != 1 {
        return Err(BatchError::Schema(
            "batch scoring needs a model with one input; this one takes several".into(),
        ));
    }
    Ok(model.inputs()[0].row_width())
}

/// Scores CSV rows. The columns used are the manifest's `features` (by name), or every column
/// when the manifest names none and the file has exactly the model's input width.
pub fn score_csv(
    input: impl Read,
    model: &LoadedModel,
    output: impl Write,
    mut errors: impl Write,
    chunk_rows: usize,
) -> Result<RowCounts, BatchError> {
    let width = input_width(model)?;
    let allow_non_finite = model.manifest().allow_non_finite;
    let shape = OutputShape::of(model);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(input);
    let headers = reader
        .byte_headers()
        .map_err(|e| BatchError::Input(format!("the CSV header can't be read: {e}")))?
        .clone();
    let header_names: Vec<String> = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let columns: Vec<usize> = match &model.manifest().features {
        Some(features) => features
            .iter()
            .map(|name| {
                header_names.iter().position(|h| h == name).ok_or_else(|| {
                    BatchError::Schema(format!(
                        "the CSV has no column {name:?}, which the model needs"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
        None if header_names.len() == width => (0..width).collect(),
        None => {
            return Err(BatchError::Schema(format!(
                "the CSV has {} columns but the model takes {width} features and its manifest names none to pick by; give exactly {width} columns or push the model with `features`",
                header_names.len()
            )));
        }
    };
    let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(output);
    let mut out_header: Vec<String> = header_names.clone();
    out_header.extend(shape.columns());
    writer
        .write_record(&out_header)
        .map_err(|e| BatchError::Output(e.to_string()))?;

    let mut counts = RowCounts::default();
    let mut pending: Vec<csv::ByteRecord> = Vec::with_capacity(chunk_rows);
    let mut values: Vec<f32> = Vec::with_capacity(chunk_rows * width);
    let mut record = csv::ByteRecord::new();
    loop {
        let more = match reader.read_byte_record(&mut record) {
            Ok(more) => more,
            Err(e) => match e.kind() {
                csv::ErrorKind::Io(_) => return Err(BatchError::Input(e.to_string())),
                _ => {
                    counts.read += 1;
                    let line = e.position().map_or(0, |p| p.line());
                    reject(
                        &mut errors,
                        line,
                        &format!("malformed CSV: {e}"),
                        &mut counts,
                    )?;
                    continue;
                }
            },
        };
        if !more {
            break;
        }
        counts.read += 1;
        let line = record.position().map_or(counts.read + 1, |p| p.line());
        if record.len() != headers.len() {
            let reason = format!(
                "the row has {} fields but the header has {}",
                record.len(),
                headers.len()
            );
            reject(&mut errors, line, &reason, &mut counts)?;
            continue;
        }
        let start = values.len();
        let mut bad: Option<String> = None;
        for &c in &columns {
            let cell = String::from_utf8_lossy(&record[c]);
            match cell.trim().parse::<f32>() {
                Ok(v) if v.is_finite() || allow_non_finite => values.push(v),
                Ok(_) => {
                    bad = Some(format!(
                        "column {:?} is {cell:?}; the model takes finite numbers",
                        header_names[c]
                    ));
                    break;
                }
                Err(_) => {
                    bad = Some(format!(
                        "column {:?}: {cell:?} is not a number",
                        header_names[c]
                    ));
                    break;
                }
            }
        }
        if let Some(reason) = bad {
            values.truncate(start);
            reject(&mut errors, line, &reason, &mut counts)?;
            continue;
        }
        pending.push(record.clone());
        if pending.len() == chunk_rows {
            flush_csv(model, &mut pending, &mut values, &mut writer, &mut counts)?;
        }
    }
    flush_csv(model, &mut pending, &mut values, &mut writer, &mut counts)?;
    writer
        .flush()
        .map_err(|e| BatchError::Output(e.to_string()))?;
    errors
        .flush()
        .map_err(|e| BatchError::Output(e.to_string()))?;
    Ok(counts)
}

fn flush_csv<W: Write>(
    model: &LoadedModel,
    pending: &mut Vec<csv::ByteRecord>,
    values: &mut Vec<f32>,
    writer: &mut csv::Writer<W>,
    counts: &mut RowCounts,
) -> Result<(), BatchError> {
    if pending.is_empty() {
        return Ok(());
    }
    let predictions = model.predict_rows(std::mem::take(values), pending.len())?;
    for (record, prediction) in pending.iter().zip(&predictions) {
        let mut out: Vec<Vec<u8>> = record.iter().map(<[u8]>::to_vec).collect();
        out.extend(prediction.iter().map(|p| p.to_string().into_bytes()));
        if let Some(label) = model.label(prediction) {
            out.push(label.as_bytes().to_vec());
        }
        writer
            .write_record(&out)
            .map_err(|e| BatchError::Output(e.to_string()))?;
    }
    counts.scored += pending.len() as u64;
    pending.clear();
    Ok(())
}

/// Scores JSON lines: objects keyed by the manifest's `features`, or arrays of numbers. Each
/// output line is the input object with `prediction` (and `label`) added; an array row becomes
/// `{"instance": [...], "prediction": ...}`.
pub fn score_jsonl(
    input: impl Read,
    model: &LoadedModel,
    mut output: impl Write,
    mut errors: impl Write,
    chunk_rows: usize,
) -> Result<RowCounts, BatchError> {
    let width = input_width(model)?;
    let allow_non_finite = model.manifest().allow_non_finite;
    let features = model.manifest().features.clone();
    let mut counts = RowCounts::default();
    let mut pending: Vec<Value> = Vec::with_capacity(chunk_rows);
    let mut values: Vec<f32> = Vec::with_capacity(chunk_rows * width);
    let mut reader = BufReader::new(input);
    let mut bytes = Vec::new();
    let mut line_no = 0u64;
    while let Some(fits) = read_bounded_line(&mut reader, &mut bytes, MAX_LINE_BYTES)? {
        line_no += 1;
        if !fits {
            counts.read += 1;
            reject(
                &mut errors,
                line_no,
                &format!(
                    "the line is longer than {} MiB; split the record or send it as CSV",
                    MAX_LINE_BYTES >> 20
                ),
                &mut counts,
            )?;
            continue;
        }
        let line = match std::str::from_utf8(&bytes) {
            Ok(line) => line,
            Err(e) => {
                counts.read += 1;
                reject(
                    &mut errors,
                    line_no,
                    &format!(
                        "not valid UTF-8 at byte {} of the line; save the file as UTF-8",
                        e.valid_up_to()
                    ),
                    &mut counts,
                )?;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        counts.read += 1;
        let row: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                reject(
                    &mut errors,
                    line_no,
                    &format!("not valid JSON: {e}"),
                    &mut counts,
                )?;
                continue;
            }
        };
        let start = values.len();
        let parsed: Result<(), String> = match &row {
            Value::Object(map) => {
                match &features {
                    Some(names) => names.iter().try_for_each(|name| {
                        match map.get(name).and_then(Value::as_f64) {
                            Some(v) => {
                                values.push(v as f32);
                                Ok(())
                            }
                            None => Err(format!("feature {name:?} is missing or not a number")),
                        }
                    }),
                    None => Err(format!(
                        "the row is an object but the model's manifest names no features; send arrays of {width} numbers"
                    )),
                }
            }
            Value::Array(items) if items.len() == width => {
                items
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, v)| match v.as_f64() {
                        Some(x) => {
                            values.push(x as f32);
                            Ok(())
                        }
                        None => Err(format!("value {i} is {v}, not a number")),
                    })
            }
            Value::Array(items) => Err(format!(
                "the row has {} values but the model takes {width}",
                items.len()
            )),
            other => Err(format!("the row is {other}, not an object or an array")),
        };
        let parsed = parsed.and_then(|()| {
            if !allow_non_finite && values[start..].iter().any(|v| !v.is_finite()) {
                Err("a value is too large for FP32 (infinite)".to_string())
            } else {
                Ok(())
            }
        });
        if let Err(reason) = parsed {
            values.truncate(start);
            reject(&mut errors, line_no, &reason, &mut counts)?;
            continue;
        }
        pending.push(row);
        if pending.len() == chunk_rows {
            flush_jsonl(model, &mut pending, &mut values, &mut output, &mut counts)?;
        }
    }
    flush_jsonl(model, &mut pending, &mut values, &mut output, &mut counts)?;
    output
        .flush()
        .map_err(|e| BatchError::Output(e.to_string()))?;
    errors
        .flush()
        .map_err(|e| BatchError::Output(e.to_string()))?;
    Ok(counts)
}

/// The longest JSON line held in memory; a longer one is rejected as a row (and skipped
/// without being held), so one huge line can't exhaust a function's memory.
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// Reads one line (without its `\n`) into `line`, holding at most `limit` bytes of it. Returns
/// `None` at the end of the input, `Some(true)` for a line that fits and `Some(false)` for one
/// that doesn't (the rest of it is read past, not kept).
fn read_bounded_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    limit: usize,
) -> Result<Option<bool>, BatchError> {
    line.clear();
    let mut fits = true;
    let mut started = false;
    loop {
        let available = reader.fill_buf().map_err(io_failure)?;
        if available.is_empty() {
            return Ok(started.then_some(fits));
        }
        started = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let piece = &available[..newline.unwrap_or(available.len())];
        if fits {
            if line.len() + piece.len() > limit {
                fits = false;
                line.clear();
            } else {
                line.extend_from_slice(piece);
            }
        }
        let used = newline.map_or(available.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(Some(fits));
        }
    }
}

fn flush_jsonl(
    model: &LoadedModel,
    pending: &mut Vec<Value>,
    values: &mut Vec<f32>,
    output: &mut impl Write,
    counts: &mut RowCounts,
) -> Result<(), BatchError> {
    if pending.is_empty() {
        return Ok(());
    }
    let predictions = model.predict_rows(std::mem::take(values), pending.len())?;
    for (row, prediction) in pending.drain(..).zip(&predictions) {
        let value = if prediction.len() == 1 {
            f32_value(prediction[0])
        } else {
            Value::Array(prediction.iter().copied().map(f32_value).collect())
        };
        let mut doc = match row {
            Value::Object(map) => map,
            other => {
                let mut map = serde_json::Map::new();
                map.insert("instance".into(), other);
                map
            }
        };
        doc.insert("prediction".into(), value);
        if let Some(label) = model.label(prediction) {
            doc.insert("label".into(), json!(label));
        }
        writeln!(output, "{}", Value::Object(doc))
            .map_err(|e| BatchError::Output(e.to_string()))?;
        counts.scored += 1;
    }
    Ok(())
}
