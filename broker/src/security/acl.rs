//! Access control lists in mosquitto's `acl_file` format, compiled per client.
//!
//! ```text
//! # before the first `user` line: rules for anonymous clients
//! topic read $SYS/#
//! user dashboard
//! topic read fleet/#
//! pattern write fleet/%u/#        # every authenticated client, %u = its user name
//! pattern read  clients/%c/inbox  # %c = its client id
//! ```
//!
//! `topic [read|write|readwrite|deny] TOPIC` (no keyword: readwrite) applies to the user of the
//! last `user` line; `pattern` lines apply to every client. Semantics, as in mosquitto 2.0:
//! nothing is allowed unless a rule grants it; a `deny` rule that matches wins over any grant.
//! A subscription needs a read rule whose topic *covers* the whole filter (`fleet/#` covers
//! `fleet/+/gps`, not the other way round); each message is checked again when delivered,
//! retained ones included, so a filter allowed as a whole still never carries a denied topic.
//!
//! `%u`/`%c` are substituted only with values that are a single topic level: a client id such
//! as `v2/gps` would otherwise turn `fleet/%c/#` into `fleet/v2/gps/#` and let the client write
//! to vehicle v2's topic. Such a client gets no rule from that pattern.

use std::{collections::HashMap, sync::Arc};

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Subscribe and receive.
    Read,
    /// Publish.
    Write,
    /// Both.
    ReadWrite,
    /// Neither, whatever other rules say.
    Deny,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// One rule as written, before substitution.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    access: Access,
    topic: String,
}

/// A rule that applies to one client (patterns substituted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What it allows.
    pub access: Access,
    /// A topic filter.
    pub topic: String,
}

/// Why an ACL file cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {why}")]
pub struct AclError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub why: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    anonymous: Vec<Written>,
    users: HashMap<String, Vec<Written>>,
    patterns: Vec<Written>,
}

/// The rules that apply to one client, compiled once per connection (and per reload).
/// `None` means no ACL file: everything is allowed.
#[derive(Debug, Clone, Default)]
pub struct ClientRules(Option<Arc<[Rule]>>);

impl Acl {
    /// Parses an ACL file's text.
    ///
    /// # Errors
    /// The first line that is not a rule, by number.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        let mut acl = Acl::default();
        let mut current: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |why: String| AclError { line: n + 1, why };
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim_start();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("`user` needs a user name".into()));
                    }
                    current = Some(rest.to_string());
                    acl.users.entry(rest.to_string()).or_default();
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(err)?;
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else {
                        match &current {
                            Some(user) => acl.users.entry(user.clone()).or_default().push(rule),
                            None => acl.anonymous.push(rule),
                        }
                    }
                }
                other => {
                    return Err(err(format!(
                        "unknown keyword {other:?}: expected user, topic or pattern"
                    )))
                }
            }
        }
        Ok(acl)
    }

    /// The rules for a client: its user's rules (or the anonymous ones), then the patterns
    /// that can be substituted for it.
    pub fn rules_for(&self, username: Option<&str>, client_id: &str) -> ClientRules {
        let mut rules: Vec<Rule> = Vec::new();
        let own = match username {
            Some(user) => self.users.get(user).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.anonymous,
        };
        rules.extend(own.iter().map(|w| Rule {
            access: w.access,
            topic: w.topic.clone(),
        }));
        for pattern in &self.patterns {
            if let Some(topic) = substitute(&pattern.topic, username, client_id) {
                rules.push(Rule {
                    access: pattern.access,
                    topic,
                });
            }
        }
        ClientRules(Some(rules.into()))
    }
}

fn parse_rule(rest: &str) -> Result<Written, String> {
    let (word, after) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    let (access, topic) = match word {
        "read" => (Access::Read, after.trim_start()),
        "write" => (Access::Write, after.trim_start()),
        "readwrite" => (Access::ReadWrite, after.trim_start()),
        "deny" => (Access::Deny, after.trim_start()),
        _ => (Access::ReadWrite, rest),
    };
    if topic.is_empty() {
        return Err("a rule needs a topic".into());
    }
    protocol::validate_topic_filter(topic).map_err(|e| format!("{topic:?}: {e}"))?;
    Ok(Written {
        access,
        topic: topic.to_string(),
    })
}

