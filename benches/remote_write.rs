//! Payload processing throughput on 2000-series batches (one sample per series, node-exporter
//! sized label sets: 8 labels), in samples per second on one core:
//! counting only (decompress + wire scan, what runs with no flags), `--validate`, and
//! `--external-label` rewrite (decompress, rewrite, re-compress), for both protocol versions.
//! A full prost decode is measured as the reference the wire-format walk replaces.
//!
//! Run: `cargo bench --bench remote_write` (figures are in README.md).

use std::hint::black_box;

use amp_rw_proxy::remote_write::proto::{v1, v2};
use amp_rw_proxy::remote_write::{self, ExternalLabels, Protocol, Settings};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;

const SERIES: usize = 2000;

fn label_sets() -> Vec<Vec<(String, String)>> {
    (0..SERIES)
        .map(|i| {
            let mut l = vec![
                (
                    "__name__".to_string(),
                    format!("node_metric_{}_total", i % 40),
                ),
                ("cpu".into(), (i % 16).to_string()),
                ("env".into(), "production".into()),
                (
                    "instance".into(),
                    format!("10.0.{}.{}:9100", i / 250, i % 250),
                ),
                ("job".into(), "node-exporter".into()),
                (
                    "mode".into(),
                    ["idle", "user", "system", "iowait"][i % 4].into(),
                ),
                ("namespace".into(), "monitoring".into()),
                (
                    "pod".into(),
                    format!("node-exporter-{:05x}", i * 7919 % 65536),
                ),
            ];
            l.sort();
            l
        })
        .collect()
}

fn batch_v1() -> Vec<u8> {
    let w = v1::WriteRequest {
        timeseries: label_sets()
            .into_iter()
            .enumerate()
            .map(|(i, labels)| v1::TimeSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| v1::Label { name, value })
                    .collect(),
                samples: vec![v1::Sample {
                    value: i as f64 * 1.5,
                    timestamp: 1_700_000_000_000 + i as i64,
                }],
                ..Default::default()
            })
            .collect(),
        metadata: vec![],
    };
    snap::raw::Encoder::new()
        .compress_vec(&w.encode_to_vec())
        .unwrap()
}

fn batch_v2() -> Vec<u8> {
    let mut symbols = vec![String::new()];
    let mut index = std::collections::HashMap::new();
    let mut sym = |s: String| -> u32 {
        *index.entry(s.clone()).or_insert_with(|| {
            symbols.push(s);
            (symbols.len() - 1) as u32
        })
    };
    let timeseries = label_sets()
        .into_iter()
        .enumerate()
        .map(|(i, labels)| v2::TimeSeries {
            labels_refs: labels
                .into_iter()
                .flat_map(|(n, v)| [sym(n), sym(v)])
                .collect(),
            samples: vec![v2::Sample {
                value: i as f64 * 1.5,
                timestamp: 1_700_000_000_000 + i as i64,
                start_timestamp: 0,
            }],
            metadata: Some(v2::Metadata {
                r#type: 1,
                help_ref: 0,
                unit_ref: 0,
            }),
            ..Default::default()
        })
        .collect();
    let r = v2::Request {
        symbols,
        timeseries,
    };
    snap::raw::Encoder::new()
        .compress_vec(&r.encode_to_vec())
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let modes = [
        ("count", Settings::default()),
        (
            "validate",
            Settings {
                validate: true,
                ..Settings::default()
            },
        ),
        (
            "external-label",
            Settings {
                external_labels: ExternalLabels::new(vec![
                    ("cluster".into(), "prod-eu-1".into()),
                    ("replica".into(), "a".into()),
                ])
                .unwrap(),
                ..Settings::default()
            },
        ),
    ];
    for (protocol, body) in [(Protocol::V1, batch_v1()), (Protocol::V2, batch_v2())] {
        let mut g = c.benchmark_group(format!("rw{}", protocol.label()));
        g.throughput(Throughput::Elements(SERIES as u64));
        for (name, settings) in &modes {
            g.bench_function(*name, |b| {
                b.iter(|| remote_write::process(protocol, black_box(&body), settings).unwrap())
            });
        }
        g.bench_function("decompress-only", |b| {
            b.iter(|| remote_write::decompress(black_box(&body), 32 << 20).unwrap())
        });
        g.bench_function("prost-decode-reference", |b| {
            b.iter(|| {
                let raw = remote_write::decompress(black_box(&body), 32 << 20).unwrap();
                match protocol {
                    Protocol::V1 => v1::WriteRequest::decode(&raw[..]).unwrap().timeseries.len(),
                    Protocol::V2 => v2::Request::decode(&raw[..]).unwrap().timeseries.len(),
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
