//! Record encoding: one version byte, then bincode 2. A later schema bumps the version
//! and keeps a decoder for the old one, so old databases stay readable.

use bincode::{Decode, Encode};

/// The version byte written in front of every record today.
pub const RECORD_VERSION: u8 = 1;

/// A record that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("record has unknown format version {0}")]
    UnknownVersion(u8),
    #[error("record is empty")]
    Empty,
    #[error("record does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("record does not encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
}

/// Encodes a record behind the current version byte.
pub fn encode<T: Encode>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(128);
    out.push(RECORD_VERSION);
    bincode::encode_into_std_write(value, &mut out, bincode::config::standard())?;
    Ok(out)
}

/// Decodes a record written by [`encode`] (any version this build knows).
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    match version {
        RECORD_VERSION => {
            let (value, _) = bincode::decode_from_slice(body, bincode::config::standard())?;
            Ok(value)
        }
        other => Err(CodecError::UnknownVersion(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::leader::Leader;

    #[test]
    fn a_record_round_trips_behind_its_version_byte() {
        let leader = Leader {
            id: 3,
            name: "A".into(),
            handles: [("x".to_string(), "a".to_string())].into_iter().collect(),
            tracking_topics: vec!["t".into()],
            created_at_ms: 5,
            avatar_url: None,
        };
        let bytes = encode(&leader).unwrap();
        assert_eq!(bytes[0], RECORD_VERSION);
        assert_eq!(decode::<Leader>(&bytes).unwrap(), leader);
    }

    #[test]
    fn unknown_version_is_an_error_not_a_panic() {
        assert!(matches!(
            decode::<Leader>(&[9, 1, 2]),
            Err(CodecError::UnknownVersion(9))
        ));
        assert!(matches!(decode::<Leader>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<Leader>(&[1, 255, 255]),
            Err(CodecError::Decode(_))
        ));
    }
}
