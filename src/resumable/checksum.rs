//! Per-request checksums (tus `Upload-Checksum`, as a header or a trailer): the bytes of one
//! request are appended only if they match.

use crate::{error::Problem, hash::HashAlgorithm};
use base64::Engine as _;
use http::StatusCode;

fn bad(code: &'static str, detail: impl Into<std::borrow::Cow<'static, str>>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, code, detail)
}

/// The tus checksum algorithms: the spec requires `sha1`; `md5`, `sha256` and `crc32` too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChecksumAlgorithm {
    Hash(HashAlgorithm),
    Crc32,
}

pub(crate) const CHECKSUM_ALGORITHMS: &str = "sha1,sha256,md5,crc32";

/// A running per-request checksum.
pub(crate) enum Checksummer {
    Hash(Box<crate::hash::Hasher>),
    Crc32(crc32fast::Hasher),
}

impl Checksummer {
    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Checksummer::Hash(h) => h.update(data),
            Checksummer::Crc32(h) => h.update(data),
        }
    }

    pub(crate) fn finalize(self) -> Vec<u8> {
        match self {
            Checksummer::Hash(h) => (*h).finalize(),
            Checksummer::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
        }
    }
}

/// `Upload-Checksum: <algorithm> <base64 digest>`.
pub(crate) struct Checksum {
    pub(crate) algorithm: ChecksumAlgorithm,
    pub(crate) expected: Vec<u8>,
}

impl Checksum {
    pub(crate) fn parse(raw: &str) -> Result<Self, Problem> {
        let (name, value) =
            raw.split_once(' ').ok_or_else(|| bad("invalid_checksum", "Upload-Checksum is \"<algorithm> <base64 digest>\""))?;
        let algorithm = match name.to_ascii_lowercase().as_str() {
            "sha1" => ChecksumAlgorithm::Hash(HashAlgorithm::Sha1),
            "sha256" => ChecksumAlgorithm::Hash(HashAlgorithm::Sha256),
            "md5" => ChecksumAlgorithm::Hash(HashAlgorithm::Md5),
            "crc32" => ChecksumAlgorithm::Crc32,
            _ => {
                return Err(bad(
                    "unsupported_checksum",
                    format!("checksum algorithm {name:?} is not one of {CHECKSUM_ALGORITHMS}"),
                ));
            }
        };
        let expected = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| bad("invalid_checksum", "the Upload-Checksum digest is not base64"))?;
        let len = match algorithm {
            ChecksumAlgorithm::Hash(h) => h.output_len(),
            ChecksumAlgorithm::Crc32 => 4,
        };
        if expected.len() != len {
            return Err(bad("invalid_checksum", format!("a {name} digest is {len} bytes, not {}", expected.len())));
        }
        Ok(Self { algorithm, expected })
    }

    /// The hash algorithm, `None` for CRC32.
    #[cfg(any(fuzzing, test))]
    pub(crate) fn hash_algorithm(&self) -> Option<HashAlgorithm> {
        match self.algorithm {
            ChecksumAlgorithm::Hash(h) => Some(h),
            ChecksumAlgorithm::Crc32 => None,
        }
    }

    pub(crate) fn start(&self) -> Checksummer {
        match self.algorithm {
            ChecksumAlgorithm::Hash(h) => Checksummer::Hash(Box::new(h.hasher())),
            ChecksumAlgorithm::Crc32 => Checksummer::Crc32(crc32fast::Hasher::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_parsed_strictly() {
        let c = Checksum::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!(c.algorithm, ChecksumAlgorithm::Hash(HashAlgorithm::Sha1));
        assert_eq!(Checksum::parse("whirlpool AAAA").err().unwrap().code(), "unsupported_checksum");
        assert_eq!(Checksum::parse("sha1 AAAA").err().unwrap().code(), "invalid_checksum");
        assert_eq!(Checksum::parse("sha1").err().unwrap().code(), "invalid_checksum");
    }
}
