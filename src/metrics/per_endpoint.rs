//! Figures kept per remote endpoint (a replica, a peer): one series per
//! endpoint and figure, labelled `endpoint`.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// A counter family: its name, its help, and how to read it off one
/// endpoint's figures.
pub(super) type CounterFamily<F> = (&'static str, &'static str, fn(&F) -> u64);

/// Encode `counters` and the `up` gauge (name, help, whether the endpoint
/// is in use) for each of `figures`, whose endpoint `endpoint` names.
pub(super) fn encode<F>(
    encoder: &mut DescriptorEncoder,
    figures: &[F],
    endpoint: fn(&F) -> &str,
    counters: &[CounterFamily<F>],
    up: (&'static str, &'static str, fn(&F) -> bool),
) -> Result<(), std::fmt::Error> {
    for (name, help, get) in counters {
        let mut family =
            encoder.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
        for f in figures {
            let labels = [("endpoint", endpoint(f))];
            ConstCounter::new(get(f)).encode(family.encode_family(&labels)?)?;
        }
    }
    let (name, help, is_up) = up;
    let mut family =
        encoder.encode_descriptor(name, help, None, ConstGauge::new(0i64).metric_type())?;
    for f in figures {
        let labels = [("endpoint", endpoint(f))];
        ConstGauge::new(i64::from(is_up(f))).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
