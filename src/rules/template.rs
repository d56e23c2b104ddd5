//! Kill message templates: `{user}`, `{stream_bitrate_mbps}`, `{rule}`; `{{` and `}}` for braces.

use super::vars::{self, Vars};

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Var(&'static str),
    Mbps(&'static str),
    Rule,
}

/// A checked message template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// A template error with the byte offset in the template where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
}

impl Template {
    /// Parses a template; every placeholder must name a variable, an `_mbps` form of a
    /// rate, or `rule`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let rest = &text[i + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(TemplateError {
                            offset: i,
                            message: "'{' is never closed (write {{ for a literal brace)".into(),
                        });
                    };
                    let name = rest[..end].trim();
                    let piece = placeholder(name).ok_or_else(|| TemplateError {
                        offset: i,
                        message: format!("unknown placeholder {{{name}}}{}", suggest(name)),
                    })?;
                    if !lit.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut lit)));
                    }
                    pieces.push(piece);
                    for _ in 0..rest[..=end].chars().count() {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(TemplateError {
                        offset: i,
                        message: "'}' without '{' (write }} for a literal brace)".into(),
                    });
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Text(lit));
        }
        Ok(Self { pieces })
    }

    /// A template that is only text.
    pub fn literal(text: &str) -> Self {
        Self {
            pieces: vec![Piece::Text(text.to_string())],
        }
    }

    /// Renders with the stream's values; unknown values read "unknown".
    pub fn render(&self, rule: &str, v: &Vars) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Rule => out.push_str(rule),
                Piece::Var(name) => match v.get(name) {
                    Some(value) => out.push_str(&value.to_string()),
                    None => out.push_str("unknown"),
                },
                Piece::Mbps(name) => match v.get(name) {
                    Some(vars::Value::Number(kbps)) => {
                        out.push_str(&format!("{:.1}", kbps / 1000.0))
                    }
                    _ => out.push_str("unknown"),
                },
            }
        }
        out
    }
}

fn placeholder(name: &str) -> Option<Piece> {
    if name == "rule" {
        return Some(Piece::Rule);
    }
    if let Some((n, _)) = vars::lookup(name) {
        return Some(Piece::Var(n));
    }
    // `{stream_bitrate_mbps}`, and `{measured_mbps_1m}` for `measured_kbps_1m`.
    let rate = name.strip_suffix("_mbps").map(str::to_string).or_else(|| {
        name.strip_prefix("measured_mbps_")
            .map(|w| format!("measured_kbps_{w}"))
    })?;
    vars::RATES
        .iter()
        .find(|r| **r == rate)
        .map(|r| Piece::Mbps(r))
}

fn suggest(name: &str) -> String {
    let close = vars::VARIABLES
        .iter()
        .map(|(n, _)| *n)
        .chain(["rule"])
        .find(|n| n.contains(name) || (name.len() > 3 && name.contains(n)));
    match close {
        Some(n) => format!(" (did you mean {{{n}}}?)"),
        None => " (placeholders are rule variables such as {user}, {title}, {stream_bitrate_mbps}, or {rule})".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::vars::Value;

    #[test]
    fn renders_values_mbps_and_rule() {
        let t = Template::parse(
            "{user}: {stream_bitrate_mbps} Mbps {{ok}} by {rule}, {measured_mbps_1m}",
        )
        .unwrap();
        let mut v = Vars::default();
        v.set("user", Value::Text("bob".into()));
        v.set("stream_bitrate", Value::Number(20_231.0));
        assert_eq!(t.render("r1", &v), "bob: 20.2 Mbps {ok} by r1, unknown");
    }

    #[test]
    fn unknown_placeholders_are_errors() {
        let e = Template::parse("hi {usr}").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(e.message.contains("{usr}"), "{}", e.message);
        assert!(Template::parse("open {user").is_err());
        assert!(Template::parse("close }").is_err());
        assert!(Template::parse("{title_mbps}").is_err());
    }
}
