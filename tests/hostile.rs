//! Hostile input: 100,000 seeded random byte streams per role, some pure noise and some built
//! from plausible frame headers, fed in random pieces. The engine must never panic, must end
//! every stream (with an error or a close), and must hold memory bounded by what it was sent.

mod support;

use std::time::{Duration, Instant};

use support::{Pieces, Rng};
use tower_ws::{Config, Role, WebSocket};

/// Counts live heap bytes and their peak, so the test can bound what an input costs.
#[global_allocator]
static ALLOCATOR: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// Plausible-looking frames with random fields: reserved bits, opcodes, masks, lengths from
/// tiny to absurd, truncated payloads, invalid UTF-8 and close codes.
fn frames(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..=rng.below(8) {
        let b0 = match rng.below(4) {
            0 => rng.byte(),
            _ => [0x81, 0x82, 0x01, 0x00, 0x80, 0x88, 0x89, 0x8a, 0x02][rng.below(9)],
        };
        out.push(b0);
        let masked = rng.below(4) != 0;
        let len: u64 = match rng.below(6) {
            0 => rng.below(126) as u64,
            1 => 126 + rng.below(1000) as u64,
            2 => rng.next_u64() >> rng.below(64),
            3 => 1 << 62,
            _ => rng.below(40) as u64,
        };
        support::push_length(&mut out, masked, len);
        if masked {
            out.extend_from_slice(&rng.bytes(4));
        }
        let body = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(rng.below(300));
        out.extend_from_slice(&rng.bytes(body));
    }
    out
}

fn run_one(rt: &tokio::runtime::Runtime, role: Role, input: Vec<u8>, seed: u64) -> usize {
    let len = input.len();
    let feed = Pieces::new(input, Rng::new(seed), 64);
    let config = Config::default().close_timeout(Duration::from_millis(10));
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    rt.block_on(async {
        let mut ws = WebSocket::new(feed, role, config);
        let mut items = 0;
        while let Some(item) = ws.recv().await {
            items += 1;
            assert!(
                items <= len + 1,
                "more items than input bytes: the stream must end"
            );
            if item.is_err() {
                // After an error the stream ends.
                assert!(ws.recv().await.is_none());
                break;
            }
        }
    });
    ALLOCATOR.peak_usage().saturating_sub(before)
}

#[test]
fn random_bytes_never_panic_end_every_stream_and_cost_bounded_memory() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut worst = 0;
    for role in [Role::Server, Role::Client] {
        let mut rng = Rng::new(0x5eed_0000 + role as u64);
        for i in 0..100_000_u64 {
            let input = if rng.below(2) == 0 {
                let len = rng.below(512);
                rng.bytes(len)
            } else {
                frames(&mut rng)
            };
            let len = input.len();
            let peak = run_one(&rt, role, input, i);
            // The read buffer and a copy of the input, at most, plus fixed state.
            assert!(
                peak <= 64 * 1024 + 4 * len,
                "input {i} ({role:?}, {len} bytes) peaked at {peak} bytes"
            );
            worst = worst.max(peak);
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "took {:?}",
        started.elapsed()
    );
    eprintln!(
        "worst peak allocation over 200,000 inputs: {worst} bytes in {:?}",
        started.elapsed()
    );
}
