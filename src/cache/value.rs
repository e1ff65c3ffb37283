//! The envelope every cached value is stored in, so that a value written by one replica
//! is read back identically (same type, same bytes) by another, and a value from another
//! version or of another kind is refused instead of misread (the seed decoded JSON into
//! untyped maps and broke its own JWKS and logout caches that way).
//!
//! Layout: `b"AG"`, format version (1), kind tag (1 byte), encoding (`b'j'` JSON or
//! `b'b'` raw bytes), then the payload. Encrypted session records are raw bytes.

use super::{CacheError, Kind};
use serde::Serialize;
use serde::de::DeserializeOwned;

const MAGIC: &[u8; 2] = b"AG";
/// Bump when the layout or the meaning of a payload changes; older values then read as absent.
pub const FORMAT_VERSION: u8 = 1;
const JSON: u8 = b'j';
const RAW: u8 = b'b';
const HEADER_LEN: usize = 5;

fn header(kind: Kind, encoding: u8) -> Vec<u8> {
    vec![MAGIC[0], MAGIC[1], FORMAT_VERSION, kind.tag(), encoding]
}

/// Encodes `value` as JSON in an envelope of `kind`.
pub fn encode_json<T: Serialize>(kind: Kind, value: &T) -> Result<Vec<u8>, CacheError> {
    let mut out = header(kind, JSON);
    serde_json::to_writer(&mut out, value)
        .map_err(|e| CacheError::Decode(format!("cannot encode {}: {e}", kind.as_str())))?;
    Ok(out)
}

/// Wraps raw bytes (e.g. an encrypted record) in an envelope of `kind`.
pub fn encode_raw(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = header(kind, RAW);
    out.extend_from_slice(payload);
    out
}

fn payload(kind: Kind, encoding: u8, bytes: &[u8]) -> Result<&[u8], CacheError> {
    if bytes.len() < HEADER_LEN || &bytes[..2] != MAGIC {
        return Err(CacheError::Decode(format!("{} value has no authgate envelope", kind.as_str())));
    }
    if bytes[2] != FORMAT_VERSION {
        return Err(CacheError::Decode(format!(
            "{} value has format version {}, expected {FORMAT_VERSION}",
            kind.as_str(),
            bytes[2]
        )));
    }
    if bytes[3] != kind.tag() {
        return Err(CacheError::Decode(format!(
            "value under a {} key holds another kind (tag {})",
            kind.as_str(),
            bytes[3]
        )));
    }
    if bytes[4] != encoding {
        return Err(CacheError::Decode(format!("{} value has an unexpected encoding", kind.as_str())));
    }
    Ok(&bytes[HEADER_LEN..])
}

/// Decodes a JSON envelope of `kind`.
pub fn decode_json<T: DeserializeOwned>(kind: Kind, bytes: &[u8]) -> Result<T, CacheError> {
    serde_json::from_slice(payload(kind, JSON, bytes)?)
        .map_err(|e| CacheError::Decode(format!("{} value: {e}", kind.as_str())))
}

/// The raw payload of an envelope of `kind`, in the envelope's own buffer (no second
/// allocation per read).
pub fn decode_raw(kind: Kind, mut bytes: Vec<u8>) -> Result<Vec<u8>, CacheError> {
    payload(kind, RAW, &bytes)?;
    bytes.drain(..HEADER_LEN);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Keys {
        kid: String,
        n: Vec<u8>,
        exp: u64,
    }

    #[test]
    fn round_trips_types_exactly() {
        let keys = Keys { kid: "k1".into(), n: vec![1, 2, 255], exp: u64::MAX };
        let bytes = encode_json(Kind::Token, &keys).unwrap();
        assert_eq!(decode_json::<Keys>(Kind::Token, &bytes).unwrap(), keys);
        assert_eq!(decode_raw(Kind::Session, encode_raw(Kind::Session, b"\x00\xff")).unwrap(), b"\x00\xff");
    }

    #[test]
    fn refuses_other_kinds_versions_and_garbage() {
        let bytes = encode_json(Kind::Token, &1u8).unwrap();
        assert!(decode_json::<u8>(Kind::Logout, &bytes).unwrap_err().to_string().contains("another kind"));
        let mut old = bytes.clone();
        old[2] = 0;
        assert!(decode_json::<u8>(Kind::Token, &old).unwrap_err().to_string().contains("format version 0"));
        assert!(decode_json::<u8>(Kind::Token, b"{}").is_err());
        assert!(decode_raw(Kind::Token, bytes.clone()).is_err(), "JSON is not raw");
    }
}
