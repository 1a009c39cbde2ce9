//! Counting and validating decoded (uncompressed) remote-write messages by walking the wire
//! format. Counting alone only follows field keys and lengths; validation also checks every
//! label and every nested message, so a request that passes decodes with the generated prost
//! types and holds what the specs require of a sender.

use prost::Message;

use super::Counts;
use super::proto::{v1, v2};
use super::wire::{FIXED64, LEN, Reader, VARINT, WireError};

const METRIC_NAME: &[u8] = b"__name__";

/// Counts a `prometheus.WriteRequest` (RW 1.0); with `validate`, also checks it (see
/// [`super::Settings::validate`]). The error is one line naming where the problem is.
pub fn scan_v1(buf: &[u8], validate: bool) -> Result<Counts, String> {
    let mut c = Counts::default();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let f = r.field().map_err(|e| format!("WriteRequest: {e}"))?;
        match (f.number, f.wire_type) {
            (1, LEN) => {
                let ts = r.bytes().map_err(|e| format!("WriteRequest: {e}"))?;
                series_v1(ts, validate, &mut c)
                    .map_err(|e| format!("timeseries[{}]: {e}", c.series))?;
                c.series += 1;
            }
            (3, LEN) => {
                let md = r.bytes().map_err(|e| format!("WriteRequest: {e}"))?;
                if validate {
                    v1::MetricMetadata::decode(md)
                        .map_err(|e| format!("metadata[{}]: {}", c.metadata, prost_reason(&e)))?;
                }
                c.metadata += 1;
            }
            (1 | 3, wt) => {
                return Err(format!(
                    "WriteRequest field {} has wire type {wt}, expected 2",
                    f.number
                ));
            }
            (_, wt) => r.skip(wt).map_err(|e| format!("WriteRequest: {e}"))?,
        }
    }
    Ok(c)
}

/// `scan_v1(buf, false).ok()`, several times faster: what runs on every request when neither
/// `--validate` nor `--external-label` is given. It accepts and refuses exactly what
/// [`scan_v1`] does (the tests and the fuzz target compare the two), but keeps no reasons, and
/// reads keys and lengths with the one-byte case first and no per-field error plumbing.
pub fn count_v1(buf: &[u8]) -> Option<Counts> {
    let mut c = Counts::default();
    let mut pos = 0;
    // Series are walked two at a time, interleaved: walking one is a chain of dependent loads
    // (each field's length says where the next starts), two chains overlap in the CPU.
    let mut pending: Option<&[u8]> = None;
    while pos < buf.len() {
        let (number, wire_type) = fast::key(buf, &mut pos)?;
        match (number, wire_type) {
            (1, LEN) => {
                let ts = fast::bytes(buf, &mut pos)?;
                match pending.take() {
                    None => pending = Some(ts),
                    Some(first) => count_two_series_v1(first, ts, &mut c)?,
                }
                c.series += 1;
            }
            (3, LEN) => {
                fast::bytes(buf, &mut pos)?;
                c.metadata += 1;
            }
            (1 | 3, _) => return None,
            (_, wt) => fast::skip(buf, &mut pos, wt)?,
        }
    }
    if let Some(last) = pending {
        count_two_series_v1(last, &[], &mut c)?;
    }
    Some(c)
}

/// Counts the fields of two series, a field of each in turn.
fn count_two_series_v1(a: &[u8], b: &[u8], c: &mut Counts) -> Option<()> {
    // [samples, exemplars, histograms]
    let mut n = [0u64; 3];
    let (mut pa, mut pb) = (0, 0);
    while pa < a.len() && pb < b.len() {
        series_field_v1(a, &mut pa, &mut n)?;
        series_field_v1(b, &mut pb, &mut n)?;
    }
    while pa < a.len() {
        series_field_v1(a, &mut pa, &mut n)?;
    }
    while pb < b.len() {
        series_field_v1(b, &mut pb, &mut n)?;
    }
    c.samples += n[0];
    c.exemplars += n[1];
    c.histograms += n[2];
    Some(())
}

/// One field of a `TimeSeries`, as [`series_v1`] takes it without validation.
#[inline(always)]
fn series_field_v1(ts: &[u8], pos: &mut usize, n: &mut [u64; 3]) -> Option<()> {
    let (number, wire_type) = fast::key(ts, pos)?;
    match (number, wire_type) {
        (1..=4, LEN) => {
            fast::bytes(ts, pos)?;
            if number > 1 {
                n[number as usize - 2] += 1;
            }
            Some(())
        }
        (1..=4, _) => None,
        (_, wt) => fast::skip(ts, pos, wt),
    }
}

