//! Integration tests: real servers on loopback TCP, real HTTP clients (reqwest, raw sockets).
//!
//! One test binary for every module keeps link time down.

mod common;

mod bad_input;
mod chunked;
mod crash_windows;
mod download;
mod form;
mod hyper_stack;
mod limits;
mod nesting;
mod progress;
mod raw;
mod rust_tus_client;
mod serve;
mod tus;
mod urls;
