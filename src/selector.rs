//! Reading the BACKUP argument of `restore`, `verify`, `check` and
//! `cleanup`: a root cap or a backup name.
//!
//! A cap is recognised in every spelling people paste
//! ([`crate::tahoe::user_cap`]): percent-encoded, inside a gateway address,
//! with an `ro.`/`imm.` prefix, in any letter case. So a cap is never taken
//! for a name, and never echoed by a "no backup named …" message. A text
//! that looks like a cap but is not a valid one is a usage error that says
//! so without quoting it.

use crate::exit::UsageError;
use crate::tahoe::Cap;
use crate::tahoe::user_cap::{self, UserCap};

/// A command's BACKUP argument.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BackupArg<'a> {
    /// A root cap, in Tahoe's canonical spelling.
    Cap(Cap),
    /// A backup name, as given.
    Name(&'a str),
}

impl<'a> BackupArg<'a> {
    /// Reads `arg`; `what` names the argument in the error (`BACKUP`,
    /// `argument 2`).
    pub(crate) fn parse(arg: &'a str, what: &str) -> Result<BackupArg<'a>, UsageError> {
        match user_cap::classify(arg) {
            UserCap::Cap(cap) => Ok(BackupArg::Cap(cap)),
            UserCap::NotACap => Ok(BackupArg::Name(arg)),
            UserCap::Malformed(why) => Err(malformed(what, why)),
        }
    }
}

/// How a message quotes a backup name given on the command line: in
/// quotes, escaped, and with anything cap-like inside it redacted (a name
/// is not a cap, but it may hold one).
pub(crate) fn quoted(name: &str) -> String {
    crate::tahoe::redact(&format!("{name:?}"))
}

/// The usage error for a text that looks like a cap but is not one.
pub(crate) fn malformed(what: &str, why: &str) -> UsageError {
    UsageError(format!(
        "{what} looks like a Tahoe capability, but {why}; check that it was copied whole \
         (it is not quoted here, since a cap is a secret)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A cap in a random spelling, possibly cut short: (text, key, hash).
    fn spelled_cap() -> impl Strategy<Value = (String, String, String)> {
        (
            "[a-z2-7]{26}",
            "[a-z2-7]{52}",
            prop::sample::select(vec!["DIR2-CHK", "DIR2", "CHK", "DIR2-RO"]),
            0usize..150,
            0u8..4,
            prop::sample::select(vec![
                "",
                "ro.",
                "imm.",
                "RO.",
                " ",
                "http://127.0.0.1:9/uri/",
            ]),
        )
            .prop_map(|(key, hash, kind, cut, case, prefix)| {
                let tail = if kind.contains("CHK") {
                    ":2:3:4096"
                } else {
                    ""
                };
                let mut c = format!("URI:{kind}:{key}:{hash}{tail}");
                c.truncate(c.len().min(cut.max(4)));
                let c = match case {
                    0 => c,
                    1 => c.to_uppercase(),
                    2 => c.replace(':', "%3A"),
                    _ => c.to_lowercase().replace(':', "%3a"),
                };
                (format!("{prefix}{c}"), key, hash)
            })
    }

    proptest! {
        /// Every error text that formats a BACKUP argument (or a config
        /// value) is free of key material, whatever the spelling.
        #[test]
        fn no_error_path_echoes_a_cap((text, key, hash) in spelled_cap()) {
            let mut shown = Vec::new();
            match BackupArg::parse(&text, "BACKUP") {
                Ok(BackupArg::Name(n)) => prop_assert!(false, "{n} read as a name"),
                Ok(BackupArg::Cap(_)) => {}
                Err(e) => shown.push(e.0),
            }
            shown.push(quoted(&text));
            shown.push(crate::config::node::quote_for_message(&text));
            shown.push(crate::tahoe::redact(&text));
            for s in shown {
                let s = s.to_lowercase();
                prop_assert!(!s.contains(&key[..10]), "{s}");
                prop_assert!(!s.contains(&hash[..10]), "{s}");
            }
        }
    }

    #[test]
    fn caps_names_and_malformed_caps() {
        let c = "URI:DIR2-CHK:6k5yof7gs5tfsmapklxyh6ukwy:dgmdhz3wu4372ywcaobuzqyzcq5klljw33tszmmyyumxhduvppjq:1:1:551";
        assert_eq!(
            BackupArg::parse(&c.replace(':', "%3A"), "BACKUP").unwrap(),
            BackupArg::Cap(Cap::parse(c).unwrap())
        );
        assert_eq!(
            BackupArg::parse("/srv/www", "BACKUP").unwrap(),
            BackupArg::Name("/srv/www")
        );
        let err = BackupArg::parse(&c[..40], "BACKUP").unwrap_err().0;
        assert!(
            err.starts_with("BACKUP looks like a Tahoe capability"),
            "{err}"
        );
        assert!(!err.contains("6k5yof7g"), "{err}");
    }
}
