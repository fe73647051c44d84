//! A fixed-size latency histogram: log-linear buckets (64 per power of two, so every value is
//! known to within 1.6%), constant time to record, mergeable across connections and rounds.

use std::time::Duration;

/// Values below this (in ns) get a bucket each.
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above `LINEAR`.
const SUB_BITS: u32 = 6;
/// Buckets up to 2^40 ns (about 18 minutes).
const BUCKETS: usize = 128 + (40 - 7) * (1 << SUB_BITS);

/// Round-trip times, in nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

fn index(ns: u64) -> usize {
    if ns < LINEAR {
        return usize::try_from(ns).unwrap_or(0);
    }
    let exp = ns.ilog2(); // >= 7
    let sub = (ns >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    let i = LINEAR + u64::from(exp - 7) * (1 << SUB_BITS) + sub;
    usize::try_from(i).unwrap_or(usize::MAX).min(BUCKETS - 1)
}

/// The middle of bucket `i`, in ns.
fn value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = (i - LINEAR) / (1 << SUB_BITS) + 7;
    let sub = (i - LINEAR) % (1 << SUB_BITS);
    let low = (1 << exp) + (sub << (exp - u64::from(SUB_BITS)));
    low + (1 << (exp - u64::from(SUB_BITS))) / 2
}

impl Histogram {
    /// Records one round trip.
    pub(crate) fn record(&mut self, rtt: Duration) {
        let ns = u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(ns)] += 1;
        self.total += 1;
    }

    /// Adds every value recorded in `other`.
    pub(crate) fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Values recorded.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.total
    }

    /// The value below which `q` (0..=1) of the recorded values fall; `None` when empty.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a rank within a count that fits easily in an f64"
    )]
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((crate::float(self.total) * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Duration::from_nanos(value(i)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_within_two_percent() {
        for ns in (0..10_000).chain((1..60).map(|s| 1_u64 << s).flat_map(|p| [p - 1, p, p + 1])) {
            let v = value(index(ns));
            if ns < (1 << 40) {
                let err = crate::float(v.abs_diff(ns)) / crate::float(ns.max(1));
                assert!(err < 0.02, "{ns} -> {v}");
            }
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile(0.5).unwrap().as_secs_f64() * 1e6;
        let p99 = h.quantile(0.99).unwrap().as_secs_f64() * 1e6;
        assert!((p50 - 500.0).abs() < 10.0, "{p50}");
        assert!((p99 - 990.0).abs() < 20.0, "{p99}");
        let mut other = Histogram::default();
        other.merge(&h);
        assert_eq!(other.len(), 1000);
    }
}
