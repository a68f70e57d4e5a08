//! A token bucket: the doorbell rate limit, per guest (its DOORBELLs) and per attachment
//! (RING_GUEST). Burst [`BURST`], refill [`RATE_PER_SECOND`] tokens per second, time from the
//! platform's monotonic clock ([`super::Clock`], 100 ns units).
//!
//! O(1), no allocation, no lock of its own: it lives in the session's doorbell table under the
//! event lock. A refused ring costs one subtraction and a compare; the caller counts it.

use super::clock::TICKS_PER_SECOND;

/// Rings allowed back to back.
pub const BURST: u32 = 64;
/// Sustained rings per second.
pub const RATE_PER_SECOND: u64 = 10_000;
/// Clock ticks (100 ns) per token.
pub const TICKS_PER_TOKEN: u64 = TICKS_PER_SECOND / RATE_PER_SECOND;

const _: () = assert!(TICKS_PER_TOKEN > 0);

/// One bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    tokens: u32,
    /// The time the tokens were last accounted for.
    since: u64,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    pub const fn new(now: u64) -> Self {
        Self {
            tokens: BURST,
            since: now,
        }
    }

    /// Takes one token at time `now`: `true` if allowed. A clock that went backwards (never,
    /// it is monotonic) refills nothing.
    pub fn try_take(&mut self, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.since);
        let earned = elapsed.checked_div(TICKS_PER_TOKEN).unwrap_or(0);
        let room = u64::from(BURST.saturating_sub(self.tokens));
        if earned >= room {
            // Full: the time spent full earns nothing later.
            self.tokens = BURST;
            self.since = now;
        } else if earned > 0 {
            // earned < room <= BURST: fits u32.
            self.tokens = self
                .tokens
                .saturating_add(u32::try_from(earned).unwrap_or(BURST));
            self.since = self
                .since
                .saturating_add(earned.saturating_mul(TICKS_PER_TOKEN));
        }
        match self.tokens.checked_sub(1) {
            Some(left) => {
                self.tokens = left;
                true
            }
            None => false,
        }
    }

    /// Tokens left (tests).
    pub const fn tokens(&self) -> u32 {
        self.tokens
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_allows_the_burst_then_refuses() {
        let mut bucket = TokenBucket::new(0);
        for _ in 0..BURST {
            assert!(bucket.try_take(0));
        }
        assert!(!bucket.try_take(0));
        assert!(!bucket.try_take(TICKS_PER_TOKEN - 1));
    }

    #[test]
    fn refills_one_token_per_hundred_microseconds() {
        let mut bucket = TokenBucket::new(5);
        for _ in 0..BURST {
            assert!(bucket.try_take(5));
        }
        assert!(bucket.try_take(5 + TICKS_PER_TOKEN));
        assert!(!bucket.try_take(5 + TICKS_PER_TOKEN));
        // Partial time is kept: 1.5 tokens' time then another half earns the second.
        assert!(!bucket.try_take(5 + TICKS_PER_TOKEN + TICKS_PER_TOKEN / 2));
        assert!(bucket.try_take(5 + 2 * TICKS_PER_TOKEN));
    }

    #[test]
    fn sustained_rate_is_ten_thousand_per_second() {
        let mut bucket = TokenBucket::new(0);
        let mut allowed = 0u64;
        // One attempt every 10 µs for one second: 100 000 attempts.
        for step in 0..100_000u64 {
            if bucket.try_take(step * 100) {
                allowed += 1;
            }
        }
        assert!(
            (10_000..=10_000 + u64::from(BURST)).contains(&allowed),
            "{allowed}"
        );
    }

    #[test]
    fn idle_time_never_exceeds_the_burst() {
        let mut bucket = TokenBucket::new(0);
        assert!(bucket.try_take(u64::MAX / 2));
        assert_eq!(bucket.tokens(), BURST - 1);
        assert!(bucket.try_take(u64::MAX));
        let mut backwards = TokenBucket::new(1000);
        assert!(backwards.try_take(0));
        assert_eq!(backwards.tokens(), BURST - 1);
    }
}
