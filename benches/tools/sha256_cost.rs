//! Nanoseconds to SHA-256 each file given, with aws-lc-rs (the implementation the proxy hashes
//! request bodies with): one line per file, `<ns> <path>`. The fastest of several batches, so
//! other load on the machine does not inflate it. Used by benches/bench.py for the CPU floor.

use std::time::Instant;

use aws_lc_rs::digest;

fn main() {
    for path in std::env::args().skip(1) {
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // About 20 ms per batch whatever the size.
        let rounds = (400_000_000 / body.len().max(1_000)).clamp(5, 20_000);
        let mut best = f64::MAX;
        for _ in 0..15 {
            let t = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(digest::digest(&digest::SHA256, std::hint::black_box(&body)));
            }
            best = best.min(t.elapsed().as_nanos() as f64 / rounds as f64);
        }
        println!("{best:.0} {path}");
    }
}
