//! Rows of named fields (CSV columns, JSON keys, V1 instances) into a model's input tensors.
//! Batch scoring, V1 `:predict` and `maas predict` all read rows through a [`RowLayout`], so a
//! row means the same thing everywhere.
//!
//! Which field fills which value of which input:
//!
//! - the manifest's `features` name every value of every input, input after input (one input:
//!   its feature columns; `features: ["age", "income", "plan_id"]` for an `FP32 [-1, 2]` input
//!   and an `INT64 [-1, 1]` input);
//! - else a model with several inputs takes each from fields named after it: the field `name`
//!   for an input of one value per row, `name_0`, `name_1`, … for a wider one (a JSON row may
//!   also give `name` as a list);
//! - else the lone input takes the row's values in order (a CSV of exactly that many columns,
//!   or a JSON list).
//!
//! Float inputs take numbers; an empty CSV cell, `NaN` or a JSON `null` is a missing value
//! (NaN) where the manifest lets NaN through (tree models), and an error otherwise. Integer
//! inputs take integers (`3`, or `3.0`).

use maas_core::{DataType, TensorSpec};
use serde_json::Value;

use crate::EngineError;
use crate::predictor::LoadedModel;
use crate::tensor::{Tensor, TensorData};

/// One value of a row, as the source holds it.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    /// A CSV cell.
    Text(&'a str),
    /// A JSON value.
    Json(&'a Value),
    /// The row has no such field.
    Missing,
}

/// Where one input's values come from.
#[derive(Debug, Clone)]
struct InputLayout {
    spec: TensorSpec,
    width: usize,
    /// The field of each value; `None`: the row's values in order (a lone input).
    fields: Option<Vec<String>>,
}

/// How a model's inputs are filled from a row's fields.
#[derive(Debug, Clone)]
pub struct RowLayout {
    inputs: Vec<InputLayout>,
    allow_non_finite: bool,
}

impl RowLayout {
    /// The layout of `model`'s inputs (see the module's documentation).
    pub fn of(model: &LoadedModel) -> Result<Self, EngineError> {
        let specs = model.inputs();
        if specs.is_empty() {
            return Err(EngineError::UnsupportedModel {
                message: "the model declares no inputs".into(),
            });
        }
        let total: usize = specs.iter().map(TensorSpec::row_width).sum();
        let features = model
            .manifest()
            .features
            .as_ref()
            .filter(|f| f.len() == total);
        let mut next_feature = 0;
        let inputs = specs
            .iter()
            .map(|spec| {
                let width = spec.row_width();
                let fields = match features {
                    Some(names) => {
                        let mine = names[next_feature..next_feature + width].to_vec();
                        next_feature += width;
                        Some(mine)
                    }
                    None if specs.len() == 1 => None,
                    None if width == 1 => Some(vec![spec.name.clone()]),
                    None => Some((0..width).map(|i| format!("{}_{i}", spec.name)).collect()),
                };
                InputLayout {
                    spec: spec.clone(),
                    width,
                    fields,
                }
            })
            .collect();
        Ok(Self {
            inputs,
            allow_non_finite: model.manifest().allow_non_finite,
        })
    }

    /// Whether rows are read by field name (`false`: a lone input takes the values in order).
    pub fn is_named(&self) -> bool {
        self.inputs.iter().all(|i| i.fields.is_some())
    }

    /// Values per row over all inputs.
    pub fn width(&self) -> usize {
        self.inputs.iter().map(|i| i.width).sum()
    }

    /// Every field a row needs, in input order (empty when rows are read in order).
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.inputs
            .iter()
            .flat_map(|i| i.fields.iter().flatten().map(String::as_str))
    }

    /// The input names, and which of them takes several values per row, for messages.
    fn describe_inputs(&self) -> String {
        self.inputs
            .iter()
            .map(|i| {
                format!(
                    "{} ({} {})",
                    i.spec.name,
                    i.spec.datatype,
                    i.spec.shape_string()
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The columns of a CSV with `header` that fill the inputs, in [`RowLayout::field_names`]
    /// order (for rows read in order: every column, when there are exactly as many as values).
    pub fn columns_of(&self, header: &[String]) -> Result<Vec<usize>, String> {
        if !self.is_named() {
            let width = self.width();
            return if header.len() == width {
                Ok((0..width).collect())
            } else {
                Err(format!(
                    "the CSV has {} columns but the model takes {width} values per row and its manifest names no features to pick by; give exactly {width} columns or push the model with `features`",
                    header.len()
                ))
            };
        }
        self.field_names()
            .map(|name| {
                header.iter().position(|h| h == name).ok_or_else(|| {
                    format!(
                        "the CSV has no column {name:?}, which the model needs (its inputs: {}; columns are named by the manifest's features, or after the inputs)",
                        self.describe_inputs()
                    )
                })
            })
            .collect()
    }

    /// An empty batch of rows for this layout.
    pub fn batch(&self) -> RowBatch<'_> {
        RowBatch {
            layout: self,
            buffers: self
                .inputs
                .iter()
                .map(|i| Buffer::for_type(i.spec.datatype))
                .collect(),
            rows: 0,
        }
    }
}

/// The values of one input, in the type it is sent in.
#[derive(Debug, Clone)]
enum Buffer {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl Buffer {
    fn for_type(datatype: DataType) -> Self {
        match datatype {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::Uint8
            | DataType::Uint16
            | DataType::Uint32
            | DataType::Uint64
            | DataType::Bool => Buffer::Int(Vec::new()),
            _ => Buffer::Float(Vec::new()),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Buffer::Float(v) => v.truncate(len),
            Buffer::Int(v) => v.truncate(len),
        }
    }
}

/// Rows gathered for one prediction.
#[derive(Debug)]
pub struct RowBatch<'a> {
    layout: &'a RowLayout,
    buffers: Vec<Buffer>,
    rows: usize,
}

impl RowBatch<'_> {
    /// Rows gathered so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds one row, reading value `k` (in [`RowLayout::field_names`] order, or the `k`-th
    /// value of a row read in order) with `field(k, name)`. A row with a bad value is not
    /// added, and the error says which field and why.
    pub fn push_row<'f>(
        &mut self,
        mut field: impl FnMut(usize, &str) -> Field<'f>,
    ) -> Result<(), String> {
        let mut k = 0;
        let mut result = Ok(());
        'inputs: for (input, buffer) in self.layout.inputs.iter().zip(&mut self.buffers) {
            for j in 0..input.width {
                let name = input.fields.as_ref().map_or("", |f| f[j].as_str());
                let value = field(k, name);
                k += 1;
                let what = || {
                    if name.is_empty() {
                        format!("value {j}")
                    } else {
                        format!("{name:?}")
                    }
                };
                let pushed = match buffer {
                    Buffer::Float(v) => {
                        float(value, self.layout.allow_non_finite).map(|x| v.push(x))
                    }
                    Buffer::Int(v) => integer(value).map(|x| v.push(x)),
                };
                if let Err(why) = pushed {
                    result = Err(format!("{} {why}", what()));
                    break 'inputs;
                }
            }
        }
        if result.is_err() {
            // Every input holds `rows × width` values of the rows added before this one.
            for (buffer, input) in self.buffers.iter_mut().zip(&self.layout.inputs) {
                buffer.truncate(self.rows * input.width);
            }
        } else {
            self.rows += 1;
        }
        result
    }

    /// The gathered rows as the model's input tensors; the batch is empty again after.
    pub fn take_tensors(&mut self) -> Result<Vec<Tensor>, EngineError> {
        let rows = std::mem::take(&mut self.rows);
        self.layout
            .inputs
            .iter()
            .zip(&mut self.buffers)
            .map(|(input, buffer)| {
                let mut shape = vec![rows];
                shape.extend(
                    input
                        .spec
                        .shape
                        .iter()
                        .skip(1)
                        .map(|&d| usize::try_from(d).unwrap_or(1)),
                );
                let data = match buffer {
                    Buffer::Float(v) => TensorData::F32(std::mem::take(v)),
                    Buffer::Int(v) => TensorData::I64(std::mem::take(v)),
                };
                Tensor::new(input.spec.name.clone(), shape, data)
            })
            .collect()
    }
}

