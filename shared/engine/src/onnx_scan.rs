//! A zero-copy reader of the few ONNX fields a chain of dense layers is made of.
//!
//! Decoding a whole `ModelProto` with prost copies every initializer (2 MB for the seed model,
//! a third of its cold start) before anything can look at the graph. This reader walks the
//! protobuf wire format over the file's bytes and borrows the initializers' `raw_data`, so a
//! dense chain packs straight from the file. It reads only what [`crate::onnx`]'s dense-chain
//! recognition needs; anything it doesn't understand makes it return `None`, and the model goes
//! the full way through tract, which reports problems properly.

/// One graph value's declared type (`ValueInfoProto`).
#[derive(Debug, Default)]
pub(crate) struct Value<'a> {
    pub name: &'a str,
    pub elem_type: i32,
    /// Declared dimensions, `None` for a symbolic or missing one; empty when no shape is given.
    pub dims: Vec<Option<i64>>,
}

/// An initializer (`TensorProto`): `raw_data` borrowed from the file.
#[derive(Debug, Default)]
pub(crate) struct Initializer<'a> {
    pub name: &'a str,
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub raw_data: &'a [u8],
    pub float_data: Vec<f32>,
    /// Stored outside the file (`data_location = EXTERNAL` or `external_data` entries).
    pub external: bool,
}

/// A node's attribute: its name and scalar values; `other` when it carries anything else.
#[derive(Debug, Default)]
pub(crate) struct Attribute<'a> {
    pub name: &'a str,
    pub f: Option<f32>,
    pub i: Option<i64>,
    pub other: bool,
}

/// A node (`NodeProto`).
#[derive(Debug, Default)]
pub(crate) struct Node<'a> {
    pub op_type: &'a str,
    pub domain: &'a str,
    pub input: Vec<&'a str>,
    pub output: Vec<&'a str>,
    pub attribute: Vec<Attribute<'a>>,
}

/// The main graph (`GraphProto`).
#[derive(Debug, Default)]
pub(crate) struct Graph<'a> {
    pub node: Vec<Node<'a>>,
    pub initializer: Vec<Initializer<'a>>,
    pub input: Vec<Value<'a>>,
    pub output: Vec<Value<'a>>,
}

/// One field of a message: its number and its payload.
enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

/// Iterates the fields of one encoded message.
struct Fields<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

