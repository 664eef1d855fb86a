//! Number formatting shared by the panels, so every panel writes rates, latencies and sizes alike.

/// Requests per second, with fewer decimals as the number grows so columns stay narrow.
pub fn rate(per_s: f64) -> String {
    if !per_s.is_finite() {
        return "–".to_string();
    }
    if per_s >= 10_000.0 {
        format!("{:.1}k/s", per_s / 1000.0)
    } else if per_s >= 100.0 {
        format!("{per_s:.0}/s")
    } else {
        format!("{per_s:.1}/s")
    }
}

/// A latency in milliseconds; sub-millisecond values keep two decimals.
pub fn ms(value: f64) -> String {
    if !value.is_finite() {
        "–".to_string()
    } else if value >= 1000.0 {
        format!("{:.2}s", value / 1000.0)
    } else if value >= 100.0 {
        format!("{value:.0}ms")
    } else if value >= 1.0 {
        format!("{value:.1}ms")
    } else {
        format!("{value:.2}ms")
    }
}

/// A server-side time in microseconds, shown in the unit that keeps it short.
pub fn us(value: f64) -> String {
    if value >= 1000.0 {
        ms(value / 1000.0)
    } else {
        format!("{value:.0}µs")
    }
}

pub fn gib(bytes: f64) -> String {
    let g = bytes / (1024.0 * 1024.0 * 1024.0);
    if g >= 10.0 {
        format!("{g:.0}")
    } else {
        format!("{g:.1}")
    }
}

/// Memory with a unit chosen for the size (model footprints are often well under a GiB).
pub fn bytes(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{} GiB", gib(b))
    } else {
        format!("{:.0} MiB", b / (1024.0 * 1024.0))
    }
}

pub fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (99.95..100.0).contains(&p) {
        // Never round a miss up to a perfect score.
        "99.9%".to_string()
    } else {
        format!("{p:.1}%")
    }
}

/// `hh:mm:ss` for a run's elapsed time.
pub fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A chart window or replay jump in the largest whole unit.
pub fn span(seconds: f64) -> String {
    if seconds >= 60.0 && (seconds % 60.0).abs() < 1e-9 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{seconds:.0} s")
    }
}

pub fn usd(value: f64) -> String {
    if value >= 100.0 {
        format!("${value:.0}")
    } else if value >= 10.0 {
        format!("${value:.1}")
    } else {
        format!("${value:.3}")
    }
}

/// Cuts a label to `width` characters with an ellipsis, counting characters rather than bytes.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_never_rounds_a_miss_up_to_perfect() {
        assert_eq!(percent(0.99996), "99.9%");
        assert_eq!(percent(1.0), "100.0%");
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        assert_eq!(truncate("µµµµ", 3), "µµ…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