/// The counting walk's reader: [`Reader`]'s rules (varints of at most 10 bytes whose 10th
/// carries one bit, keys within `u32` with a field number and one of wire types 0, 1, 2, 5,
/// lengths within the message) over a position, failing with `None`.
mod fast {
    use super::{FIXED64, LEN, VARINT};
    use crate::remote_write::wire::FIXED32;

    #[inline(always)]
    pub(super) fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
        let b = *buf.get(*pos)?;
        *pos += 1;
        if b < 0x80 {
            return Some(u64::from(b));
        }
        // Two bytes: series lengths (128 bytes to 16 KiB).
        if let Some(&b2) = buf.get(*pos) {
            if b2 < 0x80 {
                *pos += 1;
                return Some(u64::from(b & 0x7f) | u64::from(b2) << 7);
            }
        }
        varint_slow(buf, pos, b)
    }

    #[cold]
    #[inline(never)]
    fn varint_slow(buf: &[u8], pos: &mut usize, first: u8) -> Option<u64> {
        let mut value = u64::from(first & 0x7f);
        for i in 1..10 {
            let b = *buf.get(*pos)?;
            *pos += 1;
            value |= u64::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return None;
                }
                return Some(value);
            }
        }
        None
    }

    #[inline(always)]
    pub(super) fn key(buf: &[u8], pos: &mut usize) -> Option<(u32, u8)> {
        let key = varint(buf, pos)?;
        let key = u32::try_from(key).ok()?;
        let (number, wire_type) = (key >> 3, (key & 7) as u8);
        if number == 0 || !matches!(wire_type, VARINT | FIXED64 | LEN | FIXED32) {
            return None;
        }
        Some((number, wire_type))
    }

    #[inline(always)]
    pub(super) fn bytes<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
        let len = varint(buf, pos)?;
        let start = *pos;
        if len > (buf.len() - start) as u64 {
            return None;
        }
        *pos = start + len as usize;
        Some(&buf[start..*pos])
    }

    #[inline]
    pub(super) fn skip(buf: &[u8], pos: &mut usize, wire_type: u8) -> Option<()> {
        let n = match wire_type {
            VARINT => return varint(buf, pos).map(drop),
            LEN => return bytes(buf, pos).map(drop),
            FIXED64 => 8,
            _ => 4,
        };
        if buf.len() - *pos < n {
            return None;
        }
        *pos += n;
        Some(())
    }
}