impl<'a> Iterator for Fields<'a> {
    /// `None` inside: the bytes are not a valid message.
    type Item = Option<(u32, Field<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let field = (|| {
            let key = varint(&mut self.buf)?;
            let number = u32::try_from(key >> 3).ok()?;
            let payload = match key & 7 {
                0 => Field::Varint(varint(&mut self.buf)?),
                1 => {
                    self.buf = self.buf.get(8..)?;
                    Field::Fixed64
                }
                2 => {
                    let len = usize::try_from(varint(&mut self.buf)?).ok()?;
                    let bytes = self.buf.get(..len)?;
                    self.buf = &self.buf[len..];
                    Field::Bytes(bytes)
                }
                5 => {
                    let bytes: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
                    self.buf = &self.buf[4..];
                    Field::Fixed32(u32::from_le_bytes(bytes))
                }
                _ => return None,
            };
            Some((number, payload))
        })();
        if field.is_none() {
            self.buf = &[];
        }
        Some(field)
    }
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// A string field: UTF-8, as protobuf requires (prost refuses the message otherwise).
fn checked_text(field: Field<'_>) -> Option<&str> {
    match field {
        Field::Bytes(b) => text(b),
        _ => None,
    }
}

/// A field this reader skips must still have the wire type its declaration gives, as protobuf's
/// decoders check: `Some(())` if it does.
fn skip(field: &Field<'_>, want: Wire) -> Option<()> {
    let ok = match (want, field) {
        (Wire::Varint, Field::Varint(_)) => true,
        (Wire::Text, Field::Bytes(b)) => text(b).is_some(),
        (Wire::Bytes, Field::Bytes(_)) => true,
        // Repeated numbers, packed or not.
        (Wire::PackedVarint, Field::Varint(_) | Field::Bytes(_)) => true,
        (Wire::PackedFixed32, Field::Fixed32(_)) => true,
        (Wire::PackedFixed32, Field::Bytes(b)) => b.len() % 4 == 0,
        _ => false,
    };
    ok.then_some(())
}

/// The wire shapes of declared fields this reader doesn't keep.
#[derive(Clone, Copy)]
enum Wire {
    Varint,
    Text,
    Bytes,
    PackedVarint,
    PackedFixed32,
}

/// `StringStringEntryProto` (metadata entries): two strings.
fn entry(buf: &[u8]) -> Option<()> {
    for field in fields(buf) {
        match field? {
            (0, _) => return None,
            (1 | 2, f) => skip(&f, Wire::Text)?,
            _ => {}
        }
    }
    Some(())
}

/// Reads the main graph of an ONNX file; `None` if the bytes don't parse as one.
///
/// Every field of the messages it walks is checked as protobuf would check it (wire type,
/// UTF-8 strings), and a graph holding parts it doesn't walk (sparse initializers, sub-graphs
/// and tensors in attributes, external data) is refused: what it returns is what a protobuf
/// decoder would read from the same graph, or nothing.
pub(crate) fn read_graph(model: &[u8]) -> Option<Graph<'_>> {
    let mut graph = None;
    for field in fields(model) {
        if let (7, Field::Bytes(bytes)) = field? {
            // Protobuf merges repeated occurrences of a message field; this reader doesn't, so
            // it leaves such a file to tract rather than read only one part of it.
            if graph.replace(bytes).is_some() {
                return None;
            }
        }
    }
    let mut out = Graph::default();
    for field in fields(graph?) {
        match field? {
            (1, Field::Bytes(b)) => out.node.push(node(b)?),
            (5, Field::Bytes(b)) => out.initializer.push(initializer(b)?),
            (11, Field::Bytes(b)) => out.input.push(value(b)?),
            (12, Field::Bytes(b)) => out.output.push(value(b)?),
            // value_info: checked, not kept.
            (13, Field::Bytes(b)) => {
                value(b)?;
            }
            (16, Field::Bytes(b)) => entry(b)?,
            (2 | 10, f) => skip(&f, Wire::Text)?,
            // Anything else declared (quantization annotations, sparse initializers) or in the
            // wrong shape: not read here.
            (0 | 1 | 5 | 11 | 12 | 13 | 14 | 15 | 16, _) => return None,
            _ => {}
        }
    }
    Some(out)
}

fn node(buf: &[u8]) -> Option<Node<'_>> {
    let mut out = Node::default();
    for field in fields(buf) {
        match field? {
            (1, f) => out.input.push(checked_text(f)?),
            (2, f) => out.output.push(checked_text(f)?),
            (4, f) => out.op_type = checked_text(f)?,
            (5, Field::Bytes(b)) => out.attribute.push(attribute(b)?),
            (7, f) => out.domain = checked_text(f)?,
            (3 | 6 | 8, f) => skip(&f, Wire::Text)?,
            (9, Field::Bytes(b)) => entry(b)?,
            (0 | 5 | 9 | 10, _) => return None,
            _ => {}
        }
    }
    Some(out)
}

