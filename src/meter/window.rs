//! Exact sliding byte windows built from one-second buckets.
//!
//! # Definition
//!
//! Time is cut into whole Unix seconds, `sec = floor(ts_micros / 1_000_000)`. A flow's bytes
//! are added to the bucket of the second they were seen in. At a query time `now` (with
//! `now_sec = floor(now / 1 s)`), the window of `W` seconds covers the `W` *complete* seconds
//! before the current one: `[now_sec - W, now_sec - 1]`. The current second is still filling
//! up and is left out, so a figure never dips because a second has only just begun.
//!
//! A flow younger than the window has existed for only `age = now_sec - first_sec` complete
//! seconds of it, where `first_sec` is the second of its first packet; the rate is divided by
//! `min(W, age)` seconds, so a stream that started 20 s ago shows its real rate in the 1-minute
//! and 10-minute windows rather than a third or a thirtieth of it. Before the flow has one
//! complete second (`age == 0`) every rate is 0.
//!
//! `rate(W, now) = bytes in [now_sec - W, now_sec - 1] * 8 / min(W, age) / 1000` kbps, where
//! bytes are IP bytes (IP header included, link header excluded) and kbps is 1000 bits/s.
//!
//! # Cost
//!
//! Recording is O(1) (amortised: a second's bucket is cleared once when time reaches it again,
//! and the ring grows by doubling a bounded number of times). The ring holds at most
//! [`MAX_BUCKETS`] buckets of `u32` (the 600 complete seconds of the longest window plus the
//! current one), and only as many as the flow's age needs: a short flow
//! keeps 16 buckets (64 bytes). A query sums at most [`MAX_WINDOW_SECS`] buckets once for all
//! four windows.

/// The longest window, in seconds.
pub const MAX_WINDOW_SECS: usize = 600;
/// The most buckets a ring holds: the longest window's complete seconds plus the current one.
pub const MAX_BUCKETS: usize = MAX_WINDOW_SECS + 1;
/// The windows reported, in seconds: 10 s, 1 min, 5 min, 10 min.
pub const WINDOWS_SECS: [i64; 4] = [10, 60, 300, 600];

const INITIAL_BUCKETS: usize = 16;

/// Converts a timestamp in microseconds to its whole second.
#[inline]
pub fn second_of(ts_micros: i64) -> i64 {
    crate::micros::Micros(ts_micros).secs()
}

/// A ring of per-second byte counts covering a flow's last [`MAX_BUCKETS`] seconds.
///
/// Queries are meant for times at or after the latest second recorded (the meter's "now");
/// a query further in the past only sees the seconds still in the ring.
///
/// The head second's bytes are kept beside the ring rather than in it, so that a packet of the
/// head second (almost every packet) touches only this struct, not the ring's heap buffer.
#[derive(Clone, Debug)]
#[repr(C)] // the fields a packet of the head second touches first
pub struct SecondWindows {
    /// The latest second recorded.
    head_sec: i64,
    /// The bytes of `head_sec` (its ring bucket stays 0 until the head moves on).
    head_bytes: u32,
    /// `slot(head_sec)`, cached.
    head_slot: u32,
    /// Bucket for second `s` is `buckets[s mod len]`, valid for `s` in
    /// `(head_sec - len, head_sec)`; `buckets[head_slot]` is 0.
    buckets: Vec<u32>,
    /// The flow's first second.
    first_sec: i64,
}

impl SecondWindows {
    /// An empty ring for a flow first seen at `first_sec`.
    pub fn new(first_sec: i64) -> Self {
        SecondWindows {
            head_sec: first_sec,
            head_bytes: 0,
            head_slot: first_sec.rem_euclid(INITIAL_BUCKETS as i64) as u32,
            buckets: vec![0; INITIAL_BUCKETS],
            first_sec,
        }
    }

    /// The flow's first second.
    pub fn first_sec(&self) -> i64 {
        self.first_sec
    }

    #[inline]
    fn slot(&self, sec: i64) -> usize {
        // len is at most MAX_BUCKETS, so both conversions are lossless
        sec.rem_euclid(self.buckets.len() as i64) as usize
    }

    /// Adds `bytes` to second `sec`. Seconds before `first_sec` count as `first_sec`; seconds
    /// older than the ring (time going backwards by more than its span) are dropped.
    #[inline]
    pub fn add(&mut self, sec: i64, bytes: u32) {
        if sec != self.head_sec {
            self.add_other(sec, bytes);
            return;
        }
        self.head_bytes = self.head_bytes.saturating_add(bytes);
    }

    /// [`Self::add`] for a second other than the head's.
    #[inline(never)]
    fn add_other(&mut self, sec: i64, bytes: u32) {
        let sec = sec.max(self.first_sec);
        if sec > self.head_sec {
            self.advance(sec);
        } else if self.head_sec - sec >= self.buckets.len() as i64 {
            return;
        }
        if sec == self.head_sec {
            self.head_bytes = self.head_bytes.saturating_add(bytes);
        } else {
            let slot = self.slot(sec);
            self.buckets[slot] = self.buckets[slot].saturating_add(bytes);
        }
    }

