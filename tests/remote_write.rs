//! Round trips through the payload layer (`amp_rw_proxy::remote_write`): bodies captured from
//! real Prometheus senders (`tests/fixtures/`, see `capture.sh`) and hand-built edge cases,
//! counted, validated and rewritten, and checked by decoding with the generated prost types.

use amp_rw_proxy::remote_write::proto::{v1, v2};
use amp_rw_proxy::remote_write::{
    self, Counts, ExternalLabels, Outcome, Protocol, Rejection, Settings,
};
use prost::Message;

fn fixture(name: &str) -> (Protocol, Vec<u8>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    let body = std::fs::read(format!("{dir}{name}.bin")).unwrap();
    let ct = std::fs::read_to_string(format!("{dir}{name}.content-type")).unwrap();
    let params = ct.trim().split_once(';').map_or("", |(_, p)| p);
    (Protocol::from_media_params(params).unwrap(), body)
}

const V1_FIXTURES: [&str; 3] = [
    "v1-prometheus-2.42-0",
    "v1-prometheus-2.42-1",
    "v1-prometheus-2.42-2",
];
const V2_FIXTURES: [&str; 2] = ["v2-prometheus-3-0", "v2-prometheus-3-1"];

fn compress(msg: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(msg).unwrap()
}

fn decompress(body: &[u8]) -> Vec<u8> {
    snap::raw::Decoder::new().decompress_vec(body).unwrap()
}

fn validating() -> Settings {
    Settings {
        validate: true,
        ..Settings::default()
    }
}

fn labelling(pairs: &[(&str, &str)]) -> Settings {
    Settings {
        validate: false,
        external_labels: ExternalLabels::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap(),
        ..Settings::default()
    }
}

fn counts_v1(w: &v1::WriteRequest) -> Counts {
    let ts = &w.timeseries;
    Counts {
        series: ts.len() as u64,
        samples: ts.iter().map(|t| t.samples.len() as u64).sum(),
        histograms: ts.iter().map(|t| t.histograms.len() as u64).sum(),
        exemplars: ts.iter().map(|t| t.exemplars.len() as u64).sum(),
        metadata: w.metadata.len() as u64,
    }
}

fn counts_v2(w: &v2::Request) -> Counts {
    let ts = &w.timeseries;
    Counts {
        series: ts.len() as u64,
        samples: ts.iter().map(|t| t.samples.len() as u64).sum(),
        histograms: ts.iter().map(|t| t.histograms.len() as u64).sum(),
        exemplars: ts.iter().map(|t| t.exemplars.len() as u64).sum(),
        metadata: ts
            .iter()
            .filter(|t| t.metadata.is_some_and(|m| m != v2::Metadata::default()))
            .count() as u64,
    }
}

fn pass_through_counts(protocol: Protocol, body: &[u8], settings: &Settings) -> Counts {
    match remote_write::process(protocol, body, settings) {
        Ok(Outcome::PassThrough { counts: Some(c) }) => c,
        other => panic!("expected counted pass-through, got {other:?}"),
    }
}

fn rewritten(protocol: Protocol, body: &[u8], settings: &Settings) -> (Vec<u8>, Counts) {
    match remote_write::process(protocol, body, settings) {
        Ok(Outcome::Rewritten { body, counts }) => (decompress(&body), counts),
        other => panic!("expected a rewrite, got {other:?}"),
    }
}

fn rejected(protocol: Protocol, body: &[u8], settings: &Settings) -> Rejection {
    match remote_write::process(protocol, body, settings) {
        Err(r) => r,
        Ok(other) => panic!("expected a rejection, got {other:?}"),
    }
}

fn labels_v1(ts: &v1::TimeSeries) -> Vec<(&str, &str)> {
    ts.labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

fn labels_v2<'a>(w: &'a v2::Request, refs: &[u32]) -> Vec<(&'a str, &'a str)> {
    refs.chunks(2)
        .map(|p| {
            (
                w.symbols[p[0] as usize].as_str(),
                w.symbols[p[1] as usize].as_str(),
            )
        })
        .collect()
}

