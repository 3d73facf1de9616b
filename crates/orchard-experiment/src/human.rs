//! Bytes and durations as people read them, in plans and progress lines.

/// `512 B`, `12.3 MiB`, `4.1 GiB`.
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `42s`, `2m10s`, `3h05m`, `2d04h`: two units at most, rounded down.
pub fn duration_text(seconds: f64) -> String {
    let s = if seconds.is_finite() && seconds > 0.0 { seconds.round() as u64 } else { 0 };
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(bytes_text(512), "512 B");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(300 << 20), "300 MiB");
        assert_eq!(bytes_text(5 << 30), "5.0 GiB");
        assert_eq!(duration_text(42.4), "42s");
        assert_eq!(duration_text(130.0), "2m10s");
        assert_eq!(duration_text(3.0 * 3600.0 + 5.0 * 60.0 + 59.0), "3h05m");
        assert_eq!(duration_text(2.0 * 86_400.0 + 4.0 * 3600.0), "2d04h");
        assert_eq!(duration_text(f64::NAN), "0s");
    }
}
