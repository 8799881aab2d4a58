//! The subscription table: a topic trie with `+`, `#` and `$share/` groups.
//!
//! Every shard keeps a full replica, kept in step by broadcast add/remove messages, so a PUBLISH is
//! matched once, on the shard that received it, without asking anyone. Matching walks the topic's
//! levels without allocating and hands each match to a visitor.

use std::collections::HashMap;

use protocol::{ByteStr, SubscriptionOptions};

/// One subscription of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubEntry {
    /// The subscribing client.
    pub client_id: ByteStr,
    /// The shard that currently holds the client's session.
    pub shard: usize,
    /// Its options (QoS, no local, retain as published, retain handling).
    pub options: SubscriptionOptions,
    /// The 5.0 subscription identifier, if it gave one.
    pub id: Option<u32>,
}

/// What a match hands to the visitor.
#[derive(Debug)]
pub enum Matched<'a> {
    /// An ordinary subscription.
    Single(&'a SubEntry),
    /// A share group: exactly one of its members is to receive the message.
    Group {
        /// The full `$share/{group}/{filter}` string, unique per group and filter.
        key: &'a str,
        /// The members, never empty.
        members: &'a [SubEntry],
    },
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    subs: Vec<SubEntry>,
    /// Share groups subscribed at this node, keyed by their full `$share/...` filter.
    groups: Vec<(ByteStr, Vec<SubEntry>)>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subs.is_empty() && self.groups.is_empty()
    }
}

/// The subscription table.
#[derive(Debug, Default)]
pub struct SubscriptionTable {
    root: Node,
    count: usize,
}

impl SubscriptionTable {
    /// An empty table.
    pub fn new() -> SubscriptionTable {
        SubscriptionTable::default()
    }

    /// Number of (client, filter) subscriptions held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nobody subscribes to anything.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds or replaces the subscription of `entry.client_id` to `filter`.
    ///
    /// `filter` is the filter as the client sent it; `$share/{group}/{f}` joins share group
    /// `group` on `f`. The caller has validated it.
    pub fn insert(&mut self, filter: &ByteStr, entry: SubEntry) {
        let (group_key, path) = split_share(filter);
        let node = path.split('/').fold(&mut self.root, |node, level| {
            node.children.entry(level.into()).or_default()
        });
        let list = match group_key {
            None => &mut node.subs,
            Some(key) => {
                let pos = node.groups.iter().position(|(k, _)| k == key);
                match pos {
                    Some(i) => &mut node.groups[i].1,
                    None => {
                        node.groups.push((filter.clone(), Vec::new()));
                        let last = node.groups.len() - 1;
                        &mut node.groups[last].1
                    }
                }
            }
        };
        match list.iter_mut().find(|e| e.client_id == entry.client_id) {
            Some(existing) => *existing = entry,
            None => {
                list.push(entry);
                self.count += 1;
            }
        }
    }

    /// Removes the subscription of `client_id` to `filter`; true if there was one.
    pub fn remove(&mut self, filter: &str, client_id: &str) -> bool {
        let (group_key, path) = split_share(filter);
        let levels: Vec<&str> = path.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, group_key, client_id);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Points every subscription of `client_id` at `shard` (its session moved there).
    pub fn relocate(&mut self, filters: &[ByteStr], client_id: &str, shard: usize) {
        for filter in filters {
            let (group_key, path) = split_share(filter);
            let mut node = &mut self.root;
            let mut found = true;
            for level in path.split('/') {
                match node.children.get_mut(level) {
                    Some(child) => node = child,
                    None => {
                        found = false;
                        break;
                    }
                }
            }
            if !found {
                continue;
            }
            let list = match group_key {
                None => Some(&mut node.subs),
                Some(key) => node
                    .groups
                    .iter_mut()
                    .find(|(k, _)| k == key)
                    .map(|(_, l)| l),
            };
            if let Some(entry) = list.and_then(|l| l.iter_mut().find(|e| e.client_id == client_id))
            {
                entry.shard = shard;
            }
        }
    }

    /// Calls `visit` for every subscription matching `topic`.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut visit: impl FnMut(Matched<'a>)) {
        let dollar = topic.starts_with('$');
        walk(&self.root, Some(topic), true, dollar, &mut visit);
    }
}

/// Splits a filter into its share group key (the whole `$share/g/f` string) and the trie path.
fn split_share(filter: &str) -> (Option<&str>, &str) {
    if let Some(rest) = filter.strip_prefix("$share/") {
        if let Some(slash) = rest.find('/') {
            return (Some(filter), &rest[slash + 1..]);
        }
    }
    (None, filter)
}

fn remove_at(node: &mut Node, levels: &[&str], group_key: Option<&str>, client_id: &str) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return match group_key {
            None => remove_client(&mut node.subs, client_id),
            Some(key) => {
                let Some(i) = node.groups.iter().position(|(k, _)| k == key) else {
                    return false;
                };
                let removed = remove_client(&mut node.groups[i].1, client_id);
                if node.groups[i].1.is_empty() {
                    node.groups.swap_remove(i);
                }
                removed
            }
        };
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove_at(child, rest, group_key, client_id);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn remove_client(list: &mut Vec<SubEntry>, client_id: &str) -> bool {
    match list.iter().position(|e| e.client_id == client_id) {
        Some(i) => {
            list.swap_remove(i);
            true
        }
        None => false,
    }
}

