//! Adding external labels to every series, on the wire format: labels are re-encoded, every
//! other field (samples, histograms, exemplars, metadata, unknown fields) is copied through
//! byte for byte.

use super::scan::{label_v1, metadata_is_set, refs, symbols_v2};
use super::wire::{LEN, Reader, len_field_size, put_len_header, put_varint, varint_len};
use super::{Counts, ExternalLabels};

/// Rewrites a decoded RW 1.0 `WriteRequest`: every series gets `labels` (overriding a label
/// of the same name), label order stays sorted by name. Returns the new message and what it
/// holds.
pub fn rewrite_v1(buf: &[u8], labels: &ExternalLabels) -> Result<(Vec<u8>, Counts), String> {
    let mut out = Vec::with_capacity(buf.len() + buf.len() / 4);
    let mut c = Counts::default();
    let mut scratch = SeriesScratch::default();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let f = r.field().map_err(|e| format!("WriteRequest: {e}"))?;
        match (f.number, f.wire_type) {
            (1, LEN) => {
                let ts = r.bytes().map_err(|e| format!("WriteRequest: {e}"))?;
                series_v1(ts, labels, &mut scratch, &mut c, &mut out)
                    .map_err(|e| format!("timeseries[{}]: {e}", c.series))?;
                c.series += 1;
            }
            (1 | 3, wt) if wt != LEN => {
                return Err(format!(
                    "WriteRequest field {} has wire type {wt}, expected 2",
                    f.number
                ));
            }
            (n, wt) => {
                r.skip(wt).map_err(|e| format!("WriteRequest: {e}"))?;
                if n == 3 {
                    c.metadata += 1;
                }
                out.extend_from_slice(r.since(f.start));
            }
        }
    }
    Ok((out, c))
}

/// Buffers reused from series to series, so a batch allocates them once.
#[derive(Default)]
struct SeriesScratch<'a> {
    labels: Vec<(&'a [u8], &'a [u8])>,
    refs: Vec<(u32, u32)>,
    others: Vec<&'a [u8]>,
}

fn series_v1<'a>(
    ts: &'a [u8],
    ext: &'a ExternalLabels,
    s: &mut SeriesScratch<'a>,
    c: &mut Counts,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    s.labels.clear();
    s.others.clear();
    let mut r = Reader::new(ts);
    while !r.is_empty() {
        let f = r.field()?;
        match (f.number, f.wire_type) {
            (1, LEN) => {
                let (name, value) = label_v1(r.bytes()?, false)?;
                if !ext.contains(name) {
                    s.labels.push((name, value));
                }
            }
            (1..=4, wt) if wt != LEN => {
                return Err(format!("field {} has wire type {wt}, expected 2", f.number));
            }
            (n, wt) => {
                r.skip(wt)?;
                match n {
                    2 => c.samples += 1,
                    3 => c.exemplars += 1,
                    4 => c.histograms += 1,
                    _ => {}
                }
                s.others.push(r.since(f.start));
            }
        }
    }
    s.labels
        .extend(ext.pairs().map(|(n, v)| (n.as_bytes(), v.as_bytes())));
    // Stable and run-aware: the sender's already sorted labels plus the sorted external ones
    // are two runs, merged in linear time.
    s.labels.sort_by(|a, b| a.0.cmp(b.0));
    let label_size = |(n, v): &(&[u8], &[u8])| len_field_size(n.len()) + len_field_size(v.len());
    let len: usize = s
        .labels
        .iter()
        .map(|l| len_field_size(label_size(l)))
        .sum::<usize>()
        + s.others.iter().map(|o| o.len()).sum::<usize>();
    put_len_header(1, len, out);
    for l in &s.labels {
        put_len_header(1, label_size(l), out);
        put_len_header(1, l.0.len(), out);
        out.extend_from_slice(l.0);
        put_len_header(2, l.1.len(), out);
        out.extend_from_slice(l.1);
    }
    for o in &s.others {
        out.extend_from_slice(o);
    }
    Ok(())
}

