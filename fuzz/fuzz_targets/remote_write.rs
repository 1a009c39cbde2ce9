//! Fuzzes the payload path the proxy runs on every request: snappy decoding with its size
//! bound, counting, `--validate` and the `--external-label` rewrite, for both protocols.
//!
//! The first input byte picks the protocol (bit 0) and whether the rest is a snappy body as
//! received (bit 1 clear) or an uncompressed message that is compressed first (bit 1 set, so
//! the fuzzer reaches the protobuf walk without having to learn snappy). Beyond "no panic"
//! (and, via `-malloc_limit_mb` in smoke.sh, no large allocation from a small input), it checks:
//! - the counting fast path counts and refuses as the general scan does;
//! - what `--validate` accepts decodes with the generated prost types, with the same counts;
//! - a rewrite's output is a snappy body; when its input validated, the output decodes,
//!   carries the external labels on every series, sorted, has the same counts, and validates.
#![no_main]

use amp_rw_proxy::remote_write::proto::{v1, v2};
use amp_rw_proxy::remote_write::{self, Counts, ExternalLabels, Outcome, Protocol, Settings, scan};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let protocol = if selector & 1 == 0 {
        Protocol::V1
    } else {
        Protocol::V2
    };
    let body = if selector & 2 != 0 {
        snap::raw::Encoder::new().compress_vec(rest).unwrap()
    } else {
        rest.to_vec()
    };
    // 1 MiB: what a small input may decode to stays small, as in production with the 32 MiB
    // default relative to a 32 MiB body limit.
    let base = Settings {
        max_decoded_size: 1 << 20,
        ..Settings::default()
    };
    let count = remote_write::process(protocol, &body, &base);
    assert!(matches!(count, Ok(Outcome::PassThrough { .. })));
    // The counting fast path (every request without flags) agrees with the general scan.
    let _ = remote_write::with_decompressed(&body, base.max_decoded_size, |raw| {
        assert_eq!(scan::count_v1(raw), scan::scan_v1(raw, false).ok());
    });

    let validate = Settings {
        validate: true,
        ..base.clone()
    };
    let validated = remote_write::process(protocol, &body, &validate);
    if let Ok(outcome) = &validated {
        let Outcome::PassThrough { counts: Some(c) } = outcome else {
            panic!("validation without rewrite must pass through with counts: {outcome:?}");
        };
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(
            *c,
            prost_counts(protocol, &raw),
            "wire counts agree with prost"
        );
        assert_eq!(count, Ok(Outcome::PassThrough { counts: Some(*c) }));
    }

    let labels = ExternalLabels::new(vec![
        ("cluster".into(), "fuzz".into()),
        ("job".into(), "x".into()),
    ])
    .unwrap();
    let rewrite = Settings {
        external_labels: labels,
        ..base
    };
    if let Ok(outcome) = remote_write::process(protocol, &body, &rewrite) {
        let Outcome::Rewritten { body: out, counts } = outcome else {
            panic!("a rewrite must produce a body");
        };
        // Without --validate a rewrite copies whatever else the sender sent (an invalid
        // sample, a label value that is not UTF-8) as it is: the upstream judges it. So the
        // output is only required to be valid when the input was.
        let raw = snap::raw::Decoder::new().decompress_vec(&out).unwrap();
        if let Ok(Outcome::PassThrough { counts: Some(c) }) = validated {
            check_labels(protocol, &raw);
            assert_eq!(counts, c);
            let again = remote_write::process(protocol, &out, &validate);
            assert!(
                again.is_ok(),
                "rewritten valid input must stay valid: {again:?}"
            );
        }
    }
});

fn prost_counts(protocol: Protocol, raw: &[u8]) -> Counts {
    match protocol {
        Protocol::V1 => {
            let w = v1::WriteRequest::decode(raw).expect("validated v1 decodes with prost");
            let ts = &w.timeseries;
            Counts {
                series: ts.len() as u64,
                samples: ts.iter().map(|t| t.samples.len() as u64).sum(),
                histograms: ts.iter().map(|t| t.histograms.len() as u64).sum(),
                exemplars: ts.iter().map(|t| t.exemplars.len() as u64).sum(),
                metadata: w.metadata.len() as u64,
            }
        }
        Protocol::V2 => {
            let w = v2::Request::decode(raw).expect("validated v2 decodes with prost");
            let ts = &w.timeseries;
            Counts {
                series: ts.len() as u64,
                samples: ts.iter().map(|t| t.samples.len() as u64).sum(),
                histograms: ts.iter().map(|t| t.histograms.len() as u64).sum(),
                exemplars: ts.iter().map(|t| t.exemplars.len() as u64).sum(),
                // The wire count is "series whose metadata field is non-empty on the wire";
                // prost cannot tell an empty message from explicit defaults, so compare only
                // what both can see.
                metadata: ts
                    .iter()
                    .filter(|t| t.metadata.is_some_and(|m| m != v2::Metadata::default()))
                    .count() as u64,
            }
        }
    }
}

fn check_labels(protocol: Protocol, raw: &[u8]) {
    let sets: Vec<Vec<(String, String)>> = match protocol {
        Protocol::V1 => v1::WriteRequest::decode(raw)
            .expect("rewritten v1 decodes")
            .timeseries
            .into_iter()
            .map(|t| t.labels.into_iter().map(|l| (l.name, l.value)).collect())
            .collect(),
        Protocol::V2 => {
            let w = v2::Request::decode(raw).expect("rewritten v2 decodes");
            w.timeseries
                .iter()
                .map(|t| {
                    t.labels_refs
                        .chunks(2)
                        .map(|p| {
                            (
                                w.symbols[p[0] as usize].clone(),
                                w.symbols[p[1] as usize].clone(),
                            )
                        })
                        .collect()
                })
                .collect()
        }
    };
    for labels in sets {
        assert!(
            labels.contains(&("cluster".into(), "fuzz".into())),
            "{labels:?}"
        );
        assert!(labels.contains(&("job".into(), "x".into())), "{labels:?}");
        assert!(
            labels.windows(2).all(|w| w[0].0 <= w[1].0),
            "sorted: {labels:?}"
        );
    }
}
