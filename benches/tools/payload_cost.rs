//! Nanoseconds per request body for the accounting the proxy does on every request (snappy
//! decode and wire-format count, `remote_write::process` with default settings), and for its
//! parts, on RW 1.0 body files (benches/bench.py writes them to target/bench/body-*.bin).
//! The fastest of several batches, so other load on the machine does not inflate it.
//!
//!   cargo run --release --example payload_cost -- target/bench/body-16KB.bin

use std::hint::black_box;
use std::time::Instant;

use amp_rw_proxy::remote_write::{self, Protocol, Settings, scan};

fn best_ns(rounds: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        for _ in 0..rounds {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / rounds as f64);
    }
    best
}

fn main() {
    let settings = Settings::default();
    for path in std::env::args().skip(1) {
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let decoded = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let rounds = (100_000_000 / decoded.len().max(1_000)).clamp(5, 20_000);
        let decode = best_ns(rounds, || {
            black_box(remote_write::decompress(black_box(&body), u64::MAX).unwrap());
        });
        let scan = best_ns(rounds, || {
            black_box(scan::scan_v1(black_box(&decoded), false).unwrap());
        });
        let count = best_ns(rounds, || {
            black_box(scan::count_v1(black_box(&decoded)).unwrap());
        });
        let reused = best_ns(rounds, || {
            black_box(
                remote_write::with_decompressed(black_box(&body), u64::MAX, |d| d.len()).unwrap(),
            );
        });
        let process = best_ns(rounds, || {
            black_box(remote_write::process(Protocol::V1, black_box(&body), &settings).unwrap());
        });
        println!(
            "{path}: {} B, {} B decoded: process {:.1} µs; decompress {:.1} µs (into the \
             reused buffer {:.1} µs), scan_v1 {:.1} µs, count_v1 {:.1} µs",
            body.len(),
            decoded.len(),
            process / 1e3,
            decode / 1e3,
            reused / 1e3,
            scan / 1e3,
            count / 1e3
        );
    }
}
