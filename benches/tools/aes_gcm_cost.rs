//! Nanoseconds to encrypt each file given as TLS 1.3 would send it to the workspace: AES-256-GCM
//! (the suite rustls offers first and nginx picks) with aws-lc-rs, in records of 16 KiB, in
//! place. One line per file, `<ns> <path>`; the fastest of several batches, as for
//! sha256_cost.rs. Used by benches/tls.py for what the kernel, the SHA-256 and TLS's encryption
//! cost without any code of the proxy's own.

use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// TLS's largest record plaintext (RFC 8446 §5.1).
const RECORD: usize = 16 * 1024;

fn main() {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("AES-256 key"));
    for path in std::env::args().skip(1) {
        // Encrypted over and over in place: only its length and record boundaries matter.
        let mut buf = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // About 20 ms per batch whatever the size.
        let rounds = (400_000_000 / buf.len().max(1_000)).clamp(5, 20_000);
        let mut best = f64::MAX;
        let mut sequence = 0u64;
        for _ in 0..15 {
            let t = Instant::now();
            for _ in 0..rounds {
                for record in buf.chunks_mut(RECORD) {
                    sequence += 1;
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&sequence.to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(nonce),
                            Aad::from([23u8, 3, 3, 0, 0]),
                            record,
                        )
                        .expect("seal");
                    let _ = std::hint::black_box(tag);
                }
            }
            best = best.min(t.elapsed().as_nanos() as f64 / rounds as f64);
        }
        println!("{best:.0} {path}");
    }
}