fn assert_sorted(labels: &[(&str, &str)]) {
    assert!(
        labels.windows(2).all(|w| w[0].0 < w[1].0),
        "labels not strictly sorted: {labels:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real Prometheus bodies

#[test]
fn prometheus_2_42_bodies_validate_and_count_as_prost_decodes_them() {
    let mut metadata_only = false;
    for name in V1_FIXTURES {
        let (protocol, body) = fixture(name);
        assert_eq!(protocol, Protocol::V1, "{name}");
        let decoded = v1::WriteRequest::decode(&decompress(&body)[..]).unwrap();
        let want = counts_v1(&decoded);
        assert_eq!(
            pass_through_counts(protocol, &body, &validating()),
            want,
            "{name}"
        );
        assert_eq!(
            pass_through_counts(protocol, &body, &Settings::default()),
            want
        );
        metadata_only |= want.series == 0 && want.metadata > 0;
    }
    assert!(
        metadata_only,
        "the fixtures include a metadata-only request"
    );
}

#[test]
fn prometheus_3_v2_bodies_validate_and_count_as_prost_decodes_them() {
    for name in V2_FIXTURES {
        let (protocol, body) = fixture(name);
        assert_eq!(protocol, Protocol::V2, "{name}");
        let decoded = v2::Request::decode(&decompress(&body)[..]).unwrap();
        assert_eq!(decoded.symbols[0], "");
        let want = counts_v2(&decoded);
        // Prometheus 3.5 attaches a Metadata message to every series; with the self-scrape used
        // for the capture they are all empty (type unspecified, no help), so count as none.
        assert!(want.series > 0, "{name}: {want:?}");
        assert_eq!(
            pass_through_counts(protocol, &body, &validating()),
            want,
            "{name}"
        );
        assert_eq!(
            pass_through_counts(protocol, &body, &Settings::default()),
            want
        );
    }
}

#[test]
fn external_labels_on_prometheus_2_42_bodies() {
    let settings = labelling(&[("cluster", "e2e"), ("instance", "overridden")]);
    for name in V1_FIXTURES {
        let (protocol, body) = fixture(name);
        let before = v1::WriteRequest::decode(&decompress(&body)[..]).unwrap();
        let (after, counts) = rewritten(protocol, &body, &settings);
        let after = v1::WriteRequest::decode(&after[..]).unwrap();
        assert_eq!(counts, counts_v1(&before));
        assert_eq!(after.metadata, before.metadata, "metadata untouched");
        assert_eq!(after.timeseries.len(), before.timeseries.len());
        for (a, b) in after.timeseries.iter().zip(&before.timeseries) {
            let labels = labels_v1(a);
            assert_sorted(&labels);
            assert!(labels.contains(&("cluster", "e2e")), "{labels:?}");
            assert!(labels.contains(&("instance", "overridden")), "{labels:?}");
            // Everything else is the sender's, unchanged.
            let mut expected: Vec<_> = labels_v1(b)
                .into_iter()
                .filter(|(n, _)| *n != "instance")
                .chain([("cluster", "e2e"), ("instance", "overridden")])
                .collect();
            expected.sort();
            assert_eq!(labels, expected);
            assert_eq!(a.samples, b.samples);
        }
        // The rewritten body passes validation itself.
        let recompressed = compress(&v1::WriteRequest::encode_to_vec(&after));
        pass_through_counts(protocol, &recompressed, &validating());
    }
}

#[test]
fn external_labels_on_prometheus_3_v2_bodies_go_through_the_symbols_table() {
    // "job" already exists as a symbol (a label name); "e2e" does not.
    let settings = labelling(&[("cluster", "e2e"), ("job", "self")]);
    for name in V2_FIXTURES {
        let (protocol, body) = fixture(name);
        let before = v2::Request::decode(&decompress(&body)[..]).unwrap();
        let (after_bytes, counts) = rewritten(protocol, &body, &settings);
        let after = v2::Request::decode(&after_bytes[..]).unwrap();
        assert_eq!(counts, counts_v2(&before));
        assert_eq!(after.symbols[..before.symbols.len()], before.symbols[..]);
        let added: Vec<_> = after.symbols[before.symbols.len()..].to_vec();
        assert_eq!(added, ["cluster", "e2e"], "only missing symbols are added");
        for (a, b) in after.timeseries.iter().zip(&before.timeseries) {
            let labels = labels_v2(&after, &a.labels_refs);
            assert_sorted(&labels);
            assert!(labels.contains(&("cluster", "e2e")));
            assert!(labels.contains(&("job", "self")));
            assert_eq!(a.samples, b.samples);
            assert_eq!(
                a.metadata, b.metadata,
                "metadata refs still point at the same symbols"
            );
        }
        pass_through_counts(protocol, &compress(&after_bytes), &validating());
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built edge cases

fn series_v1(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| v1::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| v1::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn body_v1(w: &v1::WriteRequest) -> Vec<u8> {
    compress(&w.encode_to_vec())
}

/// A v2 request from label sets, symbolised like Prometheus does it.
fn request_v2(series: &[&[(&str, &str)]]) -> v2::Request {
    let mut symbols = vec![String::new()];
    let mut sym = |s: &str| -> u32 {
        match symbols.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                symbols.push(s.to_string());
                (symbols.len() - 1) as u32
            }
        }
    };
    let timeseries = series
        .iter()
        .map(|labels| v2::TimeSeries {
            labels_refs: labels.iter().flat_map(|(n, v)| [sym(n), sym(v)]).collect(),
            samples: vec![v2::Sample {
                value: 1.0,
                timestamp: 1_700_000_000_000,
                start_timestamp: 1_690_000_000_000,
            }],
            ..Default::default()
        })
        .collect();
    v2::Request {
        symbols,
        timeseries,
    }
}

fn body_v2(w: &v2::Request) -> Vec<u8> {
    compress(&w.encode_to_vec())
}

#[test]
fn empty_requests_are_valid_and_rewrite_to_empty_requests() {
    let empty = compress(&[]);
    for protocol in [Protocol::V1, Protocol::V2] {
        assert_eq!(
            pass_through_counts(protocol, &empty, &validating()),
            Counts::default()
        );
    }
    let (v1_out, c) = rewritten(Protocol::V1, &empty, &labelling(&[("a", "b")]));
    assert!(v1_out.is_empty() && c == Counts::default());
    // v2: the new symbols are there even with no series to use them, after the "" every
    // symbols table must start with (a rewritten request must stay valid).
    let (v2_out, _) = rewritten(Protocol::V2, &empty, &labelling(&[("a", "b")]));
    assert_eq!(
        v2::Request::decode(&v2_out[..]).unwrap().symbols,
        ["", "a", "b"]
    );
    pass_through_counts(Protocol::V2, &compress(&v2_out), &validating());
}

#[test]
fn metadata_only_v1_requests_are_counted_and_left_alone() {
    let w = v1::WriteRequest {
        timeseries: vec![],
        metadata: vec![v1::MetricMetadata {
            r#type: v1::metric_metadata::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests.".into(),
            unit: String::new(),
        }],
    };
    let body = body_v1(&w);
    let c = pass_through_counts(Protocol::V1, &body, &validating());
    assert_eq!((c.series, c.metadata), (0, 1));
    let (out, _) = rewritten(Protocol::V1, &body, &labelling(&[("cluster", "x")]));
    assert_eq!(v1::WriteRequest::decode(&out[..]).unwrap(), w);
}

#[test]
fn histograms_and_exemplars_are_counted_and_survive_a_rewrite_byte_for_byte() {
    let histogram = v1::Histogram {
        count: Some(v1::histogram::Count::CountInt(12)),
        sum: 3.5,
        schema: 3,
        zero_threshold: 1e-128,
        zero_count: Some(v1::histogram::ZeroCount::ZeroCountInt(1)),
        positive_spans: vec![v1::BucketSpan {
            offset: -2,
            length: 3,
        }],
        positive_deltas: vec![4, -1, 2],
        timestamp: 1_700_000_000_000,
        ..Default::default()
    };
    let exemplar = v1::Exemplar {
        labels: vec![v1::Label {
            name: "trace_id".into(),
            value: "abc123".into(),
        }],
        value: 0.25,
        timestamp: 1_700_000_000_000,
    };
    let mut ts = series_v1(&[("__name__", "latency_seconds"), ("job", "api")], &[]);
    ts.histograms = vec![histogram.clone(), histogram];
    ts.exemplars = vec![exemplar];
    let w = v1::WriteRequest {
        timeseries: vec![ts],
        metadata: vec![],
    };
    let body = body_v1(&w);
    let c = pass_through_counts(Protocol::V1, &body, &validating());
    assert_eq!(
        (c.series, c.samples, c.histograms, c.exemplars),
        (1, 0, 2, 1)
    );
    let (out, _) = rewritten(Protocol::V1, &body, &labelling(&[("cluster", "x")]));
    let out = v1::WriteRequest::decode(&out[..]).unwrap();
    assert_eq!(out.timeseries[0].histograms, w.timeseries[0].histograms);
    assert_eq!(out.timeseries[0].exemplars, w.timeseries[0].exemplars);

    // v2: a histogram with a start timestamp and an exemplar referring to symbols.
    let mut r = request_v2(&[&[("__name__", "latency_seconds"), ("job", "api")]]);
    r.symbols
        .extend(["trace_id".to_string(), "abc".to_string()]);
    let n = r.symbols.len() as u32;
    let t = &mut r.timeseries[0];
    t.samples.clear();
    t.histograms = vec![v2::Histogram {
        count: Some(v2::histogram::Count::CountFloat(2.0)),
        schema: -53,
        custom_values: vec![0.1, 1.0],
        positive_spans: vec![v2::BucketSpan {
            offset: 0,
            length: 2,
        }],
        positive_counts: vec![1.0, 1.0],
        start_timestamp: 1_690_000_000_000,
        ..Default::default()
    }];
    t.exemplars = vec![v2::Exemplar {
        labels_refs: vec![n - 2, n - 1],
        value: 0.5,
        timestamp: 1,
    }];
    t.metadata = Some(v2::Metadata {
        r#type: v2::metadata::MetricType::Histogram as i32,
        help_ref: 0,
        unit_ref: 0,
    });
    let body = body_v2(&r);
    let c = pass_through_counts(Protocol::V2, &body, &validating());
    assert_eq!(
        (c.series, c.samples, c.histograms, c.exemplars, c.metadata),
        (1, 0, 1, 1, 1)
    );
    let (out, _) = rewritten(Protocol::V2, &body, &labelling(&[("cluster", "x")]));
    let out = v2::Request::decode(&out[..]).unwrap();
    assert_eq!(out.timeseries[0].histograms, r.timeseries[0].histograms);
    assert_eq!(out.timeseries[0].exemplars, r.timeseries[0].exemplars);
    assert_eq!(out.timeseries[0].metadata, r.timeseries[0].metadata);
}

#[test]
fn stale_markers_keep_their_exact_nan_bits() {
    // Prometheus marks a series stale with this particular NaN; a rewrite that went through
    // f64 arithmetic could canonicalise it and turn "stale" into "value NaN".
    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;
    let w = v1::WriteRequest {
        timeseries: vec![series_v1(
            &[("__name__", "up"), ("job", "a")],
            &[(1.0, 1000), (f64::from_bits(STALE_NAN), 2000)],
        )],
        metadata: vec![],
    };
    let body = body_v1(&w);
    assert_eq!(
        pass_through_counts(Protocol::V1, &body, &validating()).samples,
        2
    );
    let (out, _) = rewritten(Protocol::V1, &body, &labelling(&[("cluster", "x")]));
    let out = v1::WriteRequest::decode(&out[..]).unwrap();
    assert_eq!(out.timeseries[0].samples[1].value.to_bits(), STALE_NAN);

    let mut r = request_v2(&[&[("__name__", "up")]]);
    r.timeseries[0].samples[0].value = f64::from_bits(STALE_NAN);
    let (out, _) = rewritten(Protocol::V2, &body_v2(&r), &labelling(&[("cluster", "x")]));
    let out = v2::Request::decode(&out[..]).unwrap();
    assert_eq!(out.timeseries[0].samples[0].value.to_bits(), STALE_NAN);
    assert_eq!(
        out.timeseries[0].samples[0].start_timestamp,
        1_690_000_000_000
    );
}

fn batch_v1(n: usize) -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: (0..n)
            .map(|i| {
                series_v1(
                    &[
                        ("__name__", "node_cpu_seconds_total"),
                        ("cpu", &(i % 64).to_string()),
                        ("instance", &format!("10.0.{}.{}:9100", i / 250, i % 250)),
                        ("job", "node"),
                        ("mode", "idle"),
                    ],
                    &[(i as f64, 1_700_000_000_000)],
                )
            })
            .collect(),
        metadata: vec![],
    }
}

#[test]
fn batches_of_2000_series_count_validate_and_rewrite() {
    let w = batch_v1(2000);
    let body = body_v1(&w);
    let c = pass_through_counts(Protocol::V1, &body, &validating());
    assert_eq!((c.series, c.samples), (2000, 2000));
    let (out, c) = rewritten(
        Protocol::V1,
        &body,
        &labelling(&[("cluster", "x"), ("zone", "a")]),
    );
    assert_eq!(c.series, 2000);
    let out = v1::WriteRequest::decode(&out[..]).unwrap();
    for t in &out.timeseries {
        let labels = labels_v1(t);
        assert_sorted(&labels);
        assert_eq!(
            labels.first(),
            Some(&("__name__", "node_cpu_seconds_total"))
        );
        assert_eq!(labels.last(), Some(&("zone", "a")));
    }

    let names: Vec<String> = (0..2000).map(|i| format!("host-{i}")).collect();
    let sets: Vec<Vec<(&str, &str)>> = names
        .iter()
        .map(|h| {
            vec![
                ("__name__", "up"),
                ("instance", h.as_str()),
                ("job", "node"),
            ]
        })
        .collect();
    let refs: Vec<&[(&str, &str)]> = sets.iter().map(|s| &s[..]).collect();
    let body = body_v2(&request_v2(&refs));
    let c = pass_through_counts(Protocol::V2, &body, &validating());
    assert_eq!((c.series, c.samples), (2000, 2000));
    let (out, _) = rewritten(Protocol::V2, &body, &labelling(&[("cluster", "x")]));
    let out = v2::Request::decode(&out[..]).unwrap();
    assert!(out.timeseries.iter().all(|t| {
        let l = labels_v2(&out, &t.labels_refs);
        l[0] == ("__name__", "up") && l[1] == ("cluster", "x") && l.len() == 4
    }));
}

// ---------------------------------------------------------------------------------------------
// What --validate refuses, with which message

#[test]
fn invalid_v1_requests_are_refused_with_a_precise_reason() {
    let ok = [("__name__", "up"), ("job", "a")];
    let with = |labels: &[(&str, &str)]| {
        body_v1(&v1::WriteRequest {
            timeseries: vec![series_v1(&ok, &[(1.0, 1)]), series_v1(labels, &[(1.0, 1)])],
            metadata: vec![],
        })
    };
    let mut bad_utf8 = with(&[("__name__", "up"), ("job", "XX")]);
    {
        // Patch the value "XX" into invalid UTF-8 inside the uncompressed message.
        let mut raw = decompress(&bad_utf8);
        let at = raw.windows(2).rposition(|w| w == b"XX").unwrap();
        raw[at] = 0xff;
        bad_utf8 = compress(&raw);
    }
    let mut truncated = decompress(&with(&ok));
    truncated.pop();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not snappy",
            b"\x0a\xff\xff\xff".to_vec(),
            "not valid snappy",
        ),
        (
            "not snappy either",
            b"\xff\xff\xff\xff\xff\xff".to_vec(),
            "not valid snappy",
        ),
        (
            "truncated message",
            compress(&truncated),
            "WriteRequest: length-delimited field runs past the end of its message",
        ),
        (
            "unsorted",
            with(&[("__name__", "up"), ("zone", "a"), ("job", "b")]),
            "timeseries[1]: labels not sorted: \"job\" after \"zone\"",
        ),
        (
            "duplicate",
            with(&[("__name__", "up"), ("job", "a"), ("job", "b")]),
            "timeseries[1]: duplicate label name \"job\"",
        ),
        (
            "empty metric name",
            with(&[("__name__", ""), ("job", "a")]),
            "timeseries[1]: missing or empty metric name (__name__)",
        ),
        (
            "no metric name",
            with(&[("job", "a")]),
            "timeseries[1]: missing or empty metric name",
        ),
        (
            "empty label name",
            with(&[("", "x"), ("__name__", "up")]),
            "timeseries[1]: empty label name",
        ),
        (
            "bad utf-8",
            bad_utf8,
            "value of label \"job\" is not valid UTF-8",
        ),
    ];
    for (what, body, reason) in cases {
        let r = rejected(Protocol::V1, &body, &validating());
        assert!(
            r.reason.starts_with("invalid remote-write 1.0 request: ") && r.reason.contains(reason),
            "{what}: {}",
            r.reason
        );
        assert!(!r.reason.contains('\n'), "{what}: one line");
        // Without --validate the same body is forwarded untouched.
        assert!(matches!(
            remote_write::process(Protocol::V1, &body, &Settings::default()),
            Ok(Outcome::PassThrough { .. })
        ));
    }
    // What a structurally sound but invalid request held is still counted (as rejected).
    let r = rejected(Protocol::V1, &with(&[("job", "a")]), &validating());
    assert_eq!(r.counts.map(|c| c.series), Some(2));
}

