//! A reader of Universal Binary JSON (the subset of draft 12 XGBoost writes, which includes the
//! optimized containers: typed, counted arrays of numbers) into [`serde_json::Value`], so one
//! set of types reads both of XGBoost's formats. No crate on crates.io reads optimized UBJSON
//! containers and is maintained; the format is small.

use serde_json::{Map, Number, Value};

use crate::TreesError;

/// Containers nested deeper than this are refused (a hostile file can't exhaust the stack).
const MAX_DEPTH: usize = 128;

/// Parses one UBJSON value that fills `bytes`.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, TreesError> {
    let mut reader = Reader { bytes, at: 0 };
    let marker = reader.marker()?;
    let value = reader.value(marker, 0)?;
    if reader.at != bytes.len() {
        return Err(TreesError::invalid(format!(
            "UBJSON: {} bytes after the value",
            bytes.len() - reader.at
        )));
    }
    Ok(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], TreesError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                TreesError::invalid("UBJSON: the file ends inside a value (truncated?)")
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, TreesError> {
        Ok(self.take(1)?[0])
    }

    /// The next type marker, skipping no-ops.
    fn marker(&mut self) -> Result<u8, TreesError> {
        loop {
            let m = self.byte()?;
            if m != b'N' {
                return Ok(m);
            }
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], TreesError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn integer(&mut self, marker: u8) -> Result<i64, TreesError> {
        Ok(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array()?)),
            b'U' => i64::from(self.byte()?),
            b'I' => i64::from(i16::from_be_bytes(self.array()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array()?)),
            b'L' => i64::from_be_bytes(self.array()?),
            other => {
                return Err(TreesError::invalid(format!(
                    "UBJSON: expected an integer, found marker {:?}",
                    other as char
                )));
            }
        })
    }

    fn length(&mut self) -> Result<usize, TreesError> {
        let marker = self.marker()?;
        let n = self.integer(marker)?;
        let n = usize::try_from(n)
            .map_err(|_| TreesError::invalid(format!("UBJSON: negative length {n}")))?;
        // Every element takes at least one byte: a count beyond the file is a lie.
        if n > self.bytes.len() - self.at {
            return Err(TreesError::invalid(format!(
                "UBJSON: a count of {n} in a file of {} bytes",
                self.bytes.len()
            )));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, TreesError> {
        let n = self.length()?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| TreesError::invalid("UBJSON: a string is not UTF-8"))
    }

    fn float(value: f64) -> Value {
        Number::from_f64(value).map_or(Value::Null, Value::Number)
    }

    fn value(&mut self, marker: u8, depth: usize) -> Result<Value, TreesError> {
        if depth > MAX_DEPTH {
            return Err(TreesError::invalid("UBJSON: containers nested too deep"));
        }
        Ok(match marker {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::from(self.integer(marker)?),
            b'd' => Self::float(f64::from(f32::from_be_bytes(self.array()?))),
            b'D' => Self::float(f64::from_be_bytes(self.array()?)),
            b'H' => {
                let text = self.string()?;
                serde_json::from_str(&text)
                    .map_err(|_| TreesError::invalid(format!("UBJSON: {text:?} is not a number")))?
            }
            b'C' => Value::String((self.byte()? as char).to_string()),
            b'S' => Value::String(self.string()?),
            b'[' => {
                let (kind, count) = self.container_header()?;
                let mut items = Vec::new();
                match count {
                    Some(n) => {
                        items.reserve(n);
                        for _ in 0..n {
                            let m = match kind {
                                Some(k) => k,
                                None => self.marker()?,
                            };
                            items.push(self.value(m, depth + 1)?);
                        }
                    }
                    None => loop {
                        let m = self.marker()?;
                        if m == b']' {
                            break;
                        }
                        items.push(self.value(m, depth + 1)?);
                    },
                }
                Value::Array(items)
            }
            b'{' => {
                let (kind, count) = self.container_header()?;
                let mut map = Map::new();
                let mut entry = |reader: &mut Self| -> Result<(), TreesError> {
                    let key = reader.string()?;
                    let m = match kind {
                        Some(k) => k,
                        None => reader.marker()?,
                    };
                    let value = reader.value(m, depth + 1)?;
                    map.insert(key, value);
                    Ok(())
                };
                match count {
                    Some(n) => {
                        for _ in 0..n {
                            entry(self)?;
                        }
                    }
                    None => loop {
                        if self.bytes.get(self.at) == Some(&b'}') {
                            self.at += 1;
                            break;
                        }
                        entry(self)?;
                    },
                }
                Value::Object(map)
            }
            other => {
                return Err(TreesError::invalid(format!(
                    "UBJSON: unknown type marker {:?} at byte {}",
                    other as char,
                    self.at - 1
                )));
            }
        })
    }

    /// An optimized container's `$type` and `#count`, when given.
    fn container_header(&mut self) -> Result<(Option<u8>, Option<usize>), TreesError> {
        let mut kind = None;
        if self.bytes.get(self.at) == Some(&b'$') {
            self.at += 1;
            kind = Some(self.byte()?);
            if self.bytes.get(self.at) != Some(&b'#') {
                return Err(TreesError::invalid(
                    "UBJSON: a typed container without a count",
                ));
            }
        }
        let count = if self.bytes.get(self.at) == Some(&b'#') {
            self.at += 1;
            Some(self.length()?)
        } else {
            None
        };
        Ok((kind, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_optimized_containers() {
        // {"a": [1, 2.5f32], "b": [$d#U 2 ...], "s": "hi"}
        let mut bytes = b"{U\x01a[U\x01d".to_vec();
        bytes.extend(2.5f32.to_be_bytes());
        bytes.extend(b"]U\x01b[$d#U\x02");
        bytes.extend(1.5f32.to_be_bytes());
        bytes.extend((-2.0f32).to_be_bytes());
        bytes.extend(b"U\x01sSU\x02hi}");
        let value = parse(&bytes).expect("parses");
        assert_eq!(
            value,
            serde_json::json!({"a": [1, 2.5], "b": [1.5, -2.0], "s": "hi"})
        );
    }

    #[test]
    fn truncated_lying_and_deep_files_are_errors() {
        assert!(parse(b"[$d#U\x05").is_err());
        assert!(parse(b"[#L\x7f\xff\xff\xff\xff\xff\xff\xffU\x01]").is_err());
        assert!(parse(b"SU\x05ab").is_err());
        assert!(parse(&vec![b'['; 1000]).is_err());
        assert!(parse(b"X").is_err());
    }
}
