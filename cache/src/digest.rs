//! Typed blake3 digests. `FileDigest` names content; `ActionKey` names a task's fingerprint.
//! Keeping them apart stops a file hash from ever being looked up as an action.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Lowercase hex of a digest, by table: blake3's `to_hex` pushes each digit as a checked
/// `char`, a visible cost when 10,000 keys are written.
pub fn hex(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    out
}

fn hex_str(h: &[u8; 64]) -> &str {
    std::str::from_utf8(h).expect("hex digits are ASCII")
}

macro_rules! digest_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn from_hash(h: blake3::Hash) -> Self {
                Self(*h.as_bytes())
            }
            pub fn to_hex(&self) -> String {
                hex_str(&hex(&self.0)).to_string()
            }
            /// The first 12 hex characters, for humans.
            pub fn short(&self) -> String {
                self.to_hex()[..12].to_string()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(hex_str(&hex(&self.0)))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl FromStr for $name {
            type Err = blake3::HexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                blake3::Hash::from_hex(s).map(Self::from_hash)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // On the stack: keys are serialized for every task of every run.
                s.serialize_str(hex_str(&hex(&self.0)))
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // Parsed from the borrowed text: a `String` per digest was a measurable
                // part of loading a 10,000-task index.
                struct Hex;
                impl serde::de::Visitor<'_> for Hex {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a 64-digit hex digest")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$name, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(Hex)
            }
        }
    };
}

digest_type!(
    /// blake3 of a file's (or blob's) content.
    FileDigest
);
digest_type!(
    /// blake3 of a task's fingerprint: the name of its result.
    ActionKey
);

impl FileDigest {
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hash(blake3::hash(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_serde() {
        let d = FileDigest::of(b"hello");
        let s = serde_json::to_string(&d).unwrap();
        assert_eq!(s.len(), 66);
        let back: FileDigest = serde_json::from_str(&s).unwrap();
        assert_eq!(back, d);
        assert_eq!(d.short().len(), 12);
        assert!("zz".parse::<FileDigest>().is_err());
        // The table gives blake3's own hex.
        assert_eq!(d.to_hex(), blake3::hash(b"hello").to_hex().as_str());
        assert_eq!(d.to_string(), d.to_hex());
    }
}