#[test]
fn invalid_v2_requests_are_refused_with_a_precise_reason() {
    let good = request_v2(&[&[("__name__", "up"), ("job", "a")]]);
    let mut first_not_empty = good.clone();
    first_not_empty.symbols[0] = "oops".into();
    let mut out_of_range = good.clone();
    out_of_range.timeseries[0].labels_refs[3] = 99;
    let mut odd = good.clone();
    odd.timeseries[0].labels_refs.push(1);
    let unsorted = request_v2(&[&[("job", "a"), ("__name__", "up")]]);
    let mut bad_metadata = good.clone();
    bad_metadata.timeseries[0].metadata = Some(v2::Metadata {
        r#type: 1,
        help_ref: 1000,
        unit_ref: 0,
    });
    let mut bad_exemplar = good.clone();
    bad_exemplar.timeseries[0].exemplars = vec![v2::Exemplar {
        labels_refs: vec![1],
        value: 1.0,
        timestamp: 1,
    }];
    let cases: Vec<(&str, v2::Request, &str)> = vec![
        (
            "symbols[0]",
            first_not_empty,
            "symbols[0] must be the empty string, got \"oops\"",
        ),
        (
            "out of range",
            out_of_range,
            "timeseries[0]: labels_refs: symbol reference 99 out of range (5 symbols)",
        ),
        (
            "odd refs",
            odd,
            "timeseries[0]: labels_refs has an odd number of entries",
        ),
        (
            "unsorted",
            unsorted,
            "labels not sorted: \"__name__\" after \"job\"",
        ),
        (
            "metadata ref",
            bad_metadata,
            "timeseries[0]: metadata: symbol reference 1000",
        ),
        (
            "exemplar refs",
            bad_exemplar,
            "exemplar labels_refs has an odd number",
        ),
    ];
    for (what, req, reason) in cases {
        let r = rejected(Protocol::V2, &body_v2(&req), &validating());
        assert!(
            r.reason.starts_with("invalid remote-write 2.0 request: ") && r.reason.contains(reason),
            "{what}: {}",
            r.reason
        );
    }
    // A rewrite cannot resolve a reference that is out of range either, validation or not.
    let mut out_of_range = good.clone();
    out_of_range.timeseries[0].labels_refs[0] = 7;
    let r = rejected(
        Protocol::V2,
        &body_v2(&out_of_range),
        &labelling(&[("a", "b")]),
    );
    assert!(r.reason.contains("out of range"), "{}", r.reason);
}

