//! One remote-write request, from the sender's headers to the upstream's answer.

use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;

use super::context::WriteContext;
use super::{inspect, send};
use crate::http::body::Layout;
use crate::http::headers::declared_length;
use crate::http::{Failure, ProxyError, ResponseBody};
use crate::telemetry::metrics::{RetryLabels, VersionLabels};

/// Forwards one remote-write request and answers with the upstream's answer (or our error).
pub async fn forward<B>(
    ctx: &WriteContext<'_>,
    req: Request<B>,
) -> Result<Response<ResponseBody>, Failure>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let dest = ctx.destination;
    // The retry deadline counts from the request's arrival: the sender's own timeout (30 s
    // remote_timeout in Prometheus) includes the time it spent sending the body.
    let deadline = Instant::now() + ctx.settings.retry_deadline;
    let (parts, body) = req.into_parts();
    let protocol = inspect::check_request_headers(&parts.headers)?;
    let declared = declared_length(&parts.headers)?;
    if declared > Some(ctx.forwarding.max_body_size) {
        // Refuse before reading a byte of it.
        return Err(ProxyError::PayloadTooLarge {
            limit: ctx.forwarding.max_body_size,
        }
        .into());
    }
    // Fail fast, without reading the body, when there is nothing to sign with.
    dest.credentials.get().map_err(ProxyError::from)?;
    // Admission: a request slot, and the body's bytes against the memory budget. Over either
    // limit the sender hears 503 at once and the body is never read.
    let _slot = ctx.forwarding.limits.take_slot(&ctx.forwarding.metrics)?;
    let (body, _bytes_held) = ctx
        .forwarding
        .limits
        .read_body(
            &ctx.forwarding.metrics,
            body,
            ctx.forwarding.max_body_size,
            declared,
            // Only a body that will be decoded is gathered into one buffer.
            if ctx.settings.payload.is_blind() {
                Layout::AsReceived
            } else {
                Layout::Contiguous
            },
        )
        .await?;
    dest.metrics.request_bytes.inc_by(body.len());
    let (body, counts) = inspect::payload(ctx, protocol, body).await?;
    let started = Instant::now();
    let sent = send::with_retries(ctx, &parts.headers, &body, deadline)
        .await
        .map_err(|error| Failure {
            error,
            upstream_latency: Some(started.elapsed()),
        })?;
    let resp = sent.response;
    let metrics = &ctx.forwarding.metrics;
    if let Some(rejected) = sent.rejected {
        let labels = RetryLabels {
            route: dest.name,
            reason: rejected.label(),
        };
        metrics.upstream_rejections.get_or_create(&labels).inc();
        let refused = match counts {
            Some(c) => Some(c),
            None => inspect::count_refused(ctx, protocol, &body).await,
        };
        if let Some(c) = &refused {
            metrics
                .upstream_rejected_samples
                .get_or_create(&labels)
                .inc_by(c.samples + c.histograms);
        }
    }
    let payload = &metrics.payload;
    match counts {
        Some(c) if resp.status().is_success() => {
            payload.record(dest.name, protocol.label(), "forwarded", &c)
        }
        // `--accounting off`: nothing was meant to be counted.
        None if !ctx.settings.payload.accounting => {}
        None => {
            payload
                .uncounted
                .get_or_create(&VersionLabels {
                    route: dest.name,
                    version: protocol.label(),
                })
                .inc();
        }
        Some(_) => {}
    }
    Ok(resp)
}
