//! Key validation shared by every backend: a key is a `/`-separated relative path with no empty,
//! `.` or `..` segment, so no backend can be tricked into writing outside its root or prefix.

use crate::StoreError;

/// Longest key S3 accepts, in bytes.
const MAX_KEY_LEN: usize = 1024;

/// Checks that `key` is safe to use on every backend.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let invalid = |why| StoreError::InvalidKey {
        key: key.to_string(),
        why,
    };
    if key.is_empty() {
        return Err(invalid("it is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid("it is longer than 1024 bytes"));
    }
    if key.starts_with('/') {
        return Err(invalid("it starts with '/'"));
    }
    if key.contains('\\') {
        return Err(invalid("it contains a backslash"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid("it contains control characters"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(invalid("it has an empty path segment")),
            "." | ".." => return Err(invalid("it has a '.' or '..' segment")),
            s if s.starts_with(".maas-") => {
                return Err(invalid("segments starting with '.maas-' are reserved"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty, or a key-like path that may end in `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    if prefix.is_empty() {
        return Ok(());
    }
    validate_key(prefix.strip_suffix('/').unwrap_or(prefix)).map_err(|e| match e {
        StoreError::InvalidKey { why, .. } => StoreError::InvalidKey {
            key: prefix.to_string(),
            why,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_keys_pass() {
        for ok in [
            "a",
            "models/x/versions/1/model.onnx",
            "batch/input/m/file name.csv",
        ] {
            assert!(validate_key(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn escaping_keys_fail() {
        for bad in [
            "",
            "/abs",
            "a/../b",
            "..",
            "a//b",
            "a/./b",
            "a\\b",
            "a/\n",
            "x/.maas-tmp/y",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prefixes_may_end_in_a_slash() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("models/").is_ok());
        assert!(validate_prefix("models/x/ver").is_ok());
        assert!(validate_prefix("../").is_err());
    }
}