#[test]
fn a_v1_body_sent_as_v2_counts_as_an_empty_v2_request() {
    // Field numbers 1..3 are reserved in v2 exactly so that a v1 body read as v2 is an empty
    // message (the spec's "deterministic error"): nothing is counted as forwarded series.
    let (_, body) = fixture("v1-prometheus-2.42-1");
    let c = pass_through_counts(Protocol::V2, &body, &validating());
    assert_eq!(c.series, 0, "a v1 body holds no v2 series");
}

#[test]
fn decoded_size_is_checked_before_allocating() {
    let body = body_v1(&batch_v1(100));
    let decoded_len = decompress(&body).len() as u64;
    let tight = Settings {
        validate: true,
        max_decoded_size: decoded_len - 1,
        ..Settings::default()
    };
    let r = rejected(Protocol::V1, &body, &tight);
    assert!(r.reason.contains("over the limit of"), "{}", r.reason);
    assert!(r.reason.contains("--max-decoded-size"), "{}", r.reason);
    // Over the limit without --validate: forwarded, just not counted.
    let counting = Settings {
        max_decoded_size: decoded_len - 1,
        ..Settings::default()
    };
    assert_eq!(
        remote_write::process(Protocol::V1, &body, &counting),
        Ok(Outcome::PassThrough { counts: None })
    );
    // A 6-byte body declaring 3 GiB, under a limit that would allow it: refused at once,
    // without allocating 3 GiB (this test would abort with an allocation failure otherwise).
    let mut liar = Vec::new();
    let mut n: u64 = 3 << 30;
    while n >= 0x80 {
        liar.push((n as u8) | 0x80);
        n >>= 7;
    }
    liar.push(n as u8);
    liar.push(0);
    let huge = Settings {
        validate: true,
        max_decoded_size: 4 << 30,
        ..Settings::default()
    };
    let r = rejected(Protocol::V1, &liar, &huge);
    assert!(r.reason.contains("cannot decompress to"), "{}", r.reason);
}

