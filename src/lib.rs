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
mod ingest;
#[cfg(feature = "limit")]
pub mod limit;
#[cfg(feature = "progress")]
pub mod progress;
#[cfg(feature = "rate-limit")]
pub mod rate_limit;
#[cfg(feature = "router")]
mod router;
#[cfg(feature = "sniff")]
pub mod sniff;
pub mod storage;
#[cfg(test)]
mod test_util;

pub use error::{BoxError, Problem};
pub use id::UploadId;
pub use ingest::{StoreService, UploadResponse, UploadedFile, store_body};
#[cfg(all(feature = "router", feature = "local-disk"))]
pub use router::uploads_router;
#[cfg(feature = "router")]
pub use router::{FormLimits, UploadConfig, Uploads};
