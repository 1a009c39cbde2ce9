//! What the write path looks at before forwarding: the headers (which protocol, and whether
//! the body can be a remote-write body at all) and, as configured, the payload itself.

use std::sync::Arc;

use http::{HeaderMap, header};

use super::context::WriteContext;
use super::outbound::{PROTOBUF, REMOTE_WRITE_VERSION, SNAPPY};
use crate::http::ProxyError;
use crate::http::body::BufferedBody;
use crate::remote_write::{self, Counts, Outcome, Protocol};

/// Bodies larger than this are decoded on the blocking pool rather than on a runtime worker,
/// so a 32 MiB batch does not stall other connections.
const INLINE_DECODE_LIMIT: u64 = 512 << 10;

/// `Content-Encoding` must be snappy when present; `Content-Type` must be protobuf when
/// present, and its `proto=` parameter (if any) names the protocol: `prometheus.WriteRequest`
/// (1.0) or `io.prometheus.write.v2.Request` (2.0); any other message is 415. A missing
/// `Content-Type`, or one without `proto=`, means remote-write 1.0, as the reference receiver
/// treats it. Every value of a repeated header is checked, so a second,
/// contradicting header cannot slip past. `X-Prometheus-Remote-Write-Version` is copied upstream
/// and signed, so it must be text: otherwise the request could never be signed (400, not a
/// 5xx the sender would retry forever).
pub fn check_request_headers(h: &HeaderMap) -> Result<Protocol, ProxyError> {
    for enc in h.get_all(header::CONTENT_ENCODING) {
        let ok = enc.to_str().is_ok_and(|v| {
            v.split(',')
                .all(|coding| coding.trim().eq_ignore_ascii_case(SNAPPY))
        });
        if !ok {
            return Err(ProxyError::UnsupportedMediaType(format!(
                "Content-Encoding {:?}; remote-write bodies must be snappy",
                String::from_utf8_lossy(enc.as_bytes())
            )));
        }
    }
    let mut protocol = Protocol::V1;
    let mut types = h.get_all(header::CONTENT_TYPE).iter();
    if let Some(ct) = types.next() {
        if types.next().is_some() {
            return Err(ProxyError::UnsupportedMediaType(
                "more than one Content-Type header".into(),
            ));
        }
        let (media, params) = match ct.to_str() {
            Ok(v) => v.split_once(';').unwrap_or((v, "")),
            Err(_) => ("", ""),
        };
        if !media.trim().eq_ignore_ascii_case(PROTOBUF) {
            return Err(ProxyError::UnsupportedMediaType(format!(
                "Content-Type {:?}; remote-write bodies must be application/x-protobuf",
                String::from_utf8_lossy(ct.as_bytes())
            )));
        }
        protocol = Protocol::from_media_params(params).map_err(|other| {
            ProxyError::UnsupportedMediaType(format!(
                "proto={other:?}; supported: prometheus.WriteRequest (remote-write 1.0) and \
                 io.prometheus.write.v2.Request (2.0)"
            ))
        })?;
    }
    let mut versions = h.get_all(&REMOTE_WRITE_VERSION).iter();
    if let Some(v) = versions.next() {
        if v.to_str().is_err() || versions.next().is_some() {
            return Err(ProxyError::BadRequest(
                "X-Prometheus-Remote-Write-Version must be a single plain-text value".into(),
            ));
        }
    }
    Ok(protocol)
}

/// Counts, validates and rewrites the payload as configured. Returns the body to send — the
/// received one, untouched and uncopied, unless external labels were added — and its counts.
pub async fn payload(
    ctx: &WriteContext<'_>,
    protocol: Protocol,
    body: BufferedBody,
) -> Result<(BufferedBody, Option<Counts>), ProxyError> {
    if ctx.settings.payload.is_blind() {
        return Ok((body, None));
    }
    let result = process(ctx, protocol, &body, ctx.settings.payload.clone()).await?;
    match result {
        Ok(Outcome::PassThrough { counts }) => Ok((body, counts)),
        // A new body: hashed afresh, so every (re)signed attempt covers what is sent.
        Ok(Outcome::Rewritten { body, counts }) => {
            Ok((BufferedBody::from_bytes(body), Some(counts)))
        }
        Err(rejection) => {
            let payload = &ctx.forwarding.metrics.payload;
            payload.record(
                ctx.destination.name,
                protocol.label(),
                "rejected",
                &rejection.counts.unwrap_or_default(),
            );
            Err(ProxyError::InvalidPayload(rejection.reason))
        }
    }
}