fn attribute(buf: &[u8]) -> Option<Attribute<'_>> {
    let mut out = Attribute::default();
    for field in fields(buf) {
        match field? {
            (1, f) => out.name = checked_text(f)?,
            (2, Field::Fixed32(bits)) => out.f = Some(f32::from_bits(bits)),
            (3, Field::Varint(v)) => out.i = Some(v as i64),
            // type, doc string, reference name: not values.
            (20, f) => skip(&f, Wire::Varint)?,
            (13 | 21, f) => skip(&f, Wire::Text)?,
            // Other values (a string, lists): kept as "something else", checked.
            (4, f) => {
                skip(&f, Wire::Bytes)?;
                out.other = true;
            }
            (7, f) => {
                skip(&f, Wire::PackedFixed32)?;
                out.other = true;
            }
            (8, f) => {
                skip(&f, Wire::PackedVarint)?;
                out.other = true;
            }
            (9, f) => {
                skip(&f, Wire::Bytes)?;
                out.other = true;
            }
            // Tensors, graphs and types as values, or a field in the wrong shape: not read here.
            _ => return None,
        }
    }
    Some(out)
}

fn initializer(buf: &[u8]) -> Option<Initializer<'_>> {
    let mut out = Initializer::default();
    for field in fields(buf) {
        match field? {
            (1, Field::Varint(v)) => out.dims.push(v as i64),
            (1, Field::Bytes(mut packed)) => {
                while !packed.is_empty() {
                    out.dims.push(varint(&mut packed)? as i64);
                }
            }
            (2, Field::Varint(v)) => out.data_type = i32::try_from(v).ok()?,
            (4, Field::Fixed32(bits)) => out.float_data.push(f32::from_bits(bits)),
            (4, Field::Bytes(packed)) => {
                if packed.len() % 4 != 0 {
                    return None;
                }
                out.float_data.extend(
                    packed
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            (8, f) => out.name = checked_text(f)?,
            (9, Field::Bytes(b)) => out.raw_data = b,
            (12, f) => skip(&f, Wire::Text)?,
            (14, Field::Varint(location)) => out.external |= location == 1,
            (16, Field::Bytes(b)) => entry(b)?,
            // segment, other element types' data, external data entries, or a field in the
            // wrong shape: not a float tensor this reader can use.
            (0..=16, _) => return None,
            _ => {}
        }
    }
    Some(out)
}

fn value(buf: &[u8]) -> Option<Value<'_>> {
    let mut out = Value::default();
    for field in fields(buf) {
        match field? {
            (1, f) => out.name = checked_text(f)?,
            (2, Field::Bytes(type_proto)) => {
                for field in fields(type_proto) {
                    match field? {
                        (1, Field::Bytes(tensor)) => tensor_type(tensor, &mut out)?,
                        (6, f) => skip(&f, Wire::Text)?,
                        // Sequences, maps, optionals, sparse tensors: not a dense chain's.
                        (0..=9, _) => return None,
                        _ => {}
                    }
                }
            }
            (3, f) => skip(&f, Wire::Text)?,
            (4, Field::Bytes(b)) => entry(b)?,
            (0..=4, _) => return None,
            _ => {}
        }
    }
    Some(out)
}

fn tensor_type<'a>(buf: &'a [u8], out: &mut Value<'a>) -> Option<()> {
    for field in fields(buf) {
        match field? {
            (1, Field::Varint(t)) => out.elem_type = i32::try_from(t).ok()?,
            (2, Field::Bytes(shape)) => {
                for field in fields(shape) {
                    match field? {
                        (1, Field::Bytes(dim)) => out.dims.push(dimension(dim)?),
                        (0 | 1, _) => return None,
                        _ => {}
                    }
                }
            }
            (0..=2, _) => return None,
            _ => {}
        }
    }
    Some(())
}

