//! What a `throttle` rule asks for: a rate, when to lift it, and what to do when the stream
//! still offends once throttled (its escalation, compiled as a rule of its own).

use std::time::Duration;

/// The settings of a rule whose action is `throttle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSpec {
    /// The rate the stream's connections are limited to, in bits per second.
    pub rate_bps: u64,
    /// The throttle is lifted after this long even if the stream goes on.
    pub release_after: Option<Duration>,
}

impl ThrottleSpec {
    /// The rate in bytes per second, as the kernel takes it.
    pub fn bytes_per_sec(&self) -> u64 {
        self.rate_bps / 8
    }

    /// The rate as people write it ("5 Mbps", "800 kbps").
    pub fn rate_text(&self) -> String {
        format_rate(self.rate_bps)
    }
}

/// The lowest throttle rate: below it a video player cannot play anything.
pub const MIN_RATE_BPS: u64 = 64_000;
/// The highest throttle rate (the kernel's 32-bit bytes-per-second rate).
pub const MAX_RATE_BPS: u64 = 32_000_000_000;

/// Reads a rate such as "5 Mbps", "5Mbps", "800 kbps", "1.5 Gbps" (decimal units, bits
/// per second) into bits per second.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit = unit.trim();
    let scale = match unit.to_ascii_lowercase().as_str() {
        "kbps" | "kbit/s" | "kbit" => 1e3,
        "mbps" | "mbit/s" | "mbit" => 1e6,
        "gbps" | "gbit/s" | "gbit" => 1e9,
        _ => {
            return Err(format!(
                "{text:?} is not a rate such as \"5 Mbps\" or \"800 kbps\" (units: kbps, Mbps, Gbps)"
            ));
        }
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate such as \"5 Mbps\" or \"800 kbps\""))?;
    let bps = n * scale;
    if !bps.is_finite() || bps < MIN_RATE_BPS as f64 {
        return Err(format!(
            "{text:?} is below the lowest throttle rate, {}",
            format_rate(MIN_RATE_BPS)
        ));
    }
    if bps > MAX_RATE_BPS as f64 {
        return Err(format!(
            "{text:?} is above the highest throttle rate, {}",
            format_rate(MAX_RATE_BPS)
        ));
    }
    Ok(bps.round() as u64)
}

/// Bits per second as people write them: "5 Mbps", "800 kbps", "1.5 Mbps".
pub fn format_rate(bps: u64) -> String {
    let (value, unit) = if bps >= 1_000_000_000 {
        (bps as f64 / 1e9, "Gbps")
    } else if bps >= 1_000_000 {
        (bps as f64 / 1e6, "Mbps")
    } else {
        (bps as f64 / 1e3, "kbps")
    };
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {unit}")
}

/// The name of the rule an `escalate` table becomes.
pub fn escalation_name(parent: &str) -> String {
    format!("{parent}/escalate")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("5 Mbps"), Ok(5_000_000));
        assert_eq!(parse_rate("5Mbps"), Ok(5_000_000));
        assert_eq!(parse_rate(" 800 kbps "), Ok(800_000));
        assert_eq!(parse_rate("1.5 Gbps"), Ok(1_500_000_000));
        assert_eq!(parse_rate("2.5 mbit/s"), Ok(2_500_000));
        assert!(parse_rate("5").unwrap_err().contains("units"));
        assert!(parse_rate("5 MB/s").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10 kbps").unwrap_err().contains("lowest"));
        assert!(parse_rate("40 Gbps").unwrap_err().contains("highest"));
        assert_eq!(format_rate(5_000_000), "5 Mbps");
        assert_eq!(format_rate(1_500_000), "1.5 Mbps");
        assert_eq!(format_rate(800_000), "800 kbps");
    }
}
