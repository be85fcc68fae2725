//! Tensor metadata in Open Inference Protocol terms: a name, a datatype and a shape in which `-1`
//! marks a dimension of any size (the batch dimension).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::CoreError;

/// The Open Inference Protocol's tensor datatypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(missing_docs)] // the variants are the protocol's own names
pub enum DataType {
    #[serde(rename = "BOOL")]
    Bool,
    #[serde(rename = "UINT8")]
    Uint8,
    #[serde(rename = "UINT16")]
    Uint16,
    #[serde(rename = "UINT32")]
    Uint32,
    #[serde(rename = "UINT64")]
    Uint64,
    #[serde(rename = "INT8")]
    Int8,
    #[serde(rename = "INT16")]
    Int16,
    #[serde(rename = "INT32")]
    Int32,
    #[serde(rename = "INT64")]
    Int64,
    #[serde(rename = "FP16")]
    Fp16,
    #[serde(rename = "FP32")]
    Fp32,
    #[serde(rename = "FP64")]
    Fp64,
    #[serde(rename = "BF16")]
    Bf16,
    #[serde(rename = "BYTES")]
    Bytes,
}

impl DataType {
    /// The protocol's spelling, e.g. `FP32`.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bf16 => "BF16",
            DataType::Bytes => "BYTES",
        }
    }

    /// Size of one element in the binary tensor data extension, `None` for `BYTES`.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 | DataType::Bf16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataType {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            CoreError::UnknownDataType {
                given: s.to_string(),
            }
        })
    }
}

/// One input or output of a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name as the model knows it (`input`, `output`, ...).
    pub name: String,
    /// Element type.
    pub datatype: DataType,
    /// Dimensions; `-1` for a dimension of any size (the batch).
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Number of values per batch row: the product of the fixed dimensions after the first
    /// (`usize::MAX` if that overflows, which no real row can match).
    pub fn row_width(&self) -> usize {
        self.shape
            .iter()
            .skip(1)
            .map(|&d| usize::try_from(d).unwrap_or(1))
            .try_fold(1usize, usize::checked_mul)
            .unwrap_or(usize::MAX)
    }

    /// Renders the shape as the protocol shows it, e.g. `[-1, 1000]`.
    pub fn shape_string(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(i64::to_string).collect();
        format!("[{}]", dims.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatypes_round_trip_through_their_protocol_names() {
        for dt in [
            DataType::Fp32,
            DataType::Int64,
            DataType::Bytes,
            DataType::Bf16,
        ] {
            assert_eq!(dt.as_str().parse::<DataType>(), Ok(dt));
        }
        assert!("FLOAT".parse::<DataType>().is_err());
    }

    #[test]
    fn row_width_ignores_the_batch_dimension() {
        let spec = TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 4, 5],
        };
        assert_eq!(spec.row_width(), 20);
        assert_eq!(spec.shape_string(), "[-1, 4, 5]");
    }
}
