//! The `ai.onnx.ml` encoders scikit-learn pipelines export, which tract's parser lacks:
//! `OneHotEncoder` (integer or string categories, float or integer input, as onnxruntime),
//! `LabelEncoder` (opset 1 and 2: any map between integers, floats and strings), and `Imputer`
//! on integer features. Each is one pass over its input ([`Encoder`]).

use std::collections::HashMap;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// A category or a key: what one-hot encoding and label encoding look values up by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    /// A float key, by its bits (`-0.0` is read as `0.0`; NaN matches NaN, as onnxruntime).
    Float(u32),
    Text(String),
}

impl Key {
    fn float(x: f32) -> Self {
        if x.is_nan() {
            Key::Float(f32::NAN.to_bits())
        } else if x == 0.0 {
            Key::Float(0f32.to_bits())
        } else {
            Key::Float(x.to_bits())
        }
    }
}

/// The values a label encoder writes.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    Int(Vec<i64>, i64),
    Float(Vec<f32>, f32),
    Text(Vec<String>, String),
}

impl Values {
    fn datum_type(&self) -> DatumType {
        match self {
            Values::Int(..) => DatumType::I64,
            Values::Float(..) => DatumType::F32,
            Values::Text(..) => DatumType::String,
        }
    }
}

/// One of the encoders of this module.
#[derive(Debug, Clone, PartialEq)]
enum Encoder {
    /// `OneHotEncoder`: `[..., n]` → `[..., n, categories]`, 1.0 at the value's category; an
    /// unknown value gives zeros (`zeros = 1`) or an error (`zeros = 0`).
    OneHot {
        categories: HashMap<Key, usize>,
        count: usize,
        text: bool,
        zeros: bool,
    },
    /// `LabelEncoder`: each value mapped through the table, the default when absent.
    Label {
        keys: HashMap<Key, usize>,
        text_keys: bool,
        float_keys: bool,
        values: Values,
    },
    /// `Imputer` on integers: `replaced` becomes the feature's imputed value.
    ImputeInt { imputed: Vec<i64>, replaced: i64 },
}

impl std::hash::Hash for Encoder {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl Eq for Encoder {}

impl Encoder {
    fn name(&self) -> &'static str {
        match self {
            Encoder::OneHot { .. } => "OneHotEncoder",
            Encoder::Label { .. } => "LabelEncoder",
            Encoder::ImputeInt { .. } => "Imputer",
        }
    }

    fn output_type(&self, input: DatumType) -> DatumType {
        match self {
            Encoder::OneHot { .. } => DatumType::F32,
            Encoder::Label { values, .. } => values.datum_type(),
            Encoder::ImputeInt { .. } => input,
        }
    }

    /// The key of element `i` of `input`, read as the table's keys are typed.
    fn key_of(input: &Tensor, i: usize, text: bool, float: bool) -> TractResult<Key> {
        let plain = input.try_as_plain_ram()?;
        Ok(if text {
            Key::Text(plain.as_slice::<String>()?[i].clone())
        } else if float {
            Key::float(plain.as_slice::<f32>()?[i])
        } else {
            Key::Int(plain.as_slice::<i64>()?[i])
        })
    }