/// What a body the upstream refused held, when it was forwarded uncounted (`--accounting
/// off`): decoded now, on the failure path only, so that refused samples are counted too.
pub async fn count_refused(
    ctx: &WriteContext<'_>,
    protocol: Protocol,
    body: &BufferedBody,
) -> Option<Counts> {
    let settings = remote_write::Settings {
        validate: false,
        accounting: true,
        external_labels: remote_write::ExternalLabels::default(),
        max_decoded_size: ctx.settings.payload.max_decoded_size,
    };
    match process(ctx, protocol, body, Arc::new(settings)).await {
        Ok(Ok(Outcome::PassThrough { counts })) => counts,
        _ => None,
    }
}

/// [`remote_write::process`], inline for small bodies, on the blocking pool for large ones.
async fn process(
    ctx: &WriteContext<'_>,
    protocol: Protocol,
    body: &BufferedBody,
    settings: Arc<remote_write::Settings>,
) -> Result<Result<Outcome, remote_write::Rejection>, ProxyError> {
    let received = body.to_bytes();
    Ok(if body.len() <= INLINE_DECODE_LIMIT {
        remote_write::process(protocol, &received, &settings)
    } else {
        // As many large decodes at once as there are workers: each holds a decode buffer of
        // megabytes on a blocking-pool thread, and the allocator keeps what a thread once used,
        // so unbounded concurrency would ratchet the steady RSS up with every burst.
        let _decoding = ctx
            .forwarding
            .limits
            .large_decodes
            .acquire()
            .await
            .map_err(|e| ProxyError::Internal(format!("payload processing failed: {e}")))?;
        tokio::task::spawn_blocking(move || remote_write::process(protocol, &received, &settings))
            .await
            .map_err(|e| ProxyError::Internal(format!("payload processing failed: {e}")))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, StatusCode};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                k.parse::<header::HeaderName>().unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn media_type_table() {
        const V1: Option<Protocol> = Some(Protocol::V1);
        const V2: Option<Protocol> = Some(Protocol::V2);
        // `None`: refused with 415 (or 400 for the version header).
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<Protocol>);
        let cases: &[Case] = &[
            (&[], V1),
            (&[("content-type", "application/x-protobuf")], V1),
            (
                &[(
                    "content-type",
                    "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                )],
                V2,
            ),
            (
                &[(
                    "content-type",
                    "application/x-protobuf; charset=utf-8; PROTO=\"io.prometheus.write.v2.Request\"",
                )],
                V2,
            ),
            (
                &[(
                    "content-type",
                    "Application/X-Protobuf ; proto=prometheus.WriteRequest",
                )],
                V1,
            ),
            (
                &[(
                    "content-type",
                    "application/x-protobuf;proto=io.prometheus.write.v3.Request",
                )],
                None,
            ),
            (
                &[(
                    "content-type",
                    "application/x-protobuf;proto=opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
                )],
                None,
            ),
            (&[("content-type", "application/x-protobuf;proto=")], None),
            (&[("content-encoding", "snappy")], V1),
            (&[("content-encoding", "gzip")], None),
            (&[("content-type", "application/json")], None),
            (&[("content-type", "text/plain")], None),
            (&[("content-encoding", "")], None),
            (
                &[("content-encoding", "snappy"), ("content-encoding", "gzip")],
                None,
            ),
            (&[("content-encoding", "snappy, gzip")], None),
            (
                &[
                    ("content-type", "application/x-protobuf"),
                    ("content-type", "application/json"),
                ],
                None,
            ),
            (&[("x-prometheus-remote-write-version", "0.1.0")], V1),
            (
                &[
                    ("x-prometheus-remote-write-version", "0.1.0"),
                    ("x-prometheus-remote-write-version", "2.0.0"),
                ],
                None,
            ),
        ];
        for (h, want) in cases {
            let got = check_request_headers(&headers(h));
            assert_eq!(got.as_ref().ok().copied(), *want, "{h:?}");
            if let Err(e) = got {
                let media = h.iter().any(|(k, _)| k.starts_with("content-"));
                let status = if media { 415 } else { 400 };
                assert_eq!(e.status().as_u16(), status, "{h:?}: {e}");
            }
        }
        let mut non_text = HeaderMap::new();
        non_text.insert(
            "x-prometheus-remote-write-version",
            HeaderValue::from_bytes(b"0.1\xff").unwrap(),
        );
        let err = check_request_headers(&non_text).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