/// One `Dimension`: its value, `None` for a symbolic (or absent) one. `dim_value` and
/// `dim_param` are a oneof: the last one in the message wins.
fn dimension(buf: &[u8]) -> Option<Option<i64>> {
    let mut value = None;
    for field in fields(buf) {
        match field? {
            (1, Field::Varint(v)) => value = Some(v as i64),
            (2, f) => {
                skip(&f, Wire::Text)?;
                value = None;
            }
            (3, f) => skip(&f, Wire::Text)?,
            (0..=3, _) => return None,
            _ => {}
        }
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/seed-mlp/model.onnx");
        std::fs::read(path).expect("seed fixture")
    }

    #[test]
    fn the_seed_graph_is_read_with_its_weights_borrowed() {
        let bytes = seed();
        let graph = read_graph(&bytes).expect("reads");
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type).collect();
        assert_eq!(ops, ["Gemm", "Relu", "Gemm", "Relu", "Gemm"]);
        let first = &graph.initializer[0];
        assert_eq!(
            (first.name, first.dims.as_slice()),
            ("layer1.weight", &[500, 1000][..])
        );
        assert_eq!(first.raw_data.len(), 500 * 1000 * 4);
        let within = bytes.as_ptr_range();
        assert!(
            within.contains(&first.raw_data.as_ptr()),
            "borrowed, not copied"
        );
        assert_eq!(graph.input[0].dims, [None, Some(1000)]);
        let trans_b = graph.node[0].attribute.iter().find(|a| a.name == "transB");
        assert_eq!(trans_b.and_then(|a| a.i), Some(1));
    }

    #[test]
    fn cut_or_damaged_files_are_not_read_and_do_not_panic() {
        let bytes = seed();
        for cut in [1, 7, 50, 300, bytes.len() / 3, bytes.len() - 1] {
            let graph = read_graph(&bytes[..cut]);
            assert!(
                graph.is_none_or(|g| g.node.len() < 5 || g.initializer.len() < 6),
                "cut at {cut}"
            );
        }
        assert!(read_graph(&[0xff; 64]).is_none());
        assert!(read_graph(b"").is_none());
    }

    /// The fields the scanner reads, as prost (the reference decoder) reads them from the same
    /// graph bytes: `None` when prost refuses the graph message.
    fn prost_view(bytes: &[u8]) -> Option<String> {
        use tract_onnx::pb::{GraphProto, tensor_shape_proto::dimension, type_proto};
        let graph_bytes = fields(bytes)
            .filter_map(|f| match f {
                Some((7, Field::Bytes(b))) => Some(b),
                _ => None,
            })
            .last()?;
        let graph = <GraphProto as prost::Message>::decode(graph_bytes).ok()?;
        let values = |vs: &[tract_onnx::pb::ValueInfoProto]| -> Vec<String> {
            vs.iter()
                .map(|v| {
                    let (elem, dims) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                        Some(type_proto::Value::TensorType(t)) => (
                            t.elem_type,
                            t.shape
                                .as_ref()
                                .map(|s| {
                                    s.dim
                                        .iter()
                                        .map(|d| match d.value {
                                            Some(dimension::Value::DimValue(v)) => Some(v),
                                            _ => None,
                                        })
                                        .collect()
                                })
                                .unwrap_or_default(),
                        ),
                        _ => (0, Vec::new()),
                    };
                    format!("{}:{elem}:{dims:?}", v.name)
                })
                .collect()
        };
        Some(format!(
            "nodes {:?}\ninits {:?}\ninputs {:?}\noutputs {:?}",
            graph
                .node
                .iter()
                .map(|n| format!("{}/{} {:?}->{:?}", n.domain, n.op_type, n.input, n.output))
                .collect::<Vec<_>>(),
            graph
                .initializer
                .iter()
                .map(|t| format!(
                    "{} {:?} t{} raw{:?} f{:?}",
                    t.name, t.dims, t.data_type, t.raw_data, t.float_data
                ))
                .collect::<Vec<_>>(),
            values(&graph.input),
            values(&graph.output),
        ))
    }

    /// The same fields as the scanner read them.
    fn scan_view(graph: &Graph<'_>) -> String {
        let values = |vs: &[Value<'_>]| -> Vec<String> {
            vs.iter()
                .map(|v| format!("{}:{}:{:?}", v.name, v.elem_type, v.dims))
                .collect()
        };
        format!(
            "nodes {:?}\ninits {:?}\ninputs {:?}\noutputs {:?}",
            graph
                .node
                .iter()
                .map(|n| format!("{}/{} {:?}->{:?}", n.domain, n.op_type, n.input, n.output))
                .collect::<Vec<_>>(),
            graph
                .initializer
                .iter()
                .map(|t| format!(
                    "{} {:?} t{} raw{:?} f{:?}",
                    t.name, t.dims, t.data_type, t.raw_data, t.float_data
                ))
                .collect::<Vec<_>>(),
            values(&graph.input),
            values(&graph.output),
        )
    }

    /// A small real dense chain (Gemm → Relu → MatMul + Add), as tract and the dense path load.
    fn small_chain() -> Vec<u8> {
        crate::dense::tests::chain_model_bytes()
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Set(usize, u8),
        Flip(usize, u8),
        Cut(usize),
        Remove(usize, usize),
        Insert(usize, Vec<u8>),
        Duplicate(usize, usize),
    }

    fn mutate(bytes: &mut Vec<u8>, m: &Mutation) {
        let n = bytes.len().max(1);
        match m {
            Mutation::Set(at, v) => {
                let at = at % n;
                if at < bytes.len() {
                    bytes[at] = *v;
                }
            }
            Mutation::Flip(at, bit) => {
                let at = at % n;
                if at < bytes.len() {
                    bytes[at] ^= 1 << (bit % 8);
                }
            }
            Mutation::Cut(at) => bytes.truncate(at % n),
            Mutation::Remove(at, len) => {
                let at = at % n;
                let end = (at + len % 16).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Insert(at, extra) => {
                let at = (at % n).min(bytes.len());
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::Duplicate(at, len) => {
                let at = at % n;
                let end = (at + len % 64).min(bytes.len());
                let piece = bytes[at..end].to_vec();
                bytes.splice(end..end, piece);
            }
        }
    }

    fn mutation() -> impl proptest::strategy::Strategy<Value = Mutation> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(a, v)| Mutation::Set(a, v)),
            (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
            any::<usize>().prop_map(Mutation::Cut),
            (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Mutation::Remove(a, l)),
            (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..6))
                .prop_map(|(a, v)| Mutation::Insert(a, v)),
            (any::<usize>(), any::<usize>()).prop_map(|(a, l)| Mutation::Duplicate(a, l)),
        ]
    }

    proptest::proptest! {
        // 2,000 mutated models a run; PROPTEST_CASES sets another count for a long run.
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000),
            ..Default::default()
        })]

        /// Mutated real models: the scanner never panics; whenever it reads a graph that
        /// protobuf's reference decoder (prost) also reads, it reads the same nodes, weights and
        /// shapes (no accept-then-misread); a graph it reads but prost refuses never becomes a
        /// dense chain. (Fields outside the graph it doesn't read; `maas push` has tract parse
        /// every ONNX file whole before it is accepted.)
        #[test]
        fn mutated_models_are_refused_or_read_as_protobuf_reads_them(
            mutations in proptest::collection::vec(mutation(), 1..4),
        ) {
            let mut bytes = small_chain();
            for m in &mutations {
                mutate(&mut bytes, m);
            }
            if let Some(graph) = read_graph(&bytes) {
                match prost_view(&bytes) {
                    Some(reference) => proptest::prop_assert_eq!(scan_view(&graph), reference),
                    None => proptest::prop_assert!(
                        crate::onnx::dense_chain(&graph).is_none(),
                        "a file protobuf can't decode was taken as a dense chain"
                    ),
                }
            }
        }
    }

    #[test]
    fn the_small_chain_reads_as_protobuf_reads_it() {
        let bytes = small_chain();
        let graph = read_graph(&bytes).expect("reads");
        assert_eq!(Some(scan_view(&graph)), prost_view(&bytes));
        // A dense chain wherever there are kernels to run it (none on aarch64).
        assert_eq!(
            crate::onnx::dense_chain(&graph).is_some(),
            maas_dense::Kernel::detect().is_some()
        );
    }
}