    fn eval(&self, input: TValue) -> TractResult<Tensor> {
        match self {
            Encoder::OneHot {
                categories,
                count,
                text,
                zeros,
            } => {
                let shape = input.shape().to_vec();
                let n = input.len();
                // Numbers are looked up as integers, as onnxruntime does (a float is truncated).
                let input = if *text {
                    input.into_tensor()
                } else if input.datum_type().is_float() {
                    let floats = input.cast_to::<f64>()?;
                    let values = floats.try_as_plain_ram()?.as_slice::<f64>()?.to_vec();
                    let ints: Vec<i64> = values
                        .iter()
                        .map(|&x| if x.is_finite() { x as i64 } else { i64::MIN })
                        .collect();
                    Tensor::from_shape(&shape, &ints)?
                } else {
                    input.cast_to::<i64>()?.into_owned()
                };
                let mut out = vec![0f32; n * count];
                for i in 0..n {
                    let key = Self::key_of(&input, i, *text, false)?;
                    match categories.get(&key) {
                        Some(&c) => out[i * count + c] = 1.0,
                        None if *zeros => {}
                        None => bail!(
                            "OneHotEncoder: value {key:?} is not one of the categories it was fitted on (zeros = 0)"
                        ),
                    }
                }
                let mut out_shape = shape;
                out_shape.push(*count);
                Tensor::from_shape(&out_shape, &out)
            }
            Encoder::Label {
                keys,
                text_keys,
                float_keys,
                values,
            } => {
                let shape = input.shape().to_vec();
                let input = if *text_keys {
                    input.into_tensor()
                } else if *float_keys {
                    input.cast_to::<f32>()?.into_owned()
                } else {
                    input.cast_to::<i64>()?.into_owned()
                };
                let positions: Vec<Option<usize>> = (0..input.len())
                    .map(|i| {
                        Self::key_of(&input, i, *text_keys, *float_keys)
                            .map(|k| keys.get(&k).copied())
                    })
                    .collect::<TractResult<_>>()?;
                match values {
                    Values::Int(v, default) => {
                        let out: Vec<i64> = positions
                            .iter()
                            .map(|p| p.map_or(*default, |p| v[p]))
                            .collect();
                        Tensor::from_shape(&shape, &out)
                    }
                    Values::Float(v, default) => {
                        let out: Vec<f32> = positions
                            .iter()
                            .map(|p| p.map_or(*default, |p| v[p]))
                            .collect();
                        Tensor::from_shape(&shape, &out)
                    }
                    Values::Text(v, default) => {
                        let out: Vec<String> = positions
                            .iter()
                            .map(|p| p.map_or_else(|| default.clone(), |p| v[p].clone()))
                            .collect();
                        Ok(tract_ndarray::ArrayD::from_shape_vec(shape, out)?.into_tensor())
                    }
                }
            }
            Encoder::ImputeInt { imputed, replaced } => {
                let mut out = input.cast_to::<i64>()?.into_owned();
                let width = out.shape().last().copied().unwrap_or(1).max(1);
                if imputed.len() > 1 && imputed.len() != width {
                    bail!(
                        "Imputer takes {} features, the input has {width}",
                        imputed.len()
                    );
                }
                {
                    let mut plain = out.try_as_plain_ram_mut()?;
                    for row in plain.as_slice_mut::<i64>()?.chunks_mut(width) {
                        for (j, x) in row.iter_mut().enumerate() {
                            if *x == *replaced {
                                *x = if imputed.len() == 1 {
                                    imputed[0]
                                } else {
                                    imputed[j]
                                };
                            }
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

fn table<T: Clone + Eq + std::hash::Hash>(keys: &[T]) -> HashMap<T, usize> {
    let mut table = HashMap::with_capacity(keys.len());
    for (i, k) in keys.iter().enumerate() {
        // The first occurrence wins, as onnxruntime builds its map.
        table.entry(k.clone()).or_insert(i);
    }
    table
}

pub(crate) fn one_hot_encoder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let ints = node.get_attr_opt_vec::<i64>("cats_int64s")?;
    let strings = node.get_attr_opt_vec::<String>("cats_strings")?;
    let (keys, text): (Vec<Key>, bool) = match (ints, strings) {
        (Some(ints), None) if !ints.is_empty() => (ints.into_iter().map(Key::Int).collect(), false),
        (None, Some(strings)) if !strings.is_empty() => {
            (strings.into_iter().map(Key::Text).collect(), true)
        }
        _ => bail!("OneHotEncoder needs exactly one of cats_int64s and cats_strings"),
    };
    let zeros = node.get_attr_opt::<i64>("zeros")?.unwrap_or(1) != 0;
    Ok((
        expand(Encoder::OneHot {
            count: keys.len(),
            categories: table(&keys),
            text,
            zeros,
        }),
        vec![],
    ))
}

pub(crate) fn label_encoder(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let attr_ints = |name: &str| node.get_attr_opt_vec::<i64>(name);
    let attr_floats = |name: &str| node.get_attr_opt_vec::<f32>(name);
    let attr_strings = |name: &str| node.get_attr_opt_vec::<String>(name);
    let default_int = node.get_attr_opt::<i64>("default_int64")?.unwrap_or(-1);
    let default_float = node.get_attr_opt::<f32>("default_float")?.unwrap_or(-0.0);
    let default_string = node
        .get_attr_opt::<String>("default_string")?
        .unwrap_or_else(|| "_Unused".into());
    let encoder = if let Some(classes) = attr_strings("classes_strings")? {
        // Opset 1: strings to their position, or positions back to strings.
        let positions: Vec<i64> = (0..classes.len() as i64).collect();
        let to_ints = node.get_attr_opt::<String>("default_string")?.is_none();
        if to_ints {
            Encoder::Label {
                keys: table(&classes.into_iter().map(Key::Text).collect::<Vec<_>>()),
                text_keys: true,
                float_keys: false,
                values: Values::Int(positions, default_int),
            }
        } else {
            Encoder::Label {
                keys: table(&positions.into_iter().map(Key::Int).collect::<Vec<_>>()),
                text_keys: false,
                float_keys: false,
                values: Values::Text(classes, default_string),
            }
        }
    } else {
        let (keys, text_keys, float_keys): (Vec<Key>, bool, bool) = match (
            attr_ints("keys_int64s")?,
            attr_floats("keys_floats")?,
            attr_strings("keys_strings")?,
        ) {
            (Some(k), None, None) => (k.into_iter().map(Key::Int).collect(), false, false),
            (None, Some(k), None) => (k.into_iter().map(Key::float).collect(), false, true),
            (None, None, Some(k)) => (k.into_iter().map(Key::Text).collect(), true, false),
            _ => bail!(
                "LabelEncoder needs exactly one of keys_int64s, keys_floats and keys_strings (keys given as a tensor are not supported)"
            ),
        };
        let values = match (
            attr_ints("values_int64s")?,
            attr_floats("values_floats")?,
            attr_strings("values_strings")?,
        ) {
            (Some(v), None, None) => Values::Int(v, default_int),
            (None, Some(v), None) => Values::Float(v, default_float),
            (None, None, Some(v)) => Values::Text(v, default_string),
            _ => bail!(
                "LabelEncoder needs exactly one of values_int64s, values_floats and values_strings (values given as a tensor are not supported)"
            ),
        };
        let count = match &values {
            Values::Int(v, _) => v.len(),
            Values::Float(v, _) => v.len(),
            Values::Text(v, _) => v.len(),
        };
        if count != keys.len() {
            bail!("LabelEncoder has {} keys and {count} values", keys.len());
        }
        Encoder::Label {
            keys: table(&keys),
            text_keys,
            float_keys,
            values,
        }
    };
    Ok((expand(encoder), vec![]))
}

/// `Imputer` with `imputed_value_int64s`; the float form is [`crate::onnx_ml`]'s.
pub(crate) fn int_imputer(node: &NodeProto) -> TractResult<Option<Box<dyn InferenceOp>>> {
    let Some(imputed) = node.get_attr_opt_vec::<i64>("imputed_value_int64s")? else {
        return Ok(None);
    };
    if imputed.is_empty() {
        bail!("Imputer with an empty imputed_value_int64s");
    }
    let replaced = node
        .get_attr_opt::<i64>("replaced_value_int64")?
        .unwrap_or(0);
    Ok(Some(expand(Encoder::ImputeInt { imputed, replaced })))
}

impl Expansion for Encoder {
    fn name(&self) -> StaticName {
        Encoder::name(self).into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        match self {
            Encoder::OneHot { count, .. } => {
                let count = *count;
                s.equals(&outputs[0].datum_type, DatumType::F32)?;
                s.equals(&outputs[0].rank, inputs[0].rank.bex() + 1)?;
                s.given(&inputs[0].shape, move |s, shape| {
                    let mut shape = shape.to_vec();
                    shape.push(count.to_dim());
                    s.equals(&outputs[0].shape, ShapeFactoid::from(shape))
                })?;
            }
            Encoder::Label { values, .. } => {
                s.equals(&outputs[0].datum_type, values.datum_type())?;
                s.equals(&outputs[0].shape, &inputs[0].shape)?;
            }
            Encoder::ImputeInt { .. } => {
                s.equals(&outputs[0].datum_type, DatumType::I64)?;
                s.equals(&outputs[0].shape, &inputs[0].shape)?;
            }
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, EncoderOp(self.clone()), inputs)
    }
}

/// The typed node of an [`Encoder`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EncoderOp(Encoder);

impl Op for EncoderOp {
    fn name(&self) -> StaticName {
        format!("maas.{}", self.0.name()).into()
    }

    op_as_typed_op!();
}

impl EvalOp for EncoderOp {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.0.eval(input)?.into_tvalue()))
    }
}

impl TypedOp for EncoderOp {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let datum_type = self.0.output_type(inputs[0].datum_type);
        let mut shape: TVec<TDim> = inputs[0].shape.iter().cloned().collect();
        if let Encoder::OneHot { count, .. } = &self.0 {
            shape.push(count.to_dim());
        }
        Ok(tvec!(datum_type.fact(&*shape)))
    }

    as_op!();
}