#[test]
fn content_type_parameters_pick_the_protocol() {
    assert_eq!(Protocol::from_media_params(""), Ok(Protocol::V1));
    assert_eq!(Protocol::from_media_params("charset=x"), Ok(Protocol::V1));
    assert_eq!(
        Protocol::from_media_params("proto=prometheus.WriteRequest"),
        Ok(Protocol::V1)
    );
    assert_eq!(
        Protocol::from_media_params(" proto=io.prometheus.write.v2.Request"),
        Ok(Protocol::V2)
    );
    assert_eq!(
        Protocol::from_media_params("proto=foo.Bar"),
        Err("foo.Bar".to_string())
    );
}

#[test]
fn a_repeated_label_field_cannot_hide_invalid_utf8() {
    // Found by the fuzzer: a Label with two name fields, the first not UTF-8. prost (and any
    // receiver) rejects it although the name that "wins" is fine; --validate must too.
    let label = [
        b"\x0a\x03j\x7f\xa7".as_slice(), // name = "j\x7f\xa7" (invalid)
        b"\x0a\x01a",                    // name = "a"
        b"\x12\x01x",                    // value = "x"
    ]
    .concat();
    let mut series = vec![0x0a, 0x0e];
    series.extend_from_slice(b"\x0a\x08__name__\x12\x02up");
    series.extend_from_slice(&[0x0a, label.len() as u8]);
    series.extend_from_slice(&label);
    let mut request = vec![0x0a, series.len() as u8];
    request.extend_from_slice(&series);
    assert!(
        v1::WriteRequest::decode(&request[..]).is_err(),
        "prost refuses it"
    );
    let r = rejected(Protocol::V1, &compress(&request), &validating());
    assert!(r.reason.contains("is not valid UTF-8"), "{}", r.reason);
}

