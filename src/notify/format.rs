//! What each service is sent, in its own format, from audit records: one record, or a
//! burst folded into one summary. Everything from outside (Plex's names and titles, the
//! rule's message, reasons) is escaped for the format it goes into, so a user called
//! "@everyone" or "<!channel>" pings no one and nothing breaks a line or a header.

use crate::state::{AuditAction, AuditAction as A, Mode};

use super::style::{colour, gotify_priority, ntfy_priority, ntfy_tag, severity, slack_emoji};
use serde_json::{Value, json};

use crate::config::NotifyKind;
use crate::enforce::Record;
use crate::rules::{Value as Var, Vars};

use super::Target;

/// One HTTP POST: its headers and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    Text(String),
}

/// How many events a folded summary lists before "and N more".
const SUMMARY_LINES: usize = 15;

/// The payload telling `target` of one record.
pub fn single(target: &Target, r: &Record) -> Outgoing {
    let f = Facts::of(target, r);
    match target.kind {
        NotifyKind::Discord => json_body(discord(&f)),
        NotifyKind::Slack => json_body(slack(&f)),
        NotifyKind::Ntfy => ntfy(&f.title, &plain_lines(&f), f.action),
        NotifyKind::Gotify => gotify(&f.title, &plain_lines(&f), f.action),
        NotifyKind::Telegram => telegram(target, &f.title, &plain_lines(&f)),
        NotifyKind::Webhook => json_body(serde_json::to_value(r).unwrap_or(Value::Null)),
    }
}

/// The payload telling `target` of several records at once (a burst past its rate).
pub fn folded(target: &Target, records: &[Record]) -> Outgoing {
    let facts: Vec<Facts> = records.iter().map(|r| Facts::of(target, r)).collect();
    let worst = facts
        .iter()
        .map(|f| f.action)
        .max_by_key(|a| severity(*a))
        .unwrap_or(AuditAction::Log);
    let title = summary_title(&facts);
    let mut lines: Vec<String> = facts.iter().take(SUMMARY_LINES).map(Facts::line).collect();
    if facts.len() > SUMMARY_LINES {
        lines.push(format!(
            "… and {} more (the audit log has them all)",
            facts.len() - SUMMARY_LINES
        ));
    }
    let ts = records.last().map(|r| r.ts.clone()).unwrap_or_default();
    let footer = footer(facts.first().map_or(Mode::Enforce, |f| f.mode));
    match target.kind {
        NotifyKind::Discord => {
            let text: Vec<String> = lines.iter().map(|l| discord_escape(l)).collect();
            json_body(discord_body(
                &title,
                &text.join("\n"),
                worst,
                None,
                &footer,
                &ts,
            ))
        }
        NotifyKind::Slack => {
            let text: Vec<String> = lines.iter().map(|l| slack_escape(l)).collect();
            json_body(slack_body(
                &slack_escape(&title),
                &format!("{} {title}", slack_emoji(worst)),
                vec![mrkdwn(&text.join("\n"))],
                &slack_escape(&format!("{footer} · {ts}")),
            ))
        }
        NotifyKind::Ntfy => ntfy(&title, &lines.join("\n"), worst),
        NotifyKind::Gotify => gotify(&title, &lines.join("\n"), worst),
        NotifyKind::Telegram => telegram(target, &title, &lines.join("\n")),
        NotifyKind::Webhook => json_body(json!({
            "summary": title,
            "count": records.len(),
            "records": records,
        })),
    }
}

fn json_body(v: Value) -> Outgoing {
    Outgoing {
        headers: vec![("content-type", "application/json".into())],
        body: Body::Json(v),
    }
}

/// What a notification says about one record, as text not yet escaped for a format.
struct Facts<'a> {
    action: AuditAction,
    mode: Mode,
    ts: &'a str,
    title: String,
    text: String,
    user: String,
    media: String,
    player: String,
    measured: String,
    reported: String,
    rule: &'a str,
    message: &'a str,
    reason: Option<&'a str>,
}

