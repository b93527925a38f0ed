//! The `tracing` spans of checkouts, creations, checks and submits (the table is in the crate
//! docs, `# Tracing`).
//!
//! Each span is opened with a `*_span!` macro, whose disabled form is [`Span::none`] after the
//! level and callsite-interest checks `tracing` makes on every span: with no subscriber
//! interested, a checkout pays those checks and nothing else (no pool name is formatted, no
//! field recorded). Callers test [`Span::is_disabled`] and skip the rest.
//!
//! A span gets its `outcome` when the operation ends, through [`Outcome::finish`]. An operation
//! whose future is dropped first (a cancelled `get()`, a creation cut short by a runtime shutting
//! down) ends with `outcome = "cancelled"`, recorded as the [`Outcome`] drops.

use std::future::Future;

use tracing::{Instrument, Span};

/// Runs `operation` inside `span` (an enabled one) and records its outcome as `outcome` names it.
pub(crate) async fn traced<T>(
    span: Span,
    operation: impl Future<Output = T>,
    outcome: impl FnOnce(&T) -> &'static str,
) -> T {
    let traced = Outcome::new(span);
    let output = operation.instrument(traced.span().clone()).await;
    traced.finish(outcome(&output));
    output
}

/// The value of the `outcome` field of a span whose operation was dropped before it finished.
pub(crate) const CANCELLED: &str = "cancelled";

/// An enabled span waiting for its outcome; records [`CANCELLED`] if dropped without one.
pub(crate) struct Outcome {
    span: Span,
    recorded: bool,
}

impl Outcome {
    /// Watches `span`; only worth making when the span is enabled.
    pub(crate) fn new(span: Span) -> Self {
        Self { span, recorded: false }
    }

    /// The span, to instrument the operation's future or to enter it.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records how the operation ended; the span closes when the last handle to it drops.
    pub(crate) fn finish(mut self, outcome: &'static str) {
        self.span.record("outcome", outcome);
        self.recorded = true;
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        if !self.recorded {
            self.span.record("outcome", CANCELLED);
        }
    }
}
