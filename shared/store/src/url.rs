//! Parsing of store locations: `s3://bucket/prefix`, `file:///abs/path`, a plain directory path,
//! or `memory://`; and the store key of an object named by an S3 event notification.

use std::path::PathBuf;

use crate::StoreError;

/// A parsed store location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An S3 bucket, optionally under a key prefix (without trailing slash).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket, `""` for the bucket root.
        prefix: String,
    },
    /// A local directory.
    File(PathBuf),
    /// A process-local, in-memory store.
    Memory,
}

impl StoreUrl {
    /// The store's key prefix inside its bucket: `""` for a bucket root and for stores that are
    /// not S3.
    pub fn bucket_prefix(&self) -> &str {
        match self {
            Self::S3 { prefix, .. } => prefix,
            Self::File(_) | Self::Memory => "",
        }
    }

    /// Parses `s3://bucket[/prefix]`, `file:///path`, `memory://`, or a filesystem path.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let invalid = |why: &str| StoreError::InvalidUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !bucket_ok {
                return Err(invalid(
                    "the bucket name must be 3-63 characters of a-z, 0-9, '-' and '.'",
                ));
            }
            let prefix = prefix.trim_end_matches('/').to_string();
            if !prefix.is_empty() {
                crate::validate_key(&prefix).map_err(|e| invalid(&e.to_string()))?;
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix,
            });
        }
        if url == "memory://" || url == "memory" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(invalid(
                    "file:// URLs need an absolute path (file:///data/maas)",
                ));
            }
            return Ok(StoreUrl::File(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(invalid("unknown scheme"));
        }
        if url.is_empty() {
            return Err(invalid("it is empty"));
        }
        Ok(StoreUrl::File(PathBuf::from(url)))
    }
}

/// Decodes an object key as S3 event notifications spell it: URL-encoded, `+` for a space.
pub fn decode_event_key(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// The store key of `bucket_key` in a store rooted at `bucket_prefix` (see
/// [`StoreUrl::bucket_prefix`]), or `None` when the object lies outside the store.
pub fn store_key_in_bucket<'a>(bucket_key: &'a str, bucket_prefix: &str) -> Option<&'a str> {
    if bucket_prefix.is_empty() {
        return Some(bucket_key);
    }
    bucket_key
        .strip_prefix(bucket_prefix)
        .and_then(|k| k.strip_prefix('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            StoreUrl::parse("s3://my-bucket/team/maas/").ok(),
            Some(StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "team/maas".into()
            })
        );
        assert_eq!(
            StoreUrl::parse("s3://my-bucket").ok(),
            Some(StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            StoreUrl::parse("file:///data/m").ok(),
            Some(StoreUrl::File("/data/m".into()))
        );
        assert_eq!(
            StoreUrl::parse("./maas-data").ok(),
            Some(StoreUrl::File("./maas-data".into()))
        );
        assert_eq!(StoreUrl::parse("memory://").ok(), Some(StoreUrl::Memory));
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        for bad in [
            "s3://",
            "s3://UPPER",
            "s3://b/../x",
            "gs://x",
            "file://rel",
            "",
        ] {
            let err = StoreUrl::parse(bad).expect_err(bad).to_string();
            assert!(err.contains("s3://bucket"), "{bad}: {err}");
        }
    }

    #[test]
    fn event_keys_are_url_decoded_like_s3_encodes_them() {
        assert_eq!(
            decode_event_key("batch/input/seed/Happy+Face.csv"),
            "batch/input/seed/Happy Face.csv"
        );
        assert_eq!(
            decode_event_key("batch/input/seed/caf%C3%A9%2B1.csv"),
            "batch/input/seed/café+1.csv"
        );
        assert_eq!(decode_event_key("plain.csv"), "plain.csv");
    }

    #[test]
    fn bucket_keys_map_to_store_keys_under_the_prefix_only() {
        let store = StoreUrl::parse("s3://models/prod").expect("url");
        let prefix = store.bucket_prefix();
        assert_eq!(prefix, "prod");
        assert_eq!(
            store_key_in_bucket("prod/batch/x.csv", prefix),
            Some("batch/x.csv")
        );
        assert_eq!(store_key_in_bucket("production/batch/x.csv", prefix), None);
        assert_eq!(store_key_in_bucket("other/x.csv", prefix), None);
        assert_eq!(store_key_in_bucket("batch/x.csv", ""), Some("batch/x.csv"));
        assert_eq!(StoreUrl::Memory.bucket_prefix(), "");
    }
}
