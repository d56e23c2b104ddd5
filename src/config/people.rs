//! The `[groups]` table: named groups of users (`family = ["mom", "dad"]`), which rules read
//! as `"family" in groups` and `[enforce] exempt_groups` exempts.

use std::collections::BTreeMap;

/// `[groups]`, resolved: each group's members (user names, any case, or user ids).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    by_name: BTreeMap<String, Vec<String>>,
}

impl Groups {
    pub(super) fn of(raw: BTreeMap<String, Vec<String>>) -> Self {
        Self { by_name: raw }
    }

    pub fn has(&self, group: &str) -> bool {
        self.by_name.contains_key(group)
    }

    /// A group's members, as written.
    pub fn members(&self, group: &str) -> &[String] {
        self.by_name.get(group).map_or(&[], Vec::as_slice)
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// The groups a user belongs to (by name, any case, or by id).
    pub fn of_user(&self, name: Option<&str>, id: Option<i64>) -> Vec<String> {
        self.by_name
            .iter()
            .filter(|(_, members)| {
                members.iter().any(|m| {
                    let m = m.trim();
                    name.is_some_and(|n| n.eq_ignore_ascii_case(m))
                        || id.is_some_and(|i| m.parse::<i64>() == Ok(i))
                })
            })
            .map(|(g, _)| g.clone())
            .collect()
    }
}
