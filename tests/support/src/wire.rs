//! Remote-write bodies built by hand: protobuf varints and length-delimited fields, and a
//! snappy-compressed remote-write 1.0 `WriteRequest`.

use std::time::SystemTime;

use bytes::Bytes;

pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn len_field(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(((field << 3) | 2) as u64, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A remote-write 1.0 `WriteRequest` with `series` series of one sample each (timestamped now,
/// so a real receiver accepts it), protobuf-encoded by hand (prompb field numbers), then snappy
/// block-compressed as Prometheus sends it.
pub fn write_request(series: usize) -> (Vec<u8>, Bytes) {
    let now_ms = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut req = Vec::new();
    for i in 0..series {
        let mut ts = Vec::new();
        for (k, v) in [
            ("__name__", "test_metric".to_string()),
            ("instance", format!("host-{i}")),
        ] {
            let mut label = Vec::new();
            len_field(1, k.as_bytes(), &mut label);
            len_field(2, v.as_bytes(), &mut label);
            len_field(1, &label, &mut ts);
        }
        let mut sample = Vec::new();
        sample.push(0x09); // field 1, fixed64 (double)
        sample.extend_from_slice(&(i as f64).to_le_bytes());
        sample.push(0x10); // field 2, varint
        varint(now_ms, &mut sample);
        len_field(2, &sample, &mut ts);
        len_field(1, &ts, &mut req);
    }
    let compressed = snap::raw::Encoder::new()
        .compress_vec(&req)
        .expect("snappy");
    (req, Bytes::from(compressed))
}
