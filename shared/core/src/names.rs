//! Validated identifiers. A `ModelName` or `AliasName` can only exist if it is safe to put in a
//! storage key, so code that builds keys never has to re-check for `..`, `/` or empty segments.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CoreError;

const MAX_NAME_LEN: usize = 64;

/// Checks the `[a-z0-9][a-z0-9._-]{0,63}` rule and says what is wrong when it fails.
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("it is empty");
    };
    if name.len() > MAX_NAME_LEN {
        return Err("it is longer than 64 characters");
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err("it must start with a lowercase letter or a digit");
    }
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            return Err("it contains uppercase letters");
        }
        if c == '/' || c == '\\' {
            return Err("it contains a path separator");
        }
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
            return Err("it contains a character outside a-z, 0-9, '.', '_', '-'");
        }
    }
    if name.contains("..") {
        return Err("it contains '..'");
    }
    Ok(())
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $ty:ident, $err:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $ty(String);

        impl $ty {
            /// Validates `name` and wraps it.
            pub fn new(name: impl Into<String>) -> Result<Self, CoreError> {
                let name = name.into();
                let check: fn(&str) -> Result<(), &'static str> = $check;
                match check(&name) {
                    Ok(()) => Ok(Self(name)),
                    Err(why) => Err(CoreError::$err { name, why }),
                }
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $ty {
            type Err = CoreError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::new(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// A model name: `[a-z0-9][a-z0-9._-]{0,63}`, no `..`.
    ModelName,
    InvalidModelName,
    check_name
);

validated_name!(
    /// An alias name (`production`, `staging`, ...). Same rules as model names; `latest` is
    /// reserved because it always means the highest complete version.
    AliasName,
    InvalidAliasName,
    |name| {
        check_name(name)?;
        if name == AliasName::LATEST {
            return Err("'latest' is implicit (the highest complete version) and cannot be moved");
        }
        Ok(())
    }
);

impl AliasName {
    /// The implicit alias for the highest complete version.
    pub const LATEST: &'static str = "latest";
    /// The alias a request without a version uses when it exists.
    pub const PRODUCTION: &'static str = "production";
}

/// A model version: a positive integer, assigned in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// The first version of every model.
    pub const FIRST: Version = Version(1);

    /// Wraps a positive integer; zero is refused.
    pub fn new(n: u64) -> Result<Self, CoreError> {
        if n == 0 {
            return Err(CoreError::InvalidVersion {
                given: n.to_string(),
            });
        }
        Ok(Self(n))
    }

    /// The integer value.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The version after this one.
    pub fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Version {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || CoreError::InvalidVersion {
            given: s.to_string(),
        };
        // Only plain decimal digits: "+3", " 3" or "03" are not version numbers a key may hold.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
            return Err(invalid());
        }
        let n: u64 = s.parse().map_err(|_| invalid())?;
        Version::new(n).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_model_names() {
        for ok in ["seed-mlp", "a", "0", "fraud.v2", "x_y", &"a".repeat(64)] {
            assert!(ModelName::new(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_hostile_or_malformed_model_names_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("../x", "start"),
            ("a/../b", "path separator"),
            ("a..b", "'..'"),
            ("Seed", "start"),
            ("seedMlp", "uppercase"),
            ("-x", "start"),
            ("a b", "outside"),
            ("é", "start"),
        ];
        for (bad, why) in cases {
            let err = ModelName::new(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = "a".repeat(65);
        assert!(
            ModelName::new(long)
                .expect_err("too long")
                .to_string()
                .contains("longer than 64")
        );
    }

    #[test]
    fn latest_is_not_a_movable_alias() {
        assert!(AliasName::new("production").is_ok());
        let err = AliasName::new("latest").expect_err("reserved").to_string();
        assert!(err.contains("implicit"), "{err}");
    }

    #[test]
    fn versions_are_positive_plain_integers() {
        assert_eq!("7".parse::<Version>().map(Version::get), Ok(7));
        for bad in ["0", "-1", "+1", "01", "1.0", "", "x"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_deserialize_through_validation() {
        let bad: Result<ModelName, _> = serde_json::from_str("\"../etc\"");
        assert!(bad.is_err());
        let good: ModelName = serde_json::from_str("\"seed\"").expect("valid");
        assert_eq!(good.as_str(), "seed");
    }
}
