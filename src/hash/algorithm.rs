use sha2::{Digest as _, digest::common::hazmat::SerializableState};
use std::fmt;

/// A digest algorithm the hash layer can compute while bytes stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// SHA-256 (the default).
    Sha256,
    /// SHA-512.
    Sha512,
    /// SHA-1 (for clients that send it, e.g. tus `Upload-Checksum: sha1`; not for security).
    Sha1,
    /// MD5 (for `Content-MD5`; not for security).
    Md5,
    /// CRC32C, as 4 big-endian bytes.
    Crc32c,
    /// BLAKE3 (feature `blake3`).
    #[cfg(feature = "blake3")]
    Blake3,
}

impl HashAlgorithm {
    /// Every algorithm this build supports.
    pub const ALL: &'static [HashAlgorithm] = &[
        HashAlgorithm::Sha256,
        HashAlgorithm::Sha512,
        HashAlgorithm::Sha1,
        HashAlgorithm::Md5,
        HashAlgorithm::Crc32c,
        #[cfg(feature = "blake3")]
        HashAlgorithm::Blake3,
    ];

    /// The name used in JSON responses and stored digests: the RFC 9530 name where one is
    /// registered (`sha-256`, `sha-512`, `md5`, `crc32c`), else `sha-1` and `blake3`.
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha-256",
            HashAlgorithm::Sha512 => "sha-512",
            HashAlgorithm::Sha1 => "sha-1",
            HashAlgorithm::Md5 => "md5",
            HashAlgorithm::Crc32c => "crc32c",
            #[cfg(feature = "blake3")]
            HashAlgorithm::Blake3 => "blake3",
        }
    }

    /// Recognises an algorithm name from a digest header (case-insensitive; `sha` and `sha1`
    /// mean SHA-1).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        Some(match name.as_str() {
            "sha-256" | "sha256" => HashAlgorithm::Sha256,
            "sha-512" | "sha512" => HashAlgorithm::Sha512,
            "sha" | "sha-1" | "sha1" => HashAlgorithm::Sha1,
            "md5" => HashAlgorithm::Md5,
            "crc32c" => HashAlgorithm::Crc32c,
            #[cfg(feature = "blake3")]
            "blake3" => HashAlgorithm::Blake3,
            _ => return None,
        })
    }

    /// The digest length in bytes.
    pub const fn output_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Sha1 => 20,
            HashAlgorithm::Md5 => 16,
            HashAlgorithm::Crc32c => 4,
            #[cfg(feature = "blake3")]
            HashAlgorithm::Blake3 => 32,
        }
    }

    /// A fresh hasher.
    pub fn hasher(self) -> Hasher {
        Hasher(match self {
            HashAlgorithm::Sha256 => State::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha512 => State::Sha512(sha2::Sha512::new()),
            HashAlgorithm::Sha1 => State::Sha1(sha1::Sha1::new()),
            HashAlgorithm::Md5 => State::Md5(md5::Md5::new()),
            HashAlgorithm::Crc32c => State::Crc32c(0),
            #[cfg(feature = "blake3")]
            HashAlgorithm::Blake3 => State::Blake3(Box::new(blake3::Hasher::new())),
        })
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A running digest computation.
#[derive(Clone)]
pub struct Hasher(State);

#[derive(Clone)]
enum State {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Crc32c(u32),
    #[cfg(feature = "blake3")]
    Blake3(Box<blake3::Hasher>),
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Hasher").field(&self.algorithm()).finish()
    }
}

impl Hasher {
    /// The algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        match self.0 {
            State::Sha256(_) => HashAlgorithm::Sha256,
            State::Sha512(_) => HashAlgorithm::Sha512,
            State::Sha1(_) => HashAlgorithm::Sha1,
            State::Md5(_) => HashAlgorithm::Md5,
            State::Crc32c(_) => HashAlgorithm::Crc32c,
            #[cfg(feature = "blake3")]
            State::Blake3(_) => HashAlgorithm::Blake3,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            State::Sha256(h) => h.update(data),
            State::Sha512(h) => h.update(data),
            State::Sha1(h) => h.update(data),
            State::Md5(h) => h.update(data),
            State::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            #[cfg(feature = "blake3")]
            State::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// The hasher's internal state, to continue it later (in another request or process) with
    /// [`Hasher::restore`]. `None` for algorithms whose state cannot be saved (BLAKE3).
    pub fn save(&self) -> Option<Vec<u8>> {
        Some(match &self.0 {
            State::Sha256(h) => h.serialize().to_vec(),
            State::Sha512(h) => h.serialize().to_vec(),
            State::Sha1(h) => h.serialize().to_vec(),
            State::Md5(h) => h.serialize().to_vec(),
            State::Crc32c(c) => c.to_be_bytes().to_vec(),
            #[cfg(feature = "blake3")]
            State::Blake3(_) => return None,
        })
    }

    /// A hasher continuing from a state saved by [`Hasher::save`]; `None` if `state` is not one.
    pub fn restore(algorithm: HashAlgorithm, state: &[u8]) -> Option<Self> {
        fn load<H: SerializableState>(state: &[u8]) -> Option<H> {
            H::deserialize(state.try_into().ok()?).ok()
        }
        Some(Hasher(match algorithm {
            HashAlgorithm::Sha256 => State::Sha256(load(state)?),
            HashAlgorithm::Sha512 => State::Sha512(load(state)?),
            HashAlgorithm::Sha1 => State::Sha1(load(state)?),
            HashAlgorithm::Md5 => State::Md5(load(state)?),
            HashAlgorithm::Crc32c => State::Crc32c(u32::from_be_bytes(state.try_into().ok()?)),
            #[cfg(feature = "blake3")]
            HashAlgorithm::Blake3 => return None,
        }))
    }

    /// The digest of everything fed.
    pub fn finalize(self) -> Vec<u8> {
        match self.0 {
            State::Sha256(h) => h.finalize().to_vec(),
            State::Sha512(h) => h.finalize().to_vec(),
            State::Sha1(h) => h.finalize().to_vec(),
            State::Md5(h) => h.finalize().to_vec(),
            State::Crc32c(c) => c.to_be_bytes().to_vec(),
            #[cfg(feature = "blake3")]
            State::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(alg: HashAlgorithm, data: &[u8]) -> String {
        let mut h = alg.hasher();
        for piece in data.chunks(3) {
            h.update(piece);
        }
        crate::id::to_hex(&h.finalize())
    }

    #[test]
    fn known_answers() {
        assert_eq!(hex(HashAlgorithm::Sha256, b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hex(HashAlgorithm::Sha1, b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(hex(HashAlgorithm::Md5, b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(hex(HashAlgorithm::Crc32c, b"123456789"), "e3069283");
        for alg in HashAlgorithm::ALL {
            assert_eq!(alg.hasher().finalize().len(), alg.output_len());
            assert_eq!(HashAlgorithm::from_name(alg.name()), Some(*alg));
        }
    }

    #[test]
    fn saved_state_continues() {
        for &alg in HashAlgorithm::ALL {
            let mut h = alg.hasher();
            h.update(b"hello ");
            let Some(saved) = h.save() else { continue };
            let mut resumed = Hasher::restore(alg, &saved).unwrap();
            resumed.update(b"world");
            let mut whole = alg.hasher();
            whole.update(b"hello world");
            assert_eq!(resumed.finalize(), whole.finalize(), "{alg}");
            assert!(Hasher::restore(alg, &saved[1..]).is_none());
        }
    }
}