/// `%u` and `%c` replaced, or `None` when a value is missing or is not one plain topic level.
fn substitute(pattern: &str, username: Option<&str>, client_id: &str) -> Option<String> {
    let single_level = |v: &str| !v.is_empty() && !v.contains(['/', '+', '#']);
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("%u") {
            let user = username.filter(|u| single_level(u))?;
            out.push_str(user);
            rest = after;
        } else if let Some(after) = tail.strip_prefix("%c") {
            if !single_level(client_id) {
                return None;
            }
            out.push_str(client_id);
            rest = after;
        } else {
            out.push('%');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Some(out)
}

impl ClientRules {
    /// Everything allowed (no ACL file).
    pub fn allow_all() -> ClientRules {
        ClientRules(None)
    }

    /// May the client publish to `topic`?
    pub fn can_write(&self, topic: &str) -> bool {
        self.check(topic, Access::writes)
    }

    /// May a message on `topic` be delivered to the client?
    pub fn can_read(&self, topic: &str) -> bool {
        self.check(topic, Access::reads)
    }

    fn check(&self, topic: &str, grants: fn(Access) -> bool) -> bool {
        let Some(rules) = &self.0 else { return true };
        let mut granted = false;
        for rule in rules.iter() {
            if !protocol::matches(&rule.topic, topic) {
                continue;
            }
            if rule.access == Access::Deny {
                return false;
            }
            granted |= grants(rule.access);
        }
        granted
    }

    /// May the client subscribe to `filter` (a shared subscription's filter without its
    /// `$share/group/` prefix)? A read rule must cover every topic the filter can match, and no
    /// deny rule may cover it; denied topics inside an allowed filter are caught at delivery.
    pub fn can_subscribe(&self, filter: &str) -> bool {
        let Some(rules) = &self.0 else { return true };
        let mut granted = false;
        for rule in rules.iter() {
            if !covers(&rule.topic, filter) {
                continue;
            }
            if rule.access == Access::Deny {
                return false;
            }
            granted |= rule.access.reads();
        }
        granted
    }
}

/// True when every topic matched by `filter` is matched by `rule` (both valid filters).
pub fn covers(rule: &str, filter: &str) -> bool {
    // Wildcards never match a first level starting with '$' (MQTT 4.7.2): a rule `#` does not
    // cover `$SYS/#`.
    if filter.starts_with('$') && rule.starts_with(['+', '#']) {
        return false;
    }
    let mut r = rule.split('/');
    let mut f = filter.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some(_), None) => return false,
            (None, Some(_)) => return false,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(level), Some(sub)) => {
                if level != sub {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = "\
# anonymous clients
topic read public/#

user dashboard
topic read fleet/#
topic deny fleet/secret/#

user ops
topic readwrite ops/#
topic write fleet/+/cmd
topic fleet/broadcast

pattern write fleet/%u/#
pattern read clients/%c/inbox
";

    #[test]
    fn every_rule_kind() {
        let acl = Acl::parse(FLEET).unwrap();
        let anon = acl.rules_for(None, "anon-1");
        assert!(anon.can_read("public/x") && !anon.can_write("public/x"));
        assert!(!anon.can_read("fleet/v1/gps"));
        // %u patterns never apply to anonymous clients; %c ones do.
        assert!(!anon.can_write("fleet/anon-1/gps"));
        assert!(anon.can_read("clients/anon-1/inbox"));

        let dash = acl.rules_for(Some("dashboard"), "d1");
        assert!(dash.can_read("fleet/v1/gps") && !dash.can_write("fleet/v1/gps"));
        assert!(
            !dash.can_read("fleet/secret/key"),
            "deny wins over a broader read"
        );
        assert!(dash.can_subscribe("fleet/#") && dash.can_subscribe("fleet/+/gps"));
        assert!(!dash.can_subscribe("fleet/secret/#"));
        assert!(
            !dash.can_read("public/x"),
            "anonymous rules are not a user's"
        );

        let ops = acl.rules_for(Some("ops"), "o1");
        assert!(ops.can_read("ops/a") && ops.can_write("ops/a/b"));
        assert!(ops.can_write("fleet/v9/cmd") && !ops.can_read("fleet/v9/cmd"));
        assert!(ops.can_read("fleet/broadcast") && ops.can_write("fleet/broadcast"));
        assert!(!ops.can_write("fleet/v9/gps"));

        let unknown = acl.rules_for(Some("stranger"), "s1");
        assert!(!unknown.can_read("public/x") && !unknown.can_read("fleet/x"));
        assert!(unknown.can_write("fleet/stranger/gps"));
    }

    #[test]
    fn a_vehicle_writes_only_its_own_topics_and_reads_nothing() {
        let acl =
            Acl::parse("pattern write fleet/%u/#\nuser dashboard\ntopic read fleet/#\n").unwrap();
        let v1 = acl.rules_for(Some("v1"), "v1");
        assert!(v1.can_write("fleet/v1/gps") && v1.can_write("fleet/v1/status"));
        assert!(!v1.can_write("fleet/v2/gps"));
        assert!(!v1.can_read("fleet/v1/gps") && !v1.can_subscribe("fleet/v2/#"));
        assert!(!v1.can_subscribe("fleet/#") && !v1.can_subscribe("#"));
    }

    #[test]
    fn substitution_refuses_values_that_span_levels_or_are_wildcards() {
        let acl = Acl::parse("pattern write fleet/%c/#\npattern read in/%u/%c\n").unwrap();
        let sneaky = acl.rules_for(Some("v1"), "v2/gps");
        assert!(
            !sneaky.can_write("fleet/v2/gps"),
            "client id with '/' gets no rule"
        );
        for id in ["#", "+", ""] {
            let rules = acl.rules_for(Some("u"), id);
            assert!(!rules.can_write("fleet/x/y"), "{id:?}");
        }
        let ok = acl.rules_for(Some("u1"), "c1");
        assert!(ok.can_read("in/u1/c1") && !ok.can_read("in/u1/c2"));
        assert_eq!(
            substitute("a/%x/%%", Some("u"), "c").as_deref(),
            Some("a/%x/%%")
        );
    }

    #[test]
    fn coverage_of_filters() {
        assert!(covers("fleet/#", "fleet/+/gps"));
        assert!(covers("fleet/#", "fleet"));
        assert!(covers("fleet/#", "fleet/#"));
        assert!(covers("fleet/+/gps", "fleet/v1/gps"));
        assert!(covers("fleet/+/gps", "fleet/+/gps"));
        assert!(!covers("fleet/+/gps", "fleet/#"));
        assert!(!covers("fleet/+/gps", "fleet/+/+"));
        assert!(!covers("fleet/v1/gps", "fleet/+/gps"));
        assert!(!covers("fleet", "fleet/#"));
        assert!(!covers("#", "$SYS/#"));
        assert!(covers("$SYS/#", "$SYS/broker/uptime"));
        assert!(covers("#", "anything/at/all"));
    }

    #[test]
    fn no_acl_file_allows_everything() {
        let all = ClientRules::allow_all();
        assert!(all.can_write("a") && all.can_read("b") && all.can_subscribe("#"));
    }

    #[test]
    fn parse_errors_name_the_line() {
        assert_eq!(Acl::parse("user a\ntopic read\n").unwrap_err().line, 2);
        assert_eq!(Acl::parse("\nbogus x\n").unwrap_err().line, 2);
        assert_eq!(Acl::parse("topic read a/#/b\n").unwrap_err().line, 1);
        assert_eq!(Acl::parse("user\n").unwrap_err().line, 1);
        let spaced = Acl::parse("topic read with space/x\n").unwrap();
        assert!(spaced.rules_for(None, "c").can_read("with space/x"));
    }
}