/// Rewrites a decoded RW 2.0 `Request`: external label names and values missing from the
/// symbols table are appended to it (the table stays de-duplicated), and every series'
/// `labels_refs` gets the external pairs (overriding a label of the same name), sorted by
/// label name. The symbols are written first, then the other fields in their original order.
pub fn rewrite_v2<'a>(
    buf: &'a [u8],
    labels: &'a ExternalLabels,
) -> Result<(Vec<u8>, Counts), String> {
    let mut symbols = symbols_v2(buf)?;
    let original = symbols.len();
    if symbols.is_empty() {
        // The table must start with "" (the spec's rule, found by the fuzzer on an empty
        // request); a sender with no symbols has no references to shift.
        symbols.push(b"");
    }
    let mut ext_refs = Vec::with_capacity(labels.len());
    for (name, value) in labels.pairs() {
        let mut lookup = |s: &'a [u8]| -> u32 {
            let i = symbols.iter().position(|x| *x == s).unwrap_or_else(|| {
                symbols.push(s);
                symbols.len() - 1
            });
            i as u32
        };
        let n = lookup(name.as_bytes());
        let v = lookup(value.as_bytes());
        ext_refs.push((n, v));
    }
    let mut out = Vec::with_capacity(buf.len() + buf.len() / 8);
    for s in &symbols {
        put_len_header(4, s.len(), &mut out);
        out.extend_from_slice(s);
    }
    let mut c = Counts::default();
    let mut scratch = SeriesScratch::default();
    let table = Table {
        symbols: &symbols,
        original,
        ext_refs: &ext_refs,
        labels,
    };
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let f = r.field().map_err(|e| format!("Request: {e}"))?;
        match (f.number, f.wire_type) {
            (5, LEN) => {
                let ts = r.bytes().map_err(|e| format!("Request: {e}"))?;
                series_v2(ts, &table, &mut scratch, &mut c, &mut out)
                    .map_err(|e| format!("timeseries[{}]: {e}", c.series))?;
                c.series += 1;
            }
            (4, _) => r.skip(f.wire_type).map_err(|e| format!("Request: {e}"))?,
            (5, wt) => {
                return Err(format!("Request field 5 has wire type {wt}, expected 2"));
            }
            (_, wt) => {
                r.skip(wt).map_err(|e| format!("Request: {e}"))?;
                out.extend_from_slice(r.since(f.start));
            }
        }
    }
    Ok((out, c))
}

struct Table<'s, 'a> {
    symbols: &'s [&'a [u8]],
    /// Symbols the sender sent; the sender's references must point below this.
    original: usize,
    ext_refs: &'s [(u32, u32)],
    labels: &'a ExternalLabels,
}

fn series_v2<'a>(
    ts: &'a [u8],
    t: &Table<'_, 'a>,
    s: &mut SeriesScratch<'a>,
    c: &mut Counts,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    s.refs.clear();
    s.others.clear();
    let mut pending: Option<u32> = None;
    let mut has_metadata = false;
    let mut r = Reader::new(ts);
    while !r.is_empty() {
        let f = r.field()?;
        match (f.number, f.wire_type) {
            (1, wt) => refs(&mut r, wt, |v| {
                let v = u32::try_from(v)
                    .ok()
                    .filter(|v| (*v as usize) < t.original)
                    .ok_or_else(|| {
                        format!(
                            "labels_refs: symbol reference {v} out of range ({} symbols)",
                            t.original
                        )
                    })?;
                match pending.take() {
                    None => pending = Some(v),
                    Some(n) => s.refs.push((n, v)),
                }
                Ok(())
            })?,
            (2..=5, wt) if wt != LEN => {
                return Err(format!("field {} has wire type {wt}, expected 2", f.number));
            }
            (n, wt) => {
                if wt == LEN {
                    let payload = r.bytes()?;
                    has_metadata |= n == 5 && metadata_is_set(payload);
                } else {
                    r.skip(wt)?;
                }
                match n {
                    2 => c.samples += 1,
                    3 => c.histograms += 1,
                    4 => c.exemplars += 1,
                    _ => {}
                }
                s.others.push(r.since(f.start));
            }
        }
    }
    if pending.is_some() {
        return Err("labels_refs has an odd number of entries".into());
    }
    if has_metadata {
        c.metadata += 1;
    }
    let symbols = t.symbols;
    s.refs
        .retain(|(n, _)| !t.labels.contains(symbols[*n as usize]));
    s.refs.extend_from_slice(t.ext_refs);
    s.refs
        .sort_by(|a, b| symbols[a.0 as usize].cmp(symbols[b.0 as usize]));
    let packed: usize = s
        .refs
        .iter()
        .map(|(n, v)| varint_len(u64::from(*n)) + varint_len(u64::from(*v)))
        .sum();
    let len = if packed > 0 {
        len_field_size(packed)
    } else {
        0
    } + s.others.iter().map(|o| o.len()).sum::<usize>();
    put_len_header(5, len, out);
    if packed > 0 {
        put_len_header(1, packed, out);
        for (n, v) in &s.refs {
            put_varint(u64::from(*n), out);
            put_varint(u64::from(*v), out);
        }
    }
    for o in &s.others {
        out.extend_from_slice(o);
    }
    Ok(())
}
