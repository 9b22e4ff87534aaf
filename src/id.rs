//! Server-generated identifiers.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The identifier of an upload and of the object it becomes: 128 random bits, written as 32
/// lowercase hex digits. The server always chooses it; a client never names a storage path.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UploadId(String);

impl UploadId {
    /// A new random id from the operating system's generator.
    ///
    /// # Panics
    /// When the operating system has no random source to offer, which leaves no safe way to
    /// choose an unguessable id.
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source is available");
        Self(to_hex(&bytes))
    }

    /// Accepts exactly 32 lowercase hex digits, so that an id taken from a URL is always safe
    /// to use as a file name.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))).then(|| Self(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UploadId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("not an upload id: {s:?}"))
    }
}

impl From<UploadId> for String {
    fn from(id: UploadId) -> String {
        id.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

/// Decodes lowercase or uppercase hex; `None` for anything else.
pub(crate) fn from_hex(s: &str) -> Option<Vec<u8>> {
    (s.len() % 2 == 0).then_some(())?;
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Lowercase hex of `bytes`. By table, not `write!`: ids and digests are written for every file,
/// and the formatter costs ten times as much.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_parse_back_and_differ() {
        let a = UploadId::random();
        let b = UploadId::random();
        assert_ne!(a, b);
        assert_eq!(UploadId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn hex_is_lowercase_and_reads_back() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff, 0x10];
        assert_eq!(to_hex(&bytes), "000fa5ff10");
        assert_eq!(from_hex(&to_hex(&bytes)).as_deref(), Some(&bytes[..]));
        assert_eq!(to_hex(&[]), "");
    }

    #[test]
    fn rejects_paths_and_wrong_lengths() {
        for bad in ["../../etc/passwd", "", "ABCDEF0123456789abcdef0123456789", "0123", "0123456789abcdef0123456789abcdeg"] {
            assert_eq!(UploadId::parse(bad), None, "{bad}");
        }
    }
}