fn float(field: Field<'_>, allow_non_finite: bool) -> Result<f32, String> {
    let missing = |what: &str| {
        if allow_non_finite {
            Ok(f32::NAN)
        } else {
            Err(format!(
                "is {what}; the model takes finite numbers (its manifest does not set allow_non_finite)"
            ))
        }
    };
    let x = match field {
        Field::Missing => return Err("is missing".into()),
        Field::Text(cell) => {
            let cell = cell.trim();
            if cell.is_empty() {
                return missing("empty");
            }
            cell.parse::<f32>()
                .map_err(|_| format!("is {cell:?}, not a number"))?
        }
        Field::Json(Value::Null) => return missing("null"),
        Field::Json(v) => v
            .as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| format!("is {v}, not a number"))?,
    };
    if x.is_finite() {
        Ok(x)
    } else {
        missing(&format!("{x}"))
    }
}

fn integer(field: Field<'_>) -> Result<i64, String> {
    let from_float = |x: f64| {
        (x.fract() == 0.0 && x.abs() < 9.0e15)
            .then_some(x as i64)
            .ok_or_else(|| format!("is {x}, not an integer"))
    };
    match field {
        Field::Missing => Err("is missing".into()),
        Field::Text(cell) => {
            let cell = cell.trim();
            cell.parse::<i64>().or_else(|_| {
                cell.parse::<f64>()
                    .map_err(|_| format!("is {cell:?}, not an integer"))
                    .and_then(from_float)
            })
        }
        Field::Json(v) => match v.as_i64() {
            Some(i) => Ok(i),
            None => v
                .as_f64()
                .ok_or_else(|| format!("is {v}, not an integer"))
                .and_then(from_float),
        },
    }
}