impl<'a> Facts<'a> {
    fn of(target: &Target, r: &'a Record) -> Self {
        let vars = vars_of(r);
        let user = r.user.clone().unwrap_or_else(|| "unknown user".into());
        let media = r.title.clone().unwrap_or_else(|| "a stream".into());
        let mut title = match &target.title {
            Some(t) => t.render(&r.rule, &vars),
            None => default_title(r.action, &user, &r.rule),
        };
        if r.mode == Mode::Test {
            title = format!("Test: {title}");
        }
        let text = match &target.message {
            Some(t) => t.render(&r.rule, &vars),
            None if r.action == AuditAction::RiskyReload => r.message.clone(),
            None if r.mode == Mode::Test => {
                "This is a test from streamwarden notify-test: nothing was killed.".into()
            }
            None => default_text(
                r.action,
                &media,
                &r.rule,
                r.rate.as_deref().unwrap_or("a lower rate"),
            ),
        };
        Facts {
            action: r.action,
            mode: r.mode,
            ts: &r.ts,
            title: one_line(&title),
            text,
            user,
            media,
            player: text_var(&vars, "player").unwrap_or_else(|| "unknown player".into()),
            measured: measured(&vars, r.estimated),
            reported: reported(&vars),
            rule: &r.rule,
            message: &r.message,
            reason: r.reason.as_deref(),
        }
    }

    fn message_label(&self) -> &'static str {
        match self.action {
            A::Kill | A::Zombie | A::TranscodeStopped => "Message sent",
            A::WouldKill
            | A::Log
            | A::KillFailed
            | A::KillSkipped
            | A::AlreadyKilled
            | A::Throttle
            | A::WouldThrottle
            | A::ThrottleFailed
            | A::ThrottleSkipped
            | A::Unthrottle
            | A::RiskyReload
            | A::Warn => "Message (not sent)",
        }
    }

    /// One line of a folded summary.
    fn line(&self) -> String {
        let mut l = format!(
            "{}: {} · {} · rule {}",
            self.action,
            one_line(&self.user),
            one_line(&self.media),
            one_line(self.rule)
        );
        if let Some(r) = self.reason {
            l.push_str(&format!(" ({})", one_line(r)));
        }
        l
    }
}

/// The stream's variables, with the record's own fields where the variables lack them.
fn vars_of(r: &Record) -> Vars {
    let mut v = r.vars.clone();
    for (name, value) in [
        ("user", &r.user),
        ("username", &r.user),
        ("address", &r.address),
    ] {
        if v.get(name).is_none()
            && let Some(x) = value
        {
            v.set(name, Var::Text(x.clone()));
        }
    }
    for (name, value) in &r.values {
        let Some((name, _)) = crate::rules::vars::lookup(name) else {
            continue;
        };
        let value = match value {
            Value::String(s) => Var::Text(s.clone()),
            Value::Bool(b) => Var::Flag(*b),
            Value::Number(n) => match n.as_f64() {
                Some(n) => Var::Number(n),
                None => continue,
            },
            _ => continue,
        };
        if v.get(name).is_none() {
            v.set(name, value);
        }
    }
    v
}

fn text_var(v: &Vars, name: &str) -> Option<String> {
    v.get(name)
        .map(ToString::to_string)
        .filter(|s| !s.is_empty())
}

fn mbps(v: &Vars, name: &str) -> Option<String> {
    match v.get(name) {
        Some(Var::Number(kbps)) => Some(format!("{:.1} Mbps", kbps / 1000.0)),
        _ => None,
    }
}

fn measured(v: &Vars, estimated: bool) -> String {
    let parts: Vec<String> = [("measured_kbps_10s", "10 s"), ("measured_kbps_1m", "1 min")]
        .iter()
        .filter_map(|(name, window)| mbps(v, name).map(|m| format!("{m} over {window}")))
        .collect();
    if parts.is_empty() {
        return "not measured".into();
    }
    let mut s = parts.join(", ");
    if estimated {
        s.push_str(" (estimated: several streams share the address)");
    }
    s
}

fn reported(v: &Vars) -> String {
    let parts: Vec<String> = [
        ("stream_bitrate", "stream"),
        ("source_bitrate", "file"),
        ("bandwidth", "reserved"),
    ]
    .iter()
    .filter_map(|(name, what)| mbps(v, name).map(|m| format!("{what} {m}")))
    .collect();
    if parts.is_empty() {
        "not reported".into()
    } else {
        parts.join(", ")
    }
}

fn default_title(action: AuditAction, user: &str, rule: &str) -> String {
    match action {
        A::Kill => format!("Killed {user}'s stream"),
        A::WouldKill => format!("Dry run: would kill {user}'s stream"),
        A::KillFailed => format!("Could not kill {user}'s stream"),
        A::KillSkipped => format!("Did not kill {user}'s stream"),
        A::AlreadyKilled => format!("{user}'s stream was already killed"),
        A::Zombie => format!("{user}'s stream survived its kill"),
        A::TranscodeStopped => format!("Stopped the transcode of {user}'s stream"),
        A::Log => format!("Rule {rule} matched {user}'s stream"),
        A::Throttle => format!("Throttled {user}'s stream"),
        A::WouldThrottle => format!("Dry run: would throttle {user}'s stream"),
        A::ThrottleFailed => format!("Could not throttle {user}'s stream"),
        A::ThrottleSkipped => format!("Did not throttle {user}'s stream"),
        A::Unthrottle => format!("Lifted the throttle on {user}'s stream"),
        A::RiskyReload => "The configuration was reloaded: check what it changed".to_string(),
        A::Warn => format!("Rule {rule} is about to act on {user}'s stream"),
    }
}

