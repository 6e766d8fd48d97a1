//! Counters as the exposition writes them, with the OTLP record of their
//! latest anomaly as an OpenMetrics exemplar; the exemplar labels of the
//! slow-open histogram's buckets.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, MetricEncoder, NoLabelSet};

use crate::pipeline::RecordId;

/// A plain counter sample.
pub(super) fn counter<L: EncodeLabelSet>(encoder: &mut MetricEncoder, labels: &L, v: u64) -> std::fmt::Result {
    encoder.encode_family(labels)?.encode_counter::<NoLabelSet, u64, u64>(&v, None)
}

/// The exemplar labels that name an OTLP log record: `{log_record_uid="<32
/// hex digits>"}`, the record's `log.record.uid` (label names allow no dots).
pub(super) type RecordExemplar = [(&'static str, RecordIdHex); 1];

pub(super) fn record_exemplar(id: RecordId) -> RecordExemplar {
    [(crate::sinks::otlp::EXEMPLAR_LABEL, RecordIdHex(id))]
}

/// A counter whose latest increment is the anomaly sent as the OTLP log record
/// `record`: OpenMetrics shows it as the exemplar
/// `{log_record_uid="<32 hex digits>"} 1`, the record's `log.record.uid`, so a
/// user can jump from the series to the record. (prometheus-client builds exemplars
/// only inside its own metric types, hence the counter made here.) The classic
/// format has no exemplars: while it renders, none are made.
pub(super) fn counter_with_exemplar<L: EncodeLabelSet>(
    encoder: &mut MetricEncoder,
    labels: &L,
    v: u64,
    record: Option<RecordId>,
) -> std::fmt::Result {
    let Some(id) = record.filter(|_| v > 0 && !RENDERING_CLASSIC.get()) else { return counter(encoder, labels, v) };
    let c = prometheus_client::metrics::exemplar::CounterWithExemplar::<RecordExemplar>::default();
    c.inc_by(v - 1, None, None);
    c.inc_by(1, Some(record_exemplar(id)), None);
    prometheus_client::encoding::EncodeMetric::encode(&c, encoder.encode_family(labels)?)
}

/// A record id as an exemplar label value: 32 lowercase hex digits written
/// straight into the exposition (no strings per series at scrape time).
#[derive(Clone, Debug)]
pub(super) struct RecordIdHex(RecordId);

impl prometheus_client::encoding::EncodeLabelValue for RecordIdHex {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder) -> std::fmt::Result {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = [0u8; 32];
        for (i, b) in self.0.iter().enumerate() {
            hex[2 * i] = HEX[(b >> 4) as usize];
            hex[2 * i + 1] = HEX[(b & 15) as usize];
        }
        encoder.write_str(std::str::from_utf8(&hex).map_err(|_| std::fmt::Error)?)
    }
}

thread_local! {
    /// Set while this thread renders the classic format (see `Exposition::render`).
    pub(super) static RENDERING_CLASSIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

