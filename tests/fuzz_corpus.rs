//! Replays the fuzz corpus: every committed input of every target in `fuzz/corpus/`, and every
//! input that ever found a bug in `fuzz/regressions/`, through the same target bodies that
//! `cargo fuzz` runs (`fuzz/src/`, included here), under a plain `cargo test`.
//!
//! No nightly toolchain and no libFuzzer: each input is a plain function call that panics if a
//! property the target checks does not hold.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

#[path = "../fuzz/src/lib.rs"]
pub mod targets;

/// Runs `target` on each file in its corpus and regression folders.
fn replay(target: &str, run: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !path.is_file() || hidden {
                continue;
            }
            let input = std::fs::read(&path).unwrap();
            let passed = catch_unwind(AssertUnwindSafe(|| run(&input))).is_ok();
            assert!(passed, "{} fails {target}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no inputs for {target}");
}

#[test]
fn decode_server_corpus_replays_clean() {
    replay("decode_server", targets::decode_server);
}

#[test]
fn decode_client_corpus_replays_clean() {
    replay("decode_client", targets::decode_client);
}

#[test]
fn assemble_corpus_replays_clean() {
    replay("assemble", targets::assemble);
}

#[test]
fn handshake_server_corpus_replays_clean() {
    replay("handshake_server", targets::handshake_server);
}

#[test]
fn handshake_client_corpus_replays_clean() {
    replay("handshake_client", targets::handshake_client);
}

#[test]
fn deflate_negotiate_corpus_replays_clean() {
    replay("deflate_negotiate", targets::deflate_negotiate);
}

#[test]
fn deflate_inflate_corpus_replays_clean() {
    replay("deflate_inflate", targets::deflate_inflate);
}