// ---------------------------------------------------------------------------------------------
// The counting fast path

/// `scan::count_v1` (every request without flags) accepts, refuses and counts exactly as
/// `scan::scan_v1` without validation: on real bodies, hand-built edge cases, and thousands of
/// corruptions of them (flipped, inserted, removed and truncated bytes, including multi-byte
/// varints, unknown fields of every wire type and wire types that do not exist).
#[test]
fn the_counting_fast_path_agrees_with_the_scan() {
    use amp_rw_proxy::remote_write::scan;
    let mut messages: Vec<Vec<u8>> = V1_FIXTURES
        .iter()
        .map(|name| decompress(&fixture(name).1))
        .collect();
    messages.push(batch_v1(300).encode_to_vec());
    messages.push(Vec::new());
    // Unknown fields of each wire type, top level and in a series; a long (3-byte) length.
    let mut odd = vec![
        0x28, 0x96, 0x01, 0x31, 1, 2, 3, 4, 5, 6, 7, 8, 0x3d, 1, 2, 3, 4,
    ];
    let series = [0x12, 0x0b, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x01];
    let mut ts = vec![0x28, 0x01, 0x35, 1, 2, 3, 4, 0x1a, 0x00, 0x22, 0x00];
    ts.extend_from_slice(&series);
    odd.push(0x0a);
    odd.push(ts.len() as u8);
    odd.extend_from_slice(&ts);
    odd.extend_from_slice(&[0x1a, 0x80, 0x80, 0x01]);
    odd.extend(std::iter::repeat_n(0u8, 1 << 14));
    let c = scan::count_v1(&odd).expect("well-formed");
    assert_eq!((c.series, c.samples, c.metadata), (1, 1, 1));
    assert_eq!((c.exemplars, c.histograms), (1, 1));
    messages.push(odd);
    let mut rng = fastrand::Rng::with_seed(6);
    let (mut counted, mut refused) = (0, 0);
    for message in &messages {
        let mut check = |m: &[u8]| {
            let fast = scan::count_v1(m);
            assert_eq!(
                fast,
                scan::scan_v1(m, false).ok(),
                "{:02x?}",
                &m[..m.len().min(64)]
            );
            if fast.is_some() {
                counted += 1;
            } else {
                refused += 1;
            }
        };
        check(message);
        for _ in 0..2000 {
            let mut m = message.clone();
            let edits = rng.usize(1..4);
            for _ in 0..edits {
                let at = rng.usize(0..=m.len());
                match rng.u8(0..4) {
                    0 if at < m.len() => m[at] = rng.u8(..),
                    1 => m.insert(at, rng.u8(..)),
                    2 if at < m.len() => {
                        m.remove(at);
                    }
                    _ => m.truncate(at),
                }
            }
            check(&m);
        }
    }
    assert!(counted > 1000 && refused > 1000, "{counted} {refused}");
}

/// Decoding into the reused per-thread buffer sees only the body's own bytes, whatever a
/// larger earlier body left there, and refuses what `decompress` refuses.
#[test]
fn the_reused_decode_buffer_shows_only_the_current_body() {
    let big = compress(&[7u8; 100_000]);
    let small = compress(b"hello");
    let got = remote_write::with_decompressed(&big, u64::MAX, |d| d.len()).unwrap();
    assert_eq!(got, 100_000);
    let got = remote_write::with_decompressed(&small, u64::MAX, |d| d.to_vec()).unwrap();
    assert_eq!(got, b"hello");
    let err = remote_write::with_decompressed(&big, 1000, |_| ()).unwrap_err();
    assert!(err.contains("over the limit"), "{err}");
    let err = remote_write::with_decompressed(&[0xff, 0xff, 0xff], u64::MAX, |_| ()).unwrap_err();
    assert!(err.contains("not valid snappy"), "{err}");
    // Truncated: declares 100000 bytes, stops early.
    let err = remote_write::with_decompressed(&big[..big.len() / 2], u64::MAX, |_| ()).unwrap_err();
    assert!(err.contains("not valid snappy"), "{err}");
}
