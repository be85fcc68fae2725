//! The blocking scoring loop: reads rows (CSV with a header, or JSON lines), predicts them in
//! chunks, writes each good row with its predictions and each bad row to the errors file with
//! its line and reason. A bad row never fails the file; an unreadable file or a model failure
//! does.

use std::io::{BufRead, BufReader, Read, Write};

use maas_engine::{
    ClassLabel, EngineError, Field, LoadedModel, RowAnswers, RowBatch, RowLayout, push_json_row,
};
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

/// The columns (CSV) or keys (JSON lines) a scored row gets: a classifier's `label` and one
/// `probability_<class>` per class; any other model's first output as `prediction` (one value
/// per row) or `prediction_0`, `prediction_1`, ….
struct OutputColumns {
    classes: Option<Vec<ClassLabel>>,
    width: usize,
}

impl OutputColumns {
    fn of(model: &LoadedModel) -> Self {
        Self {
            classes: model.classes().map(<[ClassLabel]>::to_vec),
            width: model.outputs().first().map_or(1, |o| o.row_width().max(1)),
        }
    }

    fn names(&self) -> Vec<String> {
        match &self.classes {
            Some(classes) => std::iter::once("label".to_string())
                .chain(classes.iter().map(|c| format!("probability_{c}")))
                .collect(),
            None if self.width == 1 => vec!["prediction".into()],
            None => (0..self.width).map(|i| format!("prediction_{i}")).collect(),
        }
    }

    /// Row `row` of `answers` as JSON values, one per name.
    fn values(&self, answers: &RowAnswers, row: usize) -> Result<Vec<Value>, BatchError> {
        match (&self.classes, answers.classified()) {
            (Some(_), Some(c)) => Ok(std::iter::once(c.labels[row].to_json())
                .chain(c.probabilities_of(row).iter().map(|&p| f32_value(p)))
                .collect()),
            (Some(_), None) => Err(unreadable_classes()),
            (None, _) => {
                let one = answers.prediction_json(row);
                Ok(match one {
                    Value::Array(items) => items,
                    scalar => vec![scalar],
                })
            }
        }
    }

    /// Row `row` of `answers` as CSV cells, one per name.
    fn cells(&self, answers: &RowAnswers, row: usize) -> Result<Vec<String>, BatchError> {
        match (&self.classes, answers.classified()) {
            (Some(_), Some(c)) => Ok(std::iter::once(c.labels[row].to_string())
                .chain(c.probabilities_of(row).iter().map(f32::to_string))
                .collect()),
            (Some(_), None) => Err(unreadable_classes()),
            (None, _) => Ok(answers.prediction_cells(row).collect()),
        }
    }
}

fn unreadable_classes() -> BatchError {
    BatchError::Engine(EngineError::Inference {
        message: "the classifier's probabilities don't have one column per class".into(),
    })
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

/// Scores CSV rows. The columns used are named by the model's [`RowLayout`] (the manifest's
/// `features`, or the inputs' names), or are every column when the model takes that many values
/// in order.
pub fn score_csv(
    input: impl Read,
    model: &LoadedModel,
    output: impl Write,
    mut errors: impl Write,
    chunk_rows: usize,
) -> Result<RowCounts, BatchError> {
    let layout = RowLayout::of(model)?;
    let out_columns = OutputColumns::of(model);
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
    let columns = layout
        .columns_of(&header_names)
        .map_err(BatchError::Schema)?;
    let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(output);
    let mut out_header: Vec<String> = header_names.clone();
    out_header.extend(out_columns.names());
    writer
        .write_record(&out_header)
        .map_err(|e| BatchError::Output(e.to_string()))?;

    let mut counts = RowCounts::default();
    let mut pending: Vec<csv::ByteRecord> = Vec::with_capacity(chunk_rows);
    let mut batch = layout.batch();
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
        let pushed = batch.push_row(|k, _| match std::str::from_utf8(&record[columns[k]]) {
            Ok(cell) => Field::Text(cell),
            Err(_) => Field::Text("(not UTF-8)"),
        });
        if let Err(reason) = pushed {
            let reason = if layout.is_named() {
                format!("column {reason}")
            } else {
                reason
            };
            reject(&mut errors, line, &reason, &mut counts)?;
            continue;
        }
        pending.push(record.clone());
        if pending.len() == chunk_rows {
            flush_csv(
                model,
                &out_columns,
                &mut pending,
                &mut batch,
                &mut writer,
                &mut counts,
            )?;
        }
    }
    flush_csv(
        model,
        &out_columns,
        &mut pending,
        &mut batch,
        &mut writer,
        &mut counts,
    )?;
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
    out_columns: &OutputColumns,
    pending: &mut Vec<csv::ByteRecord>,
    batch: &mut RowBatch<'_>,
    writer: &mut csv::Writer<W>,
    counts: &mut RowCounts,
) -> Result<(), BatchError> {
    if pending.is_empty() {
        return Ok(());
    }
    let rows = batch.rows();
    let answers = model.answer(batch.take_tensors()?, rows)?;
    for (row, record) in pending.iter().enumerate() {
        let mut out: Vec<Vec<u8>> = record.iter().map(<[u8]>::to_vec).collect();
        out.extend(
            out_columns
                .cells(&answers, row)?
                .into_iter()
                .map(String::into_bytes),
        );
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
    let layout = RowLayout::of(model)?;
    let out_columns = OutputColumns::of(model);
    let mut batch = layout.batch();
    let mut counts = RowCounts::default();
    let mut pending: Vec<Value> = Vec::with_capacity(chunk_rows);
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
        if let Err(reason) = push_json_row(&mut batch, &row) {
            reject(&mut errors, line_no, &reason, &mut counts)?;
            continue;
        }
        pending.push(row);
        if pending.len() == chunk_rows {
            flush_jsonl(
                model,
                &out_columns,
                &mut pending,
                &mut batch,
                &mut output,
                &mut counts,
            )?;
        }
    }
    flush_jsonl(
        model,
        &out_columns,
        &mut pending,
        &mut batch,
        &mut output,
        &mut counts,
    )?;
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
    out_columns: &OutputColumns,
    pending: &mut Vec<Value>,
    batch: &mut RowBatch<'_>,
    output: &mut impl Write,
    counts: &mut RowCounts,
) -> Result<(), BatchError> {
    if pending.is_empty() {
        return Ok(());
    }
    let rows = batch.rows();
    let answers = model.answer(batch.take_tensors()?, rows)?;
    let names = out_columns.names();
    for (row_ix, row) in pending.drain(..).enumerate() {
        let mut doc = match row {
            Value::Object(map) => map,
            other => {
                let mut map = serde_json::Map::new();
                map.insert("instance".into(), other);
                map
            }
        };
        if out_columns.classes.is_none() {
            // One key for the whole prediction: a value, or a list of them.
            doc.insert("prediction".into(), answers.prediction_json(row_ix));
        } else {
            for (name, value) in names.iter().zip(out_columns.values(&answers, row_ix)?) {
                doc.insert(name.clone(), value);
            }
        }
        writeln!(output, "{}", Value::Object(doc))
            .map_err(|e| BatchError::Output(e.to_string()))?;
        counts.scored += 1;
    }
    Ok(())
}
