//! The usual slips in a condition, each with one sentence saying what to write instead:
//! `=` for `==`, typographic quotes pasted from a web page, a value left unquoted, a rate
//! written with its unit (`> 5 Mbps`).

use super::numeric::string_literal_end;

/// A slip found before parsing: a byte offset into the condition and what to write.
pub fn before_parsing(when: &str) -> Option<(usize, String)> {
    if let Some((at, c)) = when.char_indices().find(|(_, c)| {
        matches!(
            c,
            '\u{201c}'
                | '\u{201d}'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201e}'
                | '\u{00ab}'
                | '\u{00bb}'
        )
    }) {
        return Some((
            at,
            format!(
                "`{c}` is a typographic quote, as pasted from a web page or a word processor: write text in straight quotes, \"like this\""
            ),
        ));
    }
    let b = when.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if let Some(end) = string_literal_end(b, i) {
            i = end;
            continue;
        }
        if let Some(slip) = rate_with_unit(when, i) {
            return Some((i, slip));
        }
        if b[i] == b'=' {
            let before = i.checked_sub(1).map(|j| b[j]);
            let after = b.get(i + 1).copied();
            let paired = matches!(before, Some(b'=' | b'!' | b'<' | b'>')) || after == Some(b'=');
            if !paired {
                return Some((
                    i,
                    "a single `=` assigns, and a condition cannot: write `==` to compare (state == \"paused\")".into(),
                ));
            }
            if after == Some(b'=') {
                i += 2;
                continue;
            }
        }
        i += 1;
    }
    None
}

/// A number at byte `i` (its start) followed by a rate unit, as in `measured_kbps_1m > 5 Mbps`:
/// the rate-variables are numbers in kbps, so the hint gives the number to write.
fn rate_with_unit(when: &str, i: usize) -> Option<String> {
    let b = when.as_bytes();
    let starts_number = b[i].is_ascii_digit()
        && i.checked_sub(1)
            .is_none_or(|j| !(b[j].is_ascii_alphanumeric() || b[j] == b'_' || b[j] == b'.'));
    if !starts_number {
        return None;
    }
    let digits = when[i..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(when.len(), |n| i + n);
    let word_start = digits + (when[digits..].len() - when[digits..].trim_start().len());
    let word_end = when[word_start..]
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '/'))
        .map_or(when.len(), |n| word_start + n);
    let written = &when[i..word_end];
    if word_end == word_start {
        return None;
    }
    let bps = super::rate::parse_rate(written).ok()?;
    Some(format!(
        "`{written}`: a rate is compared as a number of kbps (the measured_kbps_* and *_bitrate variables are in kbps): write {}",
        bps / 1000
    ))
}

/// When an unknown name is a value a variable can take (`state == paused`): the hint to
/// quote it.
pub fn unquoted(name: &str) -> Option<String> {
    let var = super::vars::VARIABLES.iter().map(|(v, _)| *v).find(|v| {
        super::types::known_values(v)
            .is_some_and(|k| k.iter().any(|x| x.eq_ignore_ascii_case(name)))
    })?;
    Some(format!(
        ": `{name}` is not a variable but a value of {var}: put it in quotes, \"{name}\""
    ))
}

/// The variable a mistyped name most likely meant.
pub fn suggest(var: &str) -> String {
    let close = super::vars::VARIABLES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| edit_distance(n, var) <= 2 || n.contains(var) || var.contains(n));
    match close {
        Some(n) => format!(": did you mean `{n}`?"),
        None => ": see the rule reference in the README for the variables".to_string(),
    }
}

/// Levenshtein distance, for the nearest name or value.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slips_are_found_where_they_are() {
        assert_eq!(before_parsing(r#"state = "paused""#).map(|s| s.0), Some(6));
        let (at, m) = before_parsing("measured_kbps_1m > 5 Mbps").unwrap();
        assert_eq!(at, 19);
        assert!(m.ends_with("write 5000"), "{m}");
        assert!(
            before_parsing("measured_kbps_1m > 1.5Gbps")
                .unwrap()
                .1
                .ends_with("write 1500000")
        );
        // Not a unit, part of a name, or inside a string: no slip.
        assert!(before_parsing("measured_kbps_1m > 5000 && user_gb_7d > 2").is_none());
        assert!(before_parsing(r#"title == "5 Mbps" && x2mbps > 1"#).is_none());
        assert!(before_parsing(r#"state == "a=b" && x >= 1 && y != 2 && z <= 3"#).is_none());
        let (at, m) = before_parsing("state == \u{201c}paused\u{201d}").unwrap();
        assert_eq!(at, 9);
        assert!(m.contains("straight quotes"), "{m}");
        assert!(unquoted("paused").unwrap().contains("\"paused\""));
        assert!(unquoted("bob").is_none());
    }
}