/// Reads one JSON row into `batch`: an object by field name (a wider input may also be given
/// as a list under its own name), or a list of values for a model read in order.
pub fn push_json_row(batch: &mut RowBatch<'_>, row: &Value) -> Result<(), String> {
    let layout = batch.layout;
    match row {
        Value::Object(map) => {
            if !layout.is_named() {
                return Err(format!(
                    "the row is an object but the model's manifest names no features; send lists of {} numbers",
                    layout.width()
                ));
            }
            // Positions of a wider input given as a list under the input's name.
            let mut lists: Vec<Option<&Vec<Value>>> = Vec::new();
            for input in &layout.inputs {
                let list = match map.get(&input.spec.name) {
                    Some(Value::Array(items)) if items.len() == input.width => Some(items),
                    _ => None,
                };
                lists.extend(std::iter::repeat_n(list, input.width));
            }
            let mut within = Vec::with_capacity(lists.len());
            for input in &layout.inputs {
                within.extend(0..input.width);
            }
            batch.push_row(|k, name| match map.get(name) {
                Some(v) => Field::Json(v),
                None => match lists[k] {
                    Some(items) => Field::Json(&items[within[k]]),
                    None => Field::Missing,
                },
            })
        }
        Value::Array(items) if !layout.is_named() || layout.inputs.len() == 1 => {
            let width = layout.width();
            let flat = flatten(items);
            if flat.len() != width {
                return Err(format!(
                    "the row has {} values but the model takes {width} per row ({})",
                    flat.len(),
                    layout.describe_inputs()
                ));
            }
            batch.push_row(|k, _| Field::Json(flat[k]))
        }
        Value::Array(_) => Err(format!(
            "the model takes several inputs ({}); send each row as an object keyed by input name",
            layout.describe_inputs()
        )),
        other => Err(format!("the row is {other}, not an object or a list")),
    }
}

/// The scalars of a (possibly nested) list, in order.
fn flatten(items: &[Value]) -> Vec<&Value> {
    let mut out = Vec::with_capacity(items.len());
    let mut stack: Vec<&Value> = items.iter().rev().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(inner) => stack.extend(inner.iter().rev()),
            scalar => out.push(scalar),
        }
    }
    out
}