fn default_text(action: AuditAction, media: &str, rule: &str, rate: &str) -> String {
    match action {
        A::Throttle => format!("Rule {rule} slowed {media} down to {rate}."),
        A::WouldThrottle => {
            format!(
                "Rule {rule} would have slowed {media} down to {rate} (dry run: nothing was touched)."
            )
        }
        A::ThrottleFailed => format!("Rule {rule} could not slow {media} down to {rate}."),
        A::ThrottleSkipped => format!("Rule {rule} matched {media}, which was not slowed down."),
        A::Unthrottle => format!("{media} is no longer slowed down to {rate} (rule {rule})."),
        A::Kill => format!("Rule {rule} stopped {media}."),
        A::WouldKill => {
            format!("Rule {rule} would have stopped {media} (dry run: nothing was sent).")
        }
        A::KillFailed => format!("Rule {rule} could not stop {media}."),
        A::KillSkipped => format!("Rule {rule} matched {media}, which was not stopped."),
        A::AlreadyKilled => format!("{media} was already stopped (rule {rule})."),
        A::Zombie => format!("{media} is still listed after rule {rule} stopped it."),
        A::TranscodeStopped => {
            format!("{media} was still listed after its kill: its transcode was stopped.")
        }
        A::Log => format!("Rule {rule} matched {media} (log only)."),
        A::RiskyReload => "A reload changed what protects streams.".to_string(),
        A::Warn => format!(
            "Rule {rule} holds for {media}: it acts when its sustain is over, unless the stream stops first."
        ),
    }
}

fn summary_title(facts: &[Facts]) -> String {
    let mut counts: Vec<(AuditAction, usize)> = Vec::new();
    for f in facts {
        match counts.iter_mut().find(|(a, _)| *a == f.action) {
            Some((_, n)) => *n += 1,
            None => counts.push((f.action, 1)),
        }
    }
    let parts: Vec<String> = counts.iter().map(|(a, n)| format!("{a} ×{n}")).collect();
    format!("{} events at once ({})", facts.len(), parts.join(", "))
}

fn footer(mode: Mode) -> String {
    match mode {
        Mode::DryRun => "streamwarden · dry run".into(),
        Mode::Test => "streamwarden · test".into(),
        Mode::Enforce => "streamwarden".into(),
    }
}

fn discord(f: &Facts) -> Value {
    let field = |name: &str, value: &str, inline: bool| {
        let v = discord_escape(value);
        json!({"name": name, "value": clip(if v.is_empty() { "-" } else { &v }, 1024), "inline": inline})
    };
    let mut fields = vec![
        field("User", &f.user, true),
        field("Title", &f.media, true),
        field("Player", &f.player, true),
        field("Measured", &f.measured, true),
        field("Reported by Plex", &f.reported, true),
        field("Rule", f.rule, true),
        field(f.message_label(), f.message, false),
    ];
    if let Some(r) = f.reason {
        fields.push(field("Reason", r, false));
    }
    discord_body(
        &f.title,
        &multi_line(&f.text, discord_escape),
        f.action,
        Some(fields),
        &footer(f.mode),
        f.ts,
    )
}

/// Discord's one payload: an embed with a title (escaped here), a description (escaped by
/// the caller), the action's colour, fields when given, a footer and a time.
fn discord_body(
    title: &str,
    description: &str,
    action: AuditAction,
    fields: Option<Vec<Value>>,
    footer: &str,
    ts: &str,
) -> Value {
    let mut embed = json!({
        "title": clip(&discord_escape(title), 256),
        "description": clip(description, 4000),
        "color": colour(action),
        "footer": {"text": footer},
        "timestamp": ts,
    });
    if let Some(fields) = fields {
        embed["fields"] = Value::Array(fields);
    }
    json!({
        "username": "streamwarden",
        "allowed_mentions": {"parse": []},
        "embeds": [embed],
    })
}

