//! Mixed whole and decimal arithmetic in rule conditions.
//!
//! The cel crate implements arithmetic per type: `int * double` has no overload, so
//! `stream_bitrate * 2 < bandwidth * 1.9` would fail at run time. streamwarden gives every
//! numeric variable as a double, and rewrites every whole-number literal of a condition
//! into a decimal one (`2` → `2.0`) before compiling it. Comparisons between ints (from
//! `size()`) and doubles are supported by cel itself.

/// Rewrites the decimal integer literals of a CEL expression into double literals,
/// leaving strings, identifiers, hex and unsigned literals alone.
pub fn decimalise(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len() + 8);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        // String and bytes literals, with their r/b prefixes.
        if let Some(end) = string_literal_end(b, i) {
            out.push_str(&src[i..end]);
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push_str(&src[start..i]);
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            if c == b'0' && i + 1 < b.len() && (b[i + 1] == b'x' || b[i + 1] == b'X') {
                i += 2;
                while i < b.len() && b[i].is_ascii_hexdigit() {
                    i += 1;
                }
                if i < b.len() && (b[i] == b'u' || b[i] == b'U') {
                    i += 1;
                }
                out.push_str(&src[start..i]);
                continue;
            }
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let mut decimal = false;
            if i + 1 < b.len() && b[i] == b'.' && b[i + 1].is_ascii_digit() {
                decimal = true;
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                let mut j = i + 1;
                if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
                    j += 1;
                }
                if j < b.len() && b[j].is_ascii_digit() {
                    decimal = true;
                    i = j;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let unsigned = i < b.len() && (b[i] == b'u' || b[i] == b'U');
            if unsigned {
                i += 1;
            }
            out.push_str(&src[start..i]);
            if !decimal && !unsigned {
                out.push_str(".0");
            }
            continue;
        }
        // Any other character, copied whole (it may be multi-byte).
        let ch_len = src[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&src[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// When a string or bytes literal (with its r/b prefixes) starts at byte `i`, the byte
/// just past its closing quote, or the end of `b` when it is not closed.
pub(crate) fn string_literal_end(b: &[u8], mut i: usize) -> Option<usize> {
    let c = *b.get(i)?;
    if !(c == b'"' || c == b'\'' || (is_prefix(c) && starts_string(b, i))) {
        return None;
    }
    let mut raw = false;
    while i < b.len() && is_prefix(b[i]) {
        raw |= b[i] == b'r' || b[i] == b'R';
        i += 1;
    }
    let quote = *b.get(i)?;
    let triple = b.len() >= i + 3 && b[i + 1] == quote && b[i + 2] == quote;
    i += if triple { 3 } else { 1 };
    while i < b.len() {
        if !raw && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if !triple {
                i += 1;
                break;
            }
            if b.len() >= i + 3 && b[i + 1] == quote && b[i + 2] == quote {
                i += 3;
                break;
            }
        }
        i += 1;
    }
    Some(i.min(b.len()))
}

fn is_prefix(c: u8) -> bool {
    matches!(c, b'r' | b'R' | b'b' | b'B')
}

/// Whether a string literal with one or two r/b prefix letters starts at `i`.
fn starts_string(b: &[u8], i: usize) -> bool {
    // Only at the start of a token: not inside an identifier.
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return false;
    }
    let mut j = i;
    while j < b.len() && j < i + 2 && is_prefix(b[j]) {
        j += 1;
    }
    j < b.len() && (b[j] == b'"' || b[j] == b'\'')
}

#[cfg(test)]
mod tests {
    use super::decimalise;

    #[test]
    fn whole_literals_become_decimal() {
        assert_eq!(decimalise("a * 2 < b * 1.9"), "a * 2.0 < b * 1.9");
        assert_eq!(decimalise("x > 10 && y == 0"), "x > 10.0 && y == 0.0");
        assert_eq!(decimalise("-5 + a"), "-5.0 + a");
    }

    #[test]
    fn other_tokens_are_untouched() {
        assert_eq!(decimalise("1e3 + 2.5 + 0x1F + 3u"), "1e3 + 2.5 + 0x1F + 3u");
        assert_eq!(
            decimalise("measured_kbps_10s > 1"),
            "measured_kbps_10s > 1.0"
        );
        assert_eq!(
            decimalise(r#"title == "Top 10" || t == 'x 2'"#),
            r#"title == "Top 10" || t == 'x 2'"#
        );
        assert_eq!(decimalise(r#"r"a\" 2 ""#), r#"r"a\" 2.0 ""#);
        assert_eq!(
            decimalise(r#"t == """ 5 " """ && 5"#),
            r#"t == """ 5 " """ && 5.0"#
        );
        assert_eq!(decimalise("tab2 == b'7'"), "tab2 == b'7'");
        assert_eq!(decimalise("'é' + 3"), "'é' + 3.0");
    }
}
