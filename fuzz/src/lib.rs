//! The bodies of tower-ws's fuzz targets: one function per target, taking the fuzzer's raw
//! input.
//!
//! `fuzz_targets/*.rs` run them under libFuzzer. tower-ws's `tests/fuzz_corpus.rs` includes
//! this file with `#[path]` and runs them on every committed corpus and regression input, so a
//! plain `cargo test` checks every input that ever found a bug. A property that does not hold
//! panics, which is how libFuzzer reports a finding.
//!
//! Structured inputs are read with `arbitrary`; everything that reaches tower-ws goes through
//! its hidden `internals` module, which wraps the code a connection or a handshake runs.

mod assemble;
mod decode;
mod deflate;
mod handshake;
mod wire;

pub use assemble::assemble;
pub use decode::{decode_client, decode_server};
pub use deflate::{deflate_inflate, deflate_negotiate};
pub use handshake::{handshake_client, handshake_server};