    /// Moves the head to `sec`, growing the ring if the flow's age needs it and clearing the
    /// buckets of the seconds skipped over.
    fn advance(&mut self, sec: i64) {
        // the head second is complete: its bytes go into the ring
        let head = self.head_slot as usize;
        self.buckets[head] = std::mem::take(&mut self.head_bytes);
        let len = self.buckets.len();
        let age = sec.saturating_sub(self.first_sec).saturating_add(1);
        let needed = usize::try_from(age).unwrap_or(MAX_BUCKETS).min(MAX_BUCKETS);
        if needed > len {
            self.grow((len * 2).max(needed).min(MAX_BUCKETS));
        }
        let len = self.buckets.len() as i64;
        let gap = sec - self.head_sec;
        if gap >= len {
            self.buckets.fill(0);
        } else {
            for s in self.head_sec + 1..=sec {
                let slot = self.slot(s);
                self.buckets[slot] = 0;
            }
        }
        self.head_sec = sec;
        self.head_slot = self.slot(sec) as u32;
    }

    fn grow(&mut self, new_len: usize) {
        let mut grown = vec![0u32; new_len];
        let old_len = self.buckets.len() as i64;
        for s in (self.head_sec - old_len + 1).max(self.first_sec)..=self.head_sec {
            grown[s.rem_euclid(new_len as i64) as usize] = self.buckets[self.slot(s)];
        }
        self.buckets = grown;
        self.head_slot = self.slot(self.head_sec) as u32;
    }

    /// Bytes in the windows of [`WINDOWS_SECS`] at `now_sec`: element `i` is the sum over
    /// seconds `[now_sec - WINDOWS_SECS[i], now_sec - 1]`.
    pub fn window_bytes(&self, now_sec: i64) -> [u64; 4] {
        let mut sums = [0u64; 4];
        let len = self.buckets.len() as i64;
        let newest = (now_sec - 1).min(self.head_sec);
        let oldest = (now_sec - MAX_WINDOW_SECS as i64)
            .max(self.head_sec - len + 1)
            .max(self.first_sec);
        let mut running = 0u64;
        let mut w = 0;
        let mut s = newest;
        while s >= oldest {
            let age = now_sec - s; // 1 ..= MAX_WINDOW_SECS
            while w < 4 && age > WINDOWS_SECS[w] {
                sums[w] = running;
                w += 1;
            }
            running += u64::from(self.bytes_at(s));
            s -= 1;
        }
        for sum in sums.iter_mut().skip(w) {
            *sum = running;
        }
        sums
    }

    /// The bytes of second `sec`: 0 for a second before the flow, after the head, or no
    /// longer in the ring.
    pub fn second(&self, sec: i64) -> u64 {
        let len = self.buckets.len() as i64;
        if sec < self.first_sec || sec > self.head_sec || self.head_sec - sec >= len {
            0
        } else {
            u64::from(self.bytes_at(sec))
        }
    }

    /// The bytes of second `s`, which the ring holds.
    #[inline]
    fn bytes_at(&self, s: i64) -> u32 {
        if s == self.head_sec {
            self.head_bytes
        } else {
            self.buckets[self.slot(s)]
        }
    }

    /// The divisor of each window at `now_sec`: `min(W, now_sec - first_sec)` seconds.
    pub fn window_secs(&self, now_sec: i64) -> [i64; 4] {
        let age = (now_sec - self.first_sec).max(0);
        WINDOWS_SECS.map(|w| w.min(age))
    }

    /// The rates in kbps (1000 bits/s) of each window of [`WINDOWS_SECS`] at `now_sec`.
    pub fn kbps(&self, now_sec: i64) -> [f64; 4] {
        let bytes = self.window_bytes(now_sec);
        let secs = self.window_secs(now_sec);
        let mut out = [0.0; 4];
        for i in 0..4 {
            if secs[i] > 0 {
                out[i] = bytes[i] as f64 * 8.0 / secs[i] as f64 / 1000.0;
            }
        }
        out
    }

    /// Heap bytes held by the ring.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: sum by brute force over a list of (second, bytes).
    fn brute(events: &[(i64, u32)], now_sec: i64) -> [u64; 4] {
        WINDOWS_SECS.map(|w| {
            events
                .iter()
                .filter(|(s, _)| *s >= now_sec - w && *s < now_sec)
                .map(|(_, b)| u64::from(*b))
                .sum()
        })
    }

    #[test]
    fn matches_brute_force_with_growth_and_gaps() {
        let mut w = SecondWindows::new(1000);
        let mut events = Vec::new();
        let mut sec = 1000;
        let mut x: u64 = 12345;
        for i in 0..3000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // mostly small steps, sometimes long gaps
            sec += match (x >> 33) % 100 {
                0 => 700,
                1..=3 => 37,
                4..=40 => 1,
                _ => 0,
            };
            let bytes = ((x >> 40) % 5000) as u32;
            w.add(sec, bytes);
            events.push((sec, bytes));
            if i % 7 == 0 {
                for now in [sec, sec + 1, sec + 5, sec + 61, sec + 599, sec + 601] {
                    assert_eq!(w.window_bytes(now), brute(&events, now), "now {now}");
                }
            }
        }
        assert!(w.heap_bytes() <= MAX_BUCKETS * 4);
    }

    #[test]
    fn short_flow_rates_use_its_age() {
        let mut w = SecondWindows::new(0);
        for s in 0..20 {
            w.add(s, 125_000);
        }
        assert_eq!(w.kbps(20), [1000.0; 4]);
        // one second later the last second is empty: 10 s window holds 9 full seconds
        assert_eq!(w.kbps(21)[0], 900.0);
        assert_eq!(w.kbps(0), [0.0; 4]);
    }
}