fn emit<'a>(node: &'a Node, visit: &mut impl FnMut(Matched<'a>)) {
    for entry in &node.subs {
        visit(Matched::Single(entry));
    }
    for (key, members) in &node.groups {
        if !members.is_empty() {
            visit(Matched::Group { key, members });
        }
    }
}

/// Matches the remaining topic levels `rest` below `node`.
fn walk<'a>(
    node: &'a Node,
    rest: Option<&str>,
    first: bool,
    dollar: bool,
    visit: &mut impl FnMut(Matched<'a>),
) {
    // Wildcards at the first level never match `$` topics (MQTT 5.0 section 4.7.2).
    let wildcards = !(first && dollar);
    let Some(rest) = rest else {
        emit(node, visit);
        // `a/#` also matches `a` itself.
        if let Some(hash) = node.children.get("#") {
            emit(hash, visit);
        }
        return;
    };
    let (level, tail) = match memchr_slash(rest) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if let Some(child) = node.children.get(level) {
        walk(child, tail, false, dollar, visit);
    }
    if wildcards {
        if let Some(plus) = node.children.get("+") {
            walk(plus, tail, false, dollar, visit);
        }
        if let Some(hash) = node.children.get("#") {
            emit(hash, visit);
        }
    }
}

fn memchr_slash(s: &str) -> Option<usize> {
    s.bytes().position(|b| b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(client: &str) -> SubEntry {
        SubEntry {
            client_id: client.into(),
            shard: 0,
            options: SubscriptionOptions::default(),
            id: None,
        }
    }

    fn matches(table: &SubscriptionTable, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        table.for_each_match(topic, |m| match m {
            Matched::Single(e) => out.push(e.client_id.to_string()),
            Matched::Group { key, members } => {
                out.push(format!("{key}:{}", members.len()));
            }
        });
        out.sort();
        out
    }

    #[test]
    fn wildcards_match_per_spec() {
        let mut t = SubscriptionTable::new();
        t.insert(&"sport/tennis/+".into(), entry("plus"));
        t.insert(&"sport/#".into(), entry("hash"));
        t.insert(&"#".into(), entry("all"));
        t.insert(&"+/+".into(), entry("two"));
        t.insert(&"sport/tennis/player1".into(), entry("exact"));
        assert_eq!(
            matches(&t, "sport/tennis/player1"),
            ["all", "exact", "hash", "plus"]
        );
        assert_eq!(matches(&t, "sport"), ["all", "hash"]);
        assert_eq!(matches(&t, "sport/"), ["all", "hash", "two"]);
        assert_eq!(matches(&t, "/finance"), ["all", "two"]);
    }

    #[test]
    fn leading_wildcards_skip_dollar_topics() {
        let mut t = SubscriptionTable::new();
        t.insert(&"#".into(), entry("all"));
        t.insert(&"+/monitor/Clients".into(), entry("plus"));
        t.insert(&"$SYS/#".into(), entry("sys"));
        t.insert(&"$SYS/monitor/+".into(), entry("sysplus"));
        assert_eq!(matches(&t, "$SYS/monitor/Clients"), ["sys", "sysplus"]);
        assert_eq!(matches(&t, "a/monitor/Clients"), ["all", "plus"]);
    }

    #[test]
    fn remove_prunes_and_counts() {
        let mut t = SubscriptionTable::new();
        t.insert(&"a/b".into(), entry("c1"));
        t.insert(&"a/b".into(), entry("c1"));
        t.insert(&"a/+".into(), entry("c2"));
        assert_eq!(t.len(), 2);
        assert!(t.remove("a/b", "c1"));
        assert!(!t.remove("a/b", "c1"));
        assert_eq!(matches(&t, "a/b"), ["c2"]);
        assert!(t.remove("a/+", "c2"));
        assert!(t.is_empty());
        assert!(t.root.is_empty());
    }

    #[test]
    fn share_groups_are_matched_as_one() {
        let mut t = SubscriptionTable::new();
        t.insert(&"$share/g1/fleet/+/gps".into(), entry("w1"));
        t.insert(&"$share/g1/fleet/+/gps".into(), entry("w2"));
        t.insert(&"$share/g2/fleet/+/gps".into(), entry("w3"));
        assert_eq!(
            matches(&t, "fleet/v1/gps"),
            ["$share/g1/fleet/+/gps:2", "$share/g2/fleet/+/gps:1"]
        );
        assert!(t.remove("$share/g1/fleet/+/gps", "w1"));
        assert_eq!(
            matches(&t, "fleet/v1/gps"),
            ["$share/g1/fleet/+/gps:1", "$share/g2/fleet/+/gps:1"]
        );
    }

    #[test]
    fn relocate_moves_entries() {
        let mut t = SubscriptionTable::new();
        t.insert(&"a/#".into(), entry("c"));
        t.relocate(&["a/#".into()], "c", 3);
        let mut shard = None;
        t.for_each_match("a/x", |m| {
            if let Matched::Single(e) = m {
                shard = Some(e.shard)
            }
        });
        assert_eq!(shard, Some(3));
    }
}
