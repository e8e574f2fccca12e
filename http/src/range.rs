//! The HTTP `Range` request header (RFC 9110 §14), as far as a NAR server
//! needs it: one `bytes=` range.
//!
//! ```text
//! Range = "bytes=" ( first "-" [ last ] | "-" suffix-length )
//! ```
//! A header that is not one well-formed byte range (another unit, several
//! ranges, garbage) is ignored and the whole NAR is sent, as the RFC
//! allows; a well-formed range that lies past the end is unsatisfiable
//! (416).

use crate::nar::ByteRange;

/// What a `Range` header asks of a body of some length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything with 200.
    Full,
    /// Send this part with 206.
    Partial(ByteRange),
    /// The range lies outside the body: 416.
    Unsatisfiable,
}

/// Interpret the `Range` header `value` for a body of `total` bytes.
pub fn parse_range(value: Option<&str>, total: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if first.is_empty() {
        // Suffix: the last N bytes.
        let Some(n) = digits(last).then(|| last.parse::<u64>().ok()).flatten() else {
            return RangeRequest::Full;
        };
        if n == 0 || total == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Partial(ByteRange {
            start: total.saturating_sub(n),
            end: total,
        });
    }
    let Some(start) = digits(first).then(|| first.parse::<u64>().ok()).flatten() else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        total
    } else {
        match digits(last).then(|| last.parse::<u64>().ok()).flatten() {
            Some(l) if l >= start => l.saturating_add(1).min(total),
            _ => return RangeRequest::Full,
        }
    };
    if start >= total {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(ByteRange { start, end })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start, end })
    }

    #[test]
    fn parses_single_ranges() {
        assert_eq!(parse_range(None, 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), part(0, 10));
        assert_eq!(parse_range(Some("bytes=90-"), 100), part(90, 100));
        assert_eq!(parse_range(Some("bytes=90-1000"), 100), part(90, 100));
        assert_eq!(parse_range(Some("bytes=-10"), 100), part(90, 100));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), part(0, 100));
        assert_eq!(parse_range(Some("bytes=99-99"), 100), part(99, 100));
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=-0"), 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=0-"), 0),
            RangeRequest::Unsatisfiable
        );
        for ignored in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
        ] {
            assert_eq!(
                parse_range(Some(ignored), 100),
                RangeRequest::Full,
                "{ignored}"
            );
        }
    }
}