fn series_v1(ts: &[u8], validate: bool, c: &mut Counts) -> Result<(), String> {
    let mut r = Reader::new(ts);
    let mut prev: Option<&[u8]> = None;
    let mut has_name = false;
    while !r.is_empty() {
        let f = r.field()?;
        match (f.number, f.wire_type) {
            (1, LEN) => {
                let label = r.bytes()?;
                if validate {
                    let (name, value) = label_v1(label, true)?;
                    check_label(prev, name)?;
                    has_name |= name == METRIC_NAME && !value.is_empty();
                    prev = Some(name);
                }
            }
            (2, LEN) => {
                let s = r.bytes()?;
                if validate {
                    scalars(s, &[(1, FIXED64), (2, VARINT)]).map_err(|e| format!("sample: {e}"))?;
                }
                c.samples += 1;
            }
            (3, LEN) => {
                let e = r.bytes()?;
                if validate {
                    v1::Exemplar::decode(e)
                        .map_err(|err| format!("exemplar: {}", prost_reason(&err)))?;
                }
                c.exemplars += 1;
            }
            (4, LEN) => {
                let h = r.bytes()?;
                if validate {
                    v1::Histogram::decode(h)
                        .map_err(|err| format!("histogram: {}", prost_reason(&err)))?;
                }
                c.histograms += 1;
            }
            (1..=4, wt) => {
                return Err(format!("field {} has wire type {wt}, expected 2", f.number));
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    if validate && !has_name {
        return Err("missing or empty metric name (__name__)".into());
    }
    Ok(())
}

/// A v1 `Label`'s name and value (the last occurrence wins, as in prost). With `utf8`, every
/// occurrence must be UTF-8 — prost checks each one, not just the one that wins (found by the
/// fuzzer: a repeated name field hiding an invalid first one).
pub(super) fn label_v1(label: &[u8], utf8: bool) -> Result<(&[u8], &[u8]), String> {
    let mut r = Reader::new(label);
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    while !r.is_empty() {
        let f = r.field().map_err(|e| format!("label: {e}"))?;
        match (f.number, f.wire_type) {
            (1, LEN) => {
                name = r.bytes().map_err(|e| format!("label: {e}"))?;
                if utf8 && !is_utf8(name) {
                    return Err(format!("label name {} is not valid UTF-8", show(name)));
                }
            }
            (2, LEN) => {
                value = r.bytes().map_err(|e| format!("label: {e}"))?;
                if utf8 && !is_utf8(value) {
                    return Err(format!("value of label {} is not valid UTF-8", show(name)));
                }
            }
            (1 | 2, wt) => {
                return Err(format!(
                    "label field {} has wire type {wt}, expected 2",
                    f.number
                ));
            }
            (_, wt) => r.skip(wt).map_err(|e| format!("label: {e}"))?,
        }
    }
    Ok((name, value))
}

/// The checks every series' label set gets: non-empty names, strictly increasing names
/// (sorted, no duplicates), as both specs require of senders. UTF-8 is checked where the
/// strings are read (v1 labels, v2 symbols).
fn check_label(prev: Option<&[u8]>, name: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty label name".into());
    }
    match prev {
        Some(p) if p == name => Err(format!("duplicate label name {}", show(name))),
        Some(p) if p > name => Err(format!(
            "labels not sorted: {} after {}",
            show(name),
            show(p)
        )),
        _ => Ok(()),
    }
}

/// UTF-8 check with a word-at-a-time ASCII fast path: label names and values are almost
/// always short ASCII, where the general validator's setup dominates.
#[inline]
fn is_utf8(b: &[u8]) -> bool {
    b.is_ascii() || std::str::from_utf8(b).is_ok()
}

/// Checks that the listed scalar fields have the expected wire types (prost refuses a known
/// field with another wire type) and that the message is well-formed.
fn scalars(msg: &[u8], expected: &[(u32, u8)]) -> Result<(), WireError> {
    let mut r = Reader::new(msg);
    while !r.is_empty() {
        let f = r.field()?;
        if let Some(&(_, wt)) = expected.iter().find(|(n, _)| *n == f.number) {
            if wt != f.wire_type {
                return Err("field has the wrong wire type");
            }
        }
        r.skip(f.wire_type)?;
    }
    Ok(())
}

/// Counts an `io.prometheus.write.v2.Request` (RW 2.0); with `validate`, also checks it,
/// including `symbols[0] == ""` and every symbol reference.
pub fn scan_v2(buf: &[u8], validate: bool) -> Result<Counts, String> {
    let symbols = if validate {
        let symbols = symbols_v2(buf)?;
        if let Some(first) = symbols.first() {
            if !first.is_empty() {
                return Err(format!(
                    "symbols[0] must be the empty string, got {}",
                    show(first)
                ));
            }
        }
        symbols
    } else {
        Vec::new()
    };
    let mut c = Counts::default();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let f = r.field().map_err(|e| format!("Request: {e}"))?;
        match (f.number, f.wire_type) {
            (5, LEN) => {
                let ts = r.bytes().map_err(|e| format!("Request: {e}"))?;
                series_v2(ts, validate.then_some(&symbols[..]), &mut c)
                    .map_err(|e| format!("timeseries[{}]: {e}", c.series))?;
                c.series += 1;
            }
            (4, LEN) => {
                r.bytes().map_err(|e| format!("Request: {e}"))?;
            }
            (4 | 5, wt) => {
                return Err(format!(
                    "Request field {} has wire type {wt}, expected 2",
                    f.number
                ));
            }
            (_, wt) => r.skip(wt).map_err(|e| format!("Request: {e}"))?,
        }
    }
    Ok(c)
}

/// The symbols table, in order, each checked to be UTF-8.
pub(super) fn symbols_v2(buf: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut symbols = Vec::new();
    let mut r = Reader::new(buf);
    while !r.is_empty() {
        let f = r.field().map_err(|e| format!("Request: {e}"))?;
        match (f.number, f.wire_type) {
            (4, LEN) => {
                let s = r.bytes().map_err(|e| format!("Request: {e}"))?;
                if !is_utf8(s) {
                    return Err(format!("symbols[{}] is not valid UTF-8", symbols.len()));
                }
                symbols.push(s);
            }
            (4 | 5, wt) if wt != LEN => {
                return Err(format!(
                    "Request field {} has wire type {wt}, expected 2",
                    f.number
                ));
            }
            (_, wt) => r.skip(wt).map_err(|e| format!("Request: {e}"))?,
        }
    }
    Ok(symbols)
}

/// Calls `each` with every value of a repeated `uint32` field occurrence, packed or not.
pub(super) fn refs(
    r: &mut Reader<'_>,
    wire_type: u8,
    mut each: impl FnMut(u64) -> Result<(), String>,
) -> Result<(), String> {
    match wire_type {
        LEN => {
            let mut packed = Reader::new(r.bytes()?);
            while !packed.is_empty() {
                each(packed.varint()?)?;
            }
            Ok(())
        }
        VARINT => each(r.varint()?),
        wt => Err(format!("labels_refs has wire type {wt}, expected 0 or 2")),
    }
}

fn symbol<'a>(symbols: &[&'a [u8]], r: u64) -> Result<&'a [u8], String> {
    usize::try_from(r)
        .ok()
        .and_then(|i| symbols.get(i).copied())
        .ok_or_else(|| {
            format!(
                "symbol reference {r} out of range ({} symbols)",
                symbols.len()
            )
        })
}

