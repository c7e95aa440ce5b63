//! Benchmarks that alternate a block of baseline work and a block of the work measured against
//! it, round after round, so the machine's drift falls on both alike: the overhead of each round
//! is a ratio of two neighbouring blocks, and the rounds are summarised by their median.
//!
//! [`Rounds`] keeps them for the audit benchmarks: plain writes, and audited ones timed until
//! they were answered and until the log held their entries, with the CPU of both kinds.

use std::time::Duration;

/// Plain and audited blocks of writes, one of each per round, in either order.
pub struct Rounds {
    /// Writes per block.
    block: usize,
    plain: Vec<Duration>,
    answered: Vec<Duration>,
    logged: Vec<Duration>,
    plain_cpu: Duration,
    audited_cpu: Duration,
}

impl Rounds {
    pub fn new(block: usize) -> Self {
        Self {
            block,
            plain: Vec::new(),
            answered: Vec::new(),
            logged: Vec::new(),
            plain_cpu: Duration::ZERO,
            audited_cpu: Duration::ZERO,
        }
    }

    /// A block of plain writes: its time and the CPU it used.
    pub fn plain(&mut self, took: Duration, cpu: Duration) {
        self.plain.push(took);
        self.plain_cpu += cpu;
    }

    /// A block of audited writes: until they were answered, until the log held their entries,
    /// and the CPU used meanwhile.
    pub fn audited(&mut self, answered: Duration, logged: Duration, cpu: Duration) {
        self.answered.push(answered);
        self.logged.push(logged);
        self.audited_cpu += cpu;
    }

    /// Two lines under `label`: times per write with the median round's overhead (answered,
    /// logged), and CPU per write (with the Postgres server's, if `postgres`).
    pub fn report(&self, label: &str, postgres: bool) {
        let cpu_note = if postgres { " (with Postgres's)" } else { "" };
        let writes = self.plain.len() * self.block;
        let plain_cpu = micros_per(&[self.plain_cpu], writes);
        let audited_cpu = micros_per(&[self.audited_cpu], writes);
        println!(
            "{label}  plain {:>6.1} µs | audited, answered {:>6.1} µs: {} | logged {:>6.1} µs: \
             {}  [median of {} rounds]",
            micros_per(&self.plain, writes),
            micros_per(&self.answered, writes),
            overhead(&self.plain, &self.answered),
            micros_per(&self.logged, writes),
            overhead(&self.plain, &self.logged),
            self.plain.len(),
        );
        println!(
            "{label}  CPU per write{cpu_note}: plain {plain_cpu:>6.1} µs | audited \
             {audited_cpu:>6.1} µs: {:+.1}%",
            (audited_cpu / plain_cpu - 1.0) * 100.0
        );
    }

    /// One line under `label` when only one kind of block ran: its time (until logged, for
    /// audited blocks) and CPU per write.
    pub fn report_one(&self, label: &str, audited: bool) {
        let (kind, times, cpu) = if audited {
            ("audited", &self.logged, self.audited_cpu)
        } else {
            ("plain", &self.plain, self.plain_cpu)
        };
        let writes = times.len() * self.block;
        println!(
            "{label}  {kind} blocks only: {:>6.1} µs per write, CPU {:>6.1} µs per write  \
             [{} rounds]",
            micros_per(times, writes),
            micros_per(&[cpu], writes),
            times.len(),
        );
    }
}

/// Whether round `round` runs its audited block first: a fixed pseudo-random order
/// (SplitMix64 of the round's number), the same in every run. Not simply every other round:
/// work a server sets off after a fixed number of writes (SQLite's checkpoints, every two hundred
/// writes) would then fall, round after round, into the same kind of block.
pub fn audited_first(round: usize) -> bool {
    let mut z = (round as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & 1 == 1
}

/// The median round's overhead of `measured` over `baseline` (paired by round) with the
/// interquartile range of the rounds, as `+12.3% (IQR +8.0% to +17.1%)`; `-` when there are no
/// rounds.
pub fn overhead(baseline: &[Duration], measured: &[Duration]) -> String {
    let mut o: Vec<f64> = baseline
        .iter()
        .zip(measured)
        .map(|(b, m)| (m.as_secs_f64() / b.as_secs_f64() - 1.0) * 100.0)
        .filter(|o| o.is_finite())
        .collect();
    if o.is_empty() {
        return "-".into();
    }
    o.sort_by(f64::total_cmp);
    format!(
        "{:+.1}% (IQR {:+.1}% to {:+.1}%)",
        o[o.len() / 2],
        o[o.len() / 4],
        o[o.len() * 3 / 4]
    )
}

/// The mean of `times` per unit of work, in microseconds, when they add up to `units` of it.
pub fn micros_per(times: &[Duration], units: usize) -> f64 {
    times.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e6 / units.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_round_and_the_quartiles_are_reported() {
        let ms = Duration::from_millis;
        let baseline = [ms(100), ms(100), ms(100), ms(100)];
        let measured = [ms(130), ms(105), ms(110), ms(120)];
        assert_eq!(
            overhead(&baseline, &measured),
            "+20.0% (IQR +10.0% to +30.0%)"
        );
        assert_eq!(overhead(&[], &[]), "-");
        assert_eq!(overhead(&[Duration::ZERO], &[ms(1)]), "-");
        assert!((micros_per(&[ms(1), ms(3)], 4) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn rounds_take_both_orders_in_no_fixed_pattern() {
        let orders: Vec<bool> = (0..150).map(audited_first).collect();
        assert_eq!(orders, (0..150).map(audited_first).collect::<Vec<_>>());
        let first = orders.iter().filter(|&&a| a).count();
        assert!(
            (55..=95).contains(&first),
            "audited first in {first} of 150"
        );
        // Not alternating, and no period of two or four either.
        for period in [2, 4] {
            let repeats = (period..150)
                .filter(|&r| orders[r] == orders[r - period])
                .count();
            assert!(repeats < 110, "period {period}: {repeats} repeats");
        }
    }
}