/// Slack's one payload: a fallback text, a header, sections and a context line (all
/// escaped by the caller but the header, which is plain text).
fn slack_body(fallback: &str, header: &str, sections: Vec<Value>, context: &str) -> Value {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(header, 150), "emoji": true}}),
    ];
    blocks.extend(sections);
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]}));
    json!({
        "text": clip(fallback, 3000),
        "blocks": blocks,
    })
}

/// A Slack section of (already escaped) mrkdwn text.
fn mrkdwn(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(text, 3000)}})
}

/// Gotify's one payload.
fn gotify(title: &str, message: &str, action: AuditAction) -> Outgoing {
    json_body(json!({
        "title": clip(title, 250),
        "message": clip(message, 4000),
        "priority": gotify_priority(action),
    }))
}

fn slack(f: &Facts) -> Value {
    let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": clip(&format!("*{name}*\n{}", slack_escape(value)), 2000)});
    let mut sections = vec![
        mrkdwn(&multi_line(&f.text, slack_escape)),
        json!({"type": "section", "fields": [
            field("User", &f.user),
            field("Title", &f.media),
            field("Player", &f.player),
            field("Measured", &f.measured),
            field("Reported by Plex", &f.reported),
            field("Rule", f.rule),
        ]}),
        mrkdwn(&format!(
            "*{}*\n{}",
            f.message_label(),
            slack_escape(f.message)
        )),
    ];
    if let Some(r) = f.reason {
        sections.push(mrkdwn(&format!("*Reason*\n{}", slack_escape(r))));
    }
    slack_body(
        &slack_escape(&format!("{}: {}", f.title, one_line(&f.text))),
        &format!("{} {}", slack_emoji(f.action), f.title),
        sections,
        &footer(f.mode),
    )
}

/// The lines of a plain-text notification (ntfy, Gotify, Telegram).
fn plain_lines(f: &Facts) -> String {
    let mut lines = vec![
        f.text.clone(),
        String::new(),
        format!("User: {}", one_line(&f.user)),
        format!("Title: {}", one_line(&f.media)),
        format!("Player: {}", one_line(&f.player)),
        format!("Measured: {}", f.measured),
        format!("Reported by Plex: {}", f.reported),
        format!("Rule: {}", one_line(f.rule)),
        format!("{}: {}", f.message_label(), one_line(f.message)),
    ];
    if let Some(r) = f.reason {
        lines.push(format!("Reason: {}", one_line(r)));
    }
    lines.join("\n")
}

fn ntfy(title: &str, body: &str, action: AuditAction) -> Outgoing {
    Outgoing {
        headers: vec![
            ("content-type", "text/plain; charset=utf-8".into()),
            ("title", header_text(&clip(title, 200))),
            ("tags", format!("{},streamwarden", ntfy_tag(action))),
            ("priority", ntfy_priority(action).to_string()),
        ],
        body: Body::Text(clip(body, 4000)),
    }
}

fn telegram(target: &Target, title: &str, body: &str) -> Outgoing {
    let chat = target.chat_id.clone().unwrap_or_default();
    let chat_id = match chat.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(chat),
    };
    json_body(json!({
        "chat_id": chat_id,
        "text": clip(&format!("{title}\n\n{body}"), 4000),
        "disable_web_page_preview": true,
    }))
}

/// A header's value: printable ASCII as it is, anything else as an RFC 2047 encoded word
/// (which ntfy decodes).
fn header_text(s: &str) -> String {
    let s = one_line(s);
    if s.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return s;
    }
    use base64::Engine;
    format!(
        "=?UTF-8?B?{}?=",
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    )
}

/// Outside text on one line: control characters and line separators escaped.
fn one_line(s: &str) -> String {
    crate::enforce::escape(s).into_owned()
}

/// Outside text that may keep its line breaks (a message template's), each line escaped
/// with `esc`.
fn multi_line(s: &str, esc: fn(&str) -> String) -> String {
    s.split('\n')
        .map(|l| esc(l.trim_end_matches('\r')))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Markdown and mentions made literal for Discord.
fn discord_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '<' | '>' | '[' | ']' | '#' | '@'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Slack's three control characters escaped, so `<!channel>` is text.
fn slack_escape(s: &str) -> String {
    one_line(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters, the last an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_clips() {
        assert_eq!(discord_escape("@everyone *x*"), "\\@everyone \\*x\\*");
        assert_eq!(slack_escape("<!channel> & co"), "&lt;!channel&gt; &amp; co");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(header_text("plain"), "plain");
        assert_eq!(header_text("café"), "=?UTF-8?B?Y2Fmw6k=?=");
        assert_eq!(header_text("a\nb"), "a\\nb");
    }
}
