//! Engine-neutral tensors: a name, a shape and a flat, row-major buffer of one of the numeric
//! types the Open Inference Protocol carries. The HTTP layer, the CLI and batch scoring build
//! these; the engines turn them into their own types internally.

use maas_core::DataType;

use crate::EngineError;

/// A flat, row-major tensor buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// 32-bit floats (`FP32`).
    F32(Vec<f32>),
    /// 64-bit floats (`FP64`).
    F64(Vec<f64>),
    /// 32-bit integers (`INT32`).
    I32(Vec<i32>),
    /// 64-bit integers (`INT64`).
    I64(Vec<i64>),
    /// Strings (`BYTES`): class labels of classifiers trained on string targets.
    Bytes(Vec<String>),
}

/// The first element `bad` holds for. Every request is scanned, so the scan runs in blocks
/// with no early exit inside one (which the compiler vectorises), and looks for the position
/// only in the block that has one.
fn first_non_finite<T: Copy>(values: &[T], bad: impl Fn(T) -> bool) -> Option<usize> {
    const BLOCK: usize = 256;
    values
        .chunks(BLOCK)
        .enumerate()
        .find(|(_, block)| block.iter().fold(false, |any, &x| any | bad(x)))
        .and_then(|(i, block)| Some(i * BLOCK + block.iter().position(|&x| bad(x))?))
}

impl TensorData {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    /// True if there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The protocol datatype of the buffer.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::F32(_) => DataType::Fp32,
            TensorData::F64(_) => DataType::Fp64,
            TensorData::I32(_) => DataType::Int32,
            TensorData::I64(_) => DataType::Int64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// Position of the first NaN or infinity, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        match self {
            TensorData::F32(v) => first_non_finite(v, |x| !x.is_finite()),
            TensorData::F64(v) => first_non_finite(v, |x| !x.is_finite()),
            TensorData::I32(_) | TensorData::I64(_) | TensorData::Bytes(_) => None,
        }
    }

    /// Converts to `target`, or says why it can't.
    pub fn cast(self, target: DataType) -> Result<TensorData, EngineError> {
        if self.datatype() == target {
            return Ok(self);
        }
        let unsupported = |from: DataType| EngineError::InvalidInput {
            message: format!("cannot convert {from} data to {target}"),
        };
        let from = self.datatype();
        Ok(match target {
            DataType::Fp32 => TensorData::F32(match self {
                TensorData::F32(v) => v,
                TensorData::F64(v) => v.into_iter().map(|x| x as f32).collect(),
                TensorData::I32(v) => v.into_iter().map(|x| x as f32).collect(),
                TensorData::I64(v) => v.into_iter().map(|x| x as f32).collect(),
                TensorData::Bytes(_) => return Err(unsupported(from)),
            }),
            DataType::Fp64 => TensorData::F64(match self {
                TensorData::F32(v) => v.into_iter().map(f64::from).collect(),
                TensorData::F64(v) => v,
                TensorData::I32(v) => v.into_iter().map(f64::from).collect(),
                TensorData::I64(v) => v.into_iter().map(|x| x as f64).collect(),
                TensorData::Bytes(_) => return Err(unsupported(from)),
            }),
            DataType::Int64 => TensorData::I64(match self {
                TensorData::I32(v) => v.into_iter().map(i64::from).collect(),
                TensorData::I64(v) => v,
                _ => return Err(unsupported(from)),
            }),
            DataType::Int32 => TensorData::I32(match self {
                TensorData::I32(v) => v,
                TensorData::I64(v) => v
                    .into_iter()
                    .map(|x| {
                        i32::try_from(x).map_err(|_| EngineError::InvalidInput {
                            message: format!("value {x} does not fit INT32"),
                        })
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(unsupported(from)),
            }),
            _ => return Err(unsupported(from)),
        })
    }

    /// The values as `f32` (lossy for 64-bit types), for postprocessing and printing; a
    /// string that is not a number is NaN.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bytes(v) => v.iter().map(|s| s.parse().unwrap_or(f32::NAN)).collect(),
        }
    }

    /// Element `ix` as JSON in its own type (a float in its shortest form, an integer as an
    /// integer, a string as a string); `null` past the end or for a non-finite float.
    pub fn json_at(&self, ix: usize) -> serde_json::Value {
        use serde_json::Value;
        let float = |x: f64, shortest: String| {
            if x.is_finite() {
                shortest
                    .parse::<serde_json::Number>()
                    .map_or(Value::Null, Value::Number)
            } else {
                Value::Null
            }
        };
        match self {
            TensorData::F32(v) => v
                .get(ix)
                .map_or(Value::Null, |&x| float(f64::from(x), x.to_string())),
            TensorData::F64(v) => v.get(ix).map_or(Value::Null, |&x| float(x, x.to_string())),
            TensorData::I32(v) => v.get(ix).map_or(Value::Null, |&x| x.into()),
            TensorData::I64(v) => v.get(ix).map_or(Value::Null, |&x| x.into()),
            TensorData::Bytes(v) => v.get(ix).map_or(Value::Null, |x| x.as_str().into()),
        }
    }

    /// Element `ix` as text, as a CSV cell holds it (empty past the end).
    pub fn text_at(&self, ix: usize) -> String {
        match self {
            TensorData::F32(v) => v.get(ix).map(f32::to_string),
            TensorData::F64(v) => v.get(ix).map(f64::to_string),
            TensorData::I32(v) => v.get(ix).map(i32::to_string),
            TensorData::I64(v) => v.get(ix).map(i64::to_string),
            TensorData::Bytes(v) => v.get(ix).cloned(),
        }
        .unwrap_or_default()
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Tensor name as the model knows it.
    pub name: String,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major; `shape.iter().product()` of them.
    pub data: TensorData,
}

