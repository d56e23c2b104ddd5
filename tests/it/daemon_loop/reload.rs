//! A reload that weakens what protects streams (a half-saved file does exactly that: dry run
//! off, exemptions emptied, every rule gone) is said at WARN, audited and told to the notify
//! targets; an ordinary one is not.

use super::*;

use crate::common::receiver::Receiver;
use streamwarden::notify::{Delivery, Notifier};

#[tokio::test]
async fn a_reload_that_arms_kills_or_drops_protection_is_told_to_the_owner() {
    let logs = Logs::default();
    let _guard = logs.subscriber();
    let owner = Receiver::start(200, "");
    let targets = Config::parse(
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"{}\"\n",
            owner.url("/owner")
        ),
        None,
    )
    .unwrap();
    let reloads = Arc::new(Mutex::new(0));
    let reload: daemon::Reload = {
        let reloads = reloads.clone();
        Box::new(move || {
            let mut n = reloads.lock().unwrap();
            *n += 1;
            // First an ordinary reload (the same settings), then a file cut off after
            // [enforce]: dry run off, no exemptions, no rules.
            let text = if *n == 1 {
                "[enforce]\ndry_run = true\nexempt_users = [\"owner\", \"mom\"]\n[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1h\"\n"
            } else {
                "[enforce]\n"
            };
            let cfg = config(&std::env::temp_dir(), text);
            Ok(daemon::Reloaded {
                rules: compile(&cfg).map_err(|e| e.to_string())?,
                enforce: cfg.enforce,
                restart_needed: Vec::new(),
            })
        })
    };
    let rules = "[enforce]\nexempt_users = [\"owner\", \"mom\"]\n[[rules]]\nname = \"owner-only\"\nwhen = 'user_id == 7'\nsustain = \"1h\"\n";
    let opts = Options {
        dry_run: true,
        reload: Some(reload),
        notify: Notifier::from_config(&targets, Delivery::DAEMON).unwrap(),
        ..Default::default()
    };
    let d = start(FakePlex::start(&mixed_sessions()), rules, opts).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    d.control.send(Control::Reload).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(d.audit().iter().all(|l| l["action"] != "risky-reload"));
    d.control.send(Control::Reload).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while owner.got().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, _, audit) = d.stop().await;
    let risky: Vec<_> = audit
        .iter()
        .filter(|l| l["action"] == "risky-reload")
        .collect();
    assert_eq!(risky.len(), 1, "{audit:?}");
    let message = risky[0]["message"].as_str().unwrap();
    for said in [
        "dry run is off",
        "exempt_users is empty now (it was owner, mom)",
        "every rule is gone (there were 1)",
    ] {
        assert!(message.contains(said), "{message}");
    }
    let got = owner.at("/owner");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].json()["action"], "risky-reload");
    assert!(logs.text().contains("WARN"), "{}", logs.text());
}
