//! Exponential backoff with "equal jitter": half the delay is fixed, half is random,
//! so retries from many workers spread out but never come sooner than half the step.

/// A tiny deterministic generator (SplitMix64); hosts seed it, tests replay it.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Delay before retry number `attempt` (1 for the first retry).
pub fn backoff_delay_ms(attempt: u32, initial_ms: u64, max_ms: u64, rng: &mut SplitMix64) -> u64 {
    let exp = attempt.saturating_sub(1).min(32);
    let step = initial_ms.saturating_mul(1u64 << exp).min(max_ms).max(1);
    let half = step / 2;
    half + rng.next_u64() % (step - half + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_then_cap_and_stay_within_half_to_full_step() {
        let mut rng = SplitMix64::new(42);
        for attempt in 1..40 {
            let step = (500u64 << (attempt - 1).min(32)).min(30_000);
            for _ in 0..50 {
                let d = backoff_delay_ms(attempt, 500, 30_000, &mut rng);
                assert!(
                    d >= step / 2 && d <= step,
                    "attempt {attempt}: {d} not in [{}, {step}]",
                    step / 2
                );
            }
        }
    }

    #[test]
    fn same_seed_same_sequence() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
