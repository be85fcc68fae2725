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

/// Reads the main graph of an ONNX file; `None` if the bytes don't parse as one.
pub(crate) fn read_graph(model: &[u8]) -> Option<Graph<'_>> {
    let mut graph = None;
    for field in fields(model) {
        if let (7, Field::Bytes(bytes)) = field? {
            graph = Some(bytes);
        }
    }
    let mut out = Graph::default();
    for field in fields(graph?) {
        match field? {
            (1, Field::Bytes(b)) => out.node.push(node(b)?),
            (5, Field::Bytes(b)) => out.initializer.push(initializer(b)?),
            (11, Field::Bytes(b)) => out.input.push(value(b)?),
            (12, Field::Bytes(b)) => out.output.push(value(b)?),
            _ => {}
        }
    }
    Some(out)
}

fn node(buf: &[u8]) -> Option<Node<'_>> {
    let mut out = Node::default();
    for field in fields(buf) {
        match field? {
            (1, Field::Bytes(b)) => out.input.push(text(b)?),
            (2, Field::Bytes(b)) => out.output.push(text(b)?),
            (4, Field::Bytes(b)) => out.op_type = text(b)?,
            (5, Field::Bytes(b)) => out.attribute.push(attribute(b)?),
            (7, Field::Bytes(b)) => out.domain = text(b)?,
            _ => {}
        }
    }
    Some(out)
}

fn attribute(buf: &[u8]) -> Option<Attribute<'_>> {
    let mut out = Attribute::default();
    for field in fields(buf) {
        match field? {
            (1, Field::Bytes(b)) => out.name = text(b)?,
            (2, Field::Fixed32(bits)) => out.f = Some(f32::from_bits(bits)),
            (3, Field::Varint(v)) => out.i = Some(v as i64),
            // type, doc string, reference name: not values.
            (20 | 13 | 21, _) => {}
            _ => out.other = true,
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
            (8, Field::Bytes(b)) => out.name = text(b)?,
            (9, Field::Bytes(b)) => out.raw_data = b,
            (13, _) => out.external = true,
            (14, Field::Varint(location)) => out.external |= location == 1,
            // segment, other element types' data: not a float tensor this reader can use.
            (3 | 5 | 6 | 7 | 10 | 11, _) => return None,
            _ => {}
        }
    }
    Some(out)
}

fn value(buf: &[u8]) -> Option<Value<'_>> {
    let mut out = Value::default();
    for field in fields(buf) {
        match field? {
            (1, Field::Bytes(b)) => out.name = text(b)?,
            (2, Field::Bytes(type_proto)) => {
                for field in fields(type_proto) {
                    if let (1, Field::Bytes(tensor)) = field? {
                        tensor_type(tensor, &mut out)?;
                    }
                }
            }
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
                    if let (1, Field::Bytes(dim)) = field? {
                        let mut value = None;
                        for field in fields(dim) {
                            if let (1, Field::Varint(v)) = field? {
                                value = Some(v as i64);
                            }
                        }
                        out.dims.push(value);
                    }
                }
            }
            _ => {}
        }
    }
    Some(())
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
}
