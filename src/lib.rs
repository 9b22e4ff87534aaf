#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod body;
pub mod declared;
pub mod error;
pub mod filename;
mod future;
#[cfg(feature = "hash")]
pub mod hash;
mod id;
#[cfg(feature = "limit")]
pub mod limit;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "sniff")]
pub mod sniff;
pub mod storage;
#[cfg(test)]
mod test_util;

pub use error::{BoxError, Problem};
pub use id::UploadId;
