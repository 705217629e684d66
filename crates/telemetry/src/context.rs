//! W3C trace context (`traceparent`) of tracing spans: what the control
//! plane stores in a command for the agent, whose span adopts it as its
//! parent so the agent's work joins the trace of the request that asked
//! for it; and what a caller's `traceparent` header names.
//!
//! Only the `traceparent` header's version 00 is written; a later version is
//! read by its first four fields, as the W3C recommendation asks.
//! `tracestate` is not carried: nothing here sets one.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The length of a version-00 `traceparent`: `00-{32 hex}-{16 hex}-{2 hex}`.
pub const TRACEPARENT_LEN: usize = 55;

/// The current span's trace context as a `traceparent`, or `None` when it
/// is not traced (no OTLP endpoint is configured, or it is not sampled).
pub fn current() -> Option<String> {
    of(&tracing::Span::current())
}

/// `span`'s trace context as a `traceparent`, or `None` when it is not
/// traced.
pub fn of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.is_valid() && span_context.is_sampled()).then(|| format(&span_context))
}

/// `00-{trace id}-{span id}-{flags}`.
pub fn format(span_context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span_context.trace_id(),
        span_context.span_id(),
        span_context.trace_flags().to_u8()
    )
}

/// The remote span a `traceparent` names, or `None` for anything that is
/// not one (wrong length or version, upper-case or non-hex digits, an
/// all-zero id).
pub fn parse(text: &str) -> Option<SpanContext> {
    let version = text.get(..2)?;
    // A later version may append fields after a '-'; version ff is invalid.
    let well_sized = match version {
        "00" => text.len() == TRACEPARENT_LEN,
        _ => text.len() == TRACEPARENT_LEN || text.as_bytes().get(TRACEPARENT_LEN) == Some(&b'-'),
    };
    if !well_sized || version == "ff" || !is_lower_hex(version) {
        return None;
    }
    let mut fields = text[..TRACEPARENT_LEN].split('-');
    let (_, trace, span, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    if ![trace, span, flags].iter().all(|f| is_lower_hex(f)) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Makes the remote span `traceparent` names the parent of `span`; with
/// `None`, or a text that names no span, `span` starts a trace of its own
/// (rather than joining whatever long-lived span it was created in).
/// Returns whether a parent was adopted. Call it before the span is first
/// entered: from then on its parent is fixed.
pub fn adopt(span: &tracing::Span, traceparent: Option<&str>) -> bool {
    let remote = traceparent.and_then(parse);
    let adopted = remote.is_some();
    let parent = match remote {
        Some(remote) => opentelemetry::Context::new().with_remote_span_context(remote),
        None => opentelemetry::Context::new(),
    };
    // Fails when the span is not traced (no exporter, filtered out) or was
    // already entered: call this right after creating the span.
    span.set_parent(parent).is_ok() && adopted
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_and_writes_back_the_same() {
        let context = parse(SAMPLE).expect("the W3C example parses");
        assert_eq!(
            context.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(context.is_sampled() && context.is_remote());
        assert_eq!(format(&context), SAMPLE);
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert!(parse(later).is_some());
    }

    #[test]
    fn what_is_not_a_traceparent_names_no_span() {
        let bad = [
            "",
            "00",
            "garbage",
            // Wrong lengths, with and without something appended.
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // Upper-case and non-hex digits.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            // All-zero ids, the forbidden version, a sign where a digit goes.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
            // Not ASCII where a byte count would split a character.
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ];
        for text in bad {
            assert!(parse(text).is_none(), "{text:?} parsed");
        }
    }

    #[test]
    fn untraced_spans_have_no_traceparent() {
        let span = tracing::info_span!("no subscriber");
        assert_eq!(of(&span), None);
        assert!(!adopt(&span, Some(SAMPLE)));
    }

    #[test]
    fn a_span_adopts_a_remote_parent_and_passes_it_on() {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let root = tracing::info_span!("root");
            let own = of(&root).expect("a traced span has a traceparent");
            assert_ne!(&own[3..35], &SAMPLE[3..35], "a root starts its own trace");

            let joined = tracing::info_span!("joined");
            assert!(adopt(&joined, Some(SAMPLE)));
            let text = of(&joined).expect("traced");
            assert_eq!(&text[..36], &SAMPLE[..36], "same version and trace id");
            assert_ne!(&text[36..52], &SAMPLE[36..52], "a span id of its own");

            let child = joined
                .in_scope(current)
                .expect("the child of a traced span");
            assert_eq!(&child[3..35], &SAMPLE[3..35]);

            let inside = root.in_scope(|| tracing::info_span!("alone"));
            assert!(!adopt(&inside, Some("garbage")));
            let alone = of(&inside).expect("traced");
            assert_ne!(&alone[3..35], &own[3..35], "no parent: a trace of its own");
        });
    }
}
