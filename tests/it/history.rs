//! `streamwarden history` as a user runs it, over an audit log with old and new lines, a
//! line cut short, and text that must not break a line.

use crate::common::*;

fn line(days_ago: i64, action: &str, user: &str, rule: &str, message: &str) -> String {
    let ts = (time::OffsetDateTime::now_utc() - time::Duration::days(days_ago))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    serde_json::json!({
        "ts": ts, "mode": "enforce", "action": action, "rule": rule,
        "session_id": format!("s-{user}-{days_ago}"), "user": user, "title": "A Film",
        "message": message, "values": {}, "estimated": false
    })
    .to_string()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = [
        line(20, "kill", "bob", "no-4k", "old"),
        line(3, "kill", "bob", "no-4k", "No 4K here.\nFake line"),
        line(2, "log", "bob", "heavy", "only logged"),
        "{\"ts\": \"cut sh".to_string(),
        line(1, "would-kill", "Alice", "over-source", "would have"),
        line(
            0,
            "kill",
            "bob",
            "over-source",
            "Set the quality to Original.",
        ),
    ]
    .join("\n");
    std::fs::write(dir.path().join("audit.jsonl"), log + "\n").unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[enforce]\naudit_log = \"audit.jsonl\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn lists_newest_first_with_counts_filtered_by_user_and_time() {
    let dir = setup();
    let o = run(
        dir.path(),
        "",
        "",
        &["history", "-c", "c.toml", "--since", "7d"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let first = out.find("Set the quality").unwrap();
    let second = out.find("would have").unwrap();
    assert!(first < second, "newest first:\n{out}");
    assert!(!out.contains("\"old\""), "--since 7d:\n{out}");
    assert!(
        !out.contains("only logged"),
        "log lines are not kills:\n{out}"
    );
    assert!(out.contains("No 4K here.\\nFake line"), "escaped:\n{out}");
    assert!(out.contains("bob: killed 2 times"), "{out}");
    assert!(out.contains("Alice: would have been killed once"), "{out}");
    assert!(out.contains("1 unreadable line"), "{out}");

    let o = run(
        dir.path(),
        "",
        "",
        &["history", "-c", "c.toml", "--user", "BOB", "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["total"], 3);
    assert_eq!(v["users"][0]["kills"], 3);
    assert_eq!(v["entries"][2]["message"], "old");

    let o = run(
        dir.path(),
        "",
        "",
        &["history", "-c", "c.toml", "--rule", "over-source", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["total"], 2);
}

#[test]
fn refuses_a_bad_since_and_a_config_without_an_audit_log() {
    let dir = setup();
    let o = run(
        dir.path(),
        "",
        "",
        &["history", "-c", "c.toml", "--since", "soon"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("since"), "{}", stderr(&o));
    std::fs::write(dir.path().join("none.toml"), "").unwrap();
    let o = run(dir.path(), "", "", &["history", "-c", "none.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("audit_log"), "{}", stderr(&o));
}