impl Tensor {
    /// A tensor after checking that the data fills the shape.
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Self, EngineError> {
        let name = name.into();
        let expected = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if expected != Some(data.len()) {
            return Err(EngineError::InvalidInput {
                message: format!(
                    "tensor {name:?} has shape {shape:?} ({} values) but {} values were given",
                    expected.map_or("too many".to_string(), |n| n.to_string()),
                    data.len()
                ),
            });
        }
        Ok(Self { name, shape, data })
    }

    /// Number of rows (the first dimension), 1 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_non_finite_value_is_found_in_any_block() {
        for at in [0, 1, 255, 256, 257, 1000, 1023] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v = vec![1.0f32; 1024];
                v[at] = bad;
                if at + 5 < v.len() {
                    v[at + 5] = f32::NAN;
                }
                assert_eq!(TensorData::F32(v).first_non_finite(), Some(at));
            }
        }
        assert_eq!(TensorData::F32(vec![0.5; 700]).first_non_finite(), None);
        assert_eq!(
            TensorData::F64(vec![0.5, f64::NAN]).first_non_finite(),
            Some(1)
        );
        assert_eq!(TensorData::I32(vec![1, 2]).first_non_finite(), None);
    }

    #[test]
    fn shape_and_data_must_agree() {
        assert!(Tensor::new("x", vec![2, 3], TensorData::F32(vec![0.0; 6])).is_ok());
        let err = Tensor::new("x", vec![2, 3], TensorData::F32(vec![0.0; 5])).expect_err("short");
        assert!(err.to_string().contains("6 values"), "{err}");
        assert!(Tensor::new("x", vec![usize::MAX, 3], TensorData::F32(vec![])).is_err());
    }

    #[test]
    fn casts_between_numeric_types() {
        let d = TensorData::I64(vec![1, -2])
            .cast(DataType::Fp32)
            .expect("int to float");
        assert_eq!(d, TensorData::F32(vec![1.0, -2.0]));
        assert!(TensorData::F32(vec![1.5]).cast(DataType::Int64).is_err());
        assert!(
            TensorData::I64(vec![i64::MAX])
                .cast(DataType::Int32)
                .is_err()
        );
    }

    #[test]
    fn finds_non_finite_values() {
        assert_eq!(
            TensorData::F32(vec![1.0, f32::NAN]).first_non_finite(),
            Some(1)
        );
        assert_eq!(
            TensorData::F64(vec![f64::INFINITY]).first_non_finite(),
            Some(0)
        );
        assert_eq!(TensorData::I32(vec![1]).first_non_finite(), None);
    }
}