fn series_v2(ts: &[u8], symbols: Option<&[&[u8]]>, c: &mut Counts) -> Result<(), String> {
    let mut r = Reader::new(ts);
    let mut pending_name: Option<&[u8]> = None;
    let mut prev: Option<&[u8]> = None;
    let mut has_name = false;
    let mut has_metadata = false;
    while !r.is_empty() {
        let f = r.field()?;
        match (f.number, f.wire_type) {
            // Counting only: label references need not be looked at.
            (1, wt) if symbols.is_none() => r.skip(wt)?,
            (1, wt) => refs(&mut r, wt, |v| {
                let Some(symbols) = symbols else {
                    return Ok(());
                };
                let s = symbol(symbols, v).map_err(|e| format!("labels_refs: {e}"))?;
                match pending_name.take() {
                    None => pending_name = Some(s),
                    Some(name) => {
                        check_label(prev, name)?;
                        has_name |= name == METRIC_NAME && !s.is_empty();
                        prev = Some(name);
                    }
                }
                Ok(())
            })?,
            (2, LEN) => {
                let s = r.bytes()?;
                if symbols.is_some() {
                    scalars(s, &[(1, FIXED64), (2, VARINT), (3, VARINT)])
                        .map_err(|e| format!("sample: {e}"))?;
                }
                c.samples += 1;
            }
            (3, LEN) => {
                let h = r.bytes()?;
                if symbols.is_some() {
                    v2::Histogram::decode(h)
                        .map_err(|err| format!("histogram: {}", prost_reason(&err)))?;
                }
                c.histograms += 1;
            }
            (4, LEN) => {
                let e = r.bytes()?;
                if let Some(symbols) = symbols {
                    let ex = v2::Exemplar::decode(e)
                        .map_err(|err| format!("exemplar: {}", prost_reason(&err)))?;
                    if ex.labels_refs.len() % 2 != 0 {
                        return Err("exemplar labels_refs has an odd number of entries".into());
                    }
                    for &v in &ex.labels_refs {
                        symbol(symbols, v.into()).map_err(|e| format!("exemplar: {e}"))?;
                    }
                }
                c.exemplars += 1;
            }
            (5, LEN) => {
                let m = r.bytes()?;
                let md = v2::Metadata::decode(m)
                    .map_err(|err| format!("metadata: {}", prost_reason(&err)))?;
                if let Some(symbols) = symbols {
                    for v in [md.help_ref, md.unit_ref] {
                        symbol(symbols, v.into()).map_err(|e| format!("metadata: {e}"))?;
                    }
                }
                // Prometheus 3 attaches a Metadata message to every series, empty when it
                // knows nothing (or with explicit defaults): only one that says something
                // counts.
                has_metadata |= md != v2::Metadata::default();
            }
            (2..=5, wt) => {
                return Err(format!("field {} has wire type {wt}, expected 2", f.number));
            }
            (_, wt) => r.skip(wt)?,
        }
    }
    if symbols.is_some() {
        if pending_name.is_some() {
            return Err("labels_refs has an odd number of entries".into());
        }
        if !has_name {
            return Err("missing or empty metric name (__name__)".into());
        }
    }
    if has_metadata {
        c.metadata += 1;
    }
    Ok(())
}

/// Whether an encoded v2 `Metadata` says anything (type, help or unit set); `false` when it
/// does not decode (a rewrite without `--validate` copies it through uncounted).
pub(super) fn metadata_is_set(m: &[u8]) -> bool {
    v2::Metadata::decode(m).is_ok_and(|md| md != v2::Metadata::default())
}

/// A label name or value for an error message: quoted, lossy, at most 64 characters.
pub(super) fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut out: String = s.chars().take(64).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    format!("{out:?}")
}

/// prost's error without its multi-line context.
fn prost_reason(e: &prost::DecodeError) -> String {
    e.to_string().replace(['\n', '\r'], " ")
}
