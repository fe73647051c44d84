//! Micro-benchmarks of the engine's hot loops: masking (runtime-dispatched, portable and
//! byte-at-a-time), frame decoding, and incremental UTF-8 validation.
//!
//! Run with `cargo bench --bench engine`. Throughput is reported per byte of payload.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tower_ws::internals;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn masking(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for size in [64_usize, 256, 512, 1024, 16 << 10, 1 << 20] {
        let mut buf = vec![0x5a_u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("dispatch", size), &size, |b, _| {
            b.iter(|| internals::mask(black_box(&mut buf), KEY));
        });
        group.bench_with_input(BenchmarkId::new("portable", size), &size, |b, _| {
            b.iter(|| internals::mask_portable(black_box(&mut buf), KEY));
        });
        group.bench_with_input(BenchmarkId::new("bytewise", size), &size, |b, _| {
            b.iter(|| internals::mask_bytewise(black_box(&mut buf), KEY));
        });
    }
    group.finish();
}

/// `count` masked client frames carrying `size`-byte binary payloads.
fn wire(count: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * (size + 14));
    for i in 0..count {
        out.push(0x82);
        if let Ok(short @ 0..=125) = u8::try_from(size) {
            out.push(0x80 | short);
        } else if let Ok(medium) = u16::try_from(size) {
            out.push(0xfe);
            out.extend_from_slice(&medium.to_be_bytes());
        } else {
            out.push(0xff);
            out.extend_from_slice(&(size as u64).to_be_bytes());
        }
        out.extend_from_slice(&KEY);
        out.extend((0..size).map(|j| (i + j).to_le_bytes()[0]));
    }
    out
}

fn decoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (count, size) in [(1000_usize, 16_usize), (1000, 1024), (16, 64 << 10)] {
        let bytes = wire(count, size);
        group.throughput(Throughput::Bytes((count * size) as u64));
        group.bench_function(BenchmarkId::new(format!("{count}_frames"), size), |b| {
            b.iter_batched(
                || BytesMut::from(&bytes[..]),
                |w| assert_eq!(internals::decode_all(w), count),
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

fn utf8(c: &mut Criterion) {
    let ascii = "The quick brown fox jumps over the lazy dog. ".repeat(1500);
    let mixed = "Grüße, κόσμε, 日本語のテキスト, 🦀 crabs. ".repeat(1000);
    let mut group = c.benchmark_group("utf8");
    for (name, text) in [("ascii", &ascii), ("mixed", &mixed)] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(BenchmarkId::new(name, "whole"), |b| {
            b.iter(|| {
                assert!(internals::utf8_in_pieces(
                    black_box(text.as_bytes()),
                    usize::MAX
                ));
            });
        });
        group.bench_function(BenchmarkId::new(name, "4k_pieces"), |b| {
            b.iter(|| assert!(internals::utf8_in_pieces(black_box(text.as_bytes()), 4093)));
        });
        group.bench_function(BenchmarkId::new(name, "std"), |b| {
            b.iter(|| assert!(std::str::from_utf8(black_box(text.as_bytes())).is_ok()));
        });
    }
    group.finish();
}

criterion_group!(benches, masking, decoding, utf8);
criterion_main!(benches);
