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
pub enum BackupArg<'a> {
    /// A root cap, in Tahoe's canonical spelling.
    Cap(Cap),
    /// A backup name, as given.
    Name(&'a str),
}

impl<'a> BackupArg<'a> {
    /// Reads `arg`; `what` names the argument in the error (`BACKUP`,
    /// `argument 2`).
    pub fn parse(arg: &'a str, what: &str) -> Result<BackupArg<'a>, UsageError> {
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
pub fn quoted(name: &str) -> String {
    crate::tahoe::redact(&format!("{name:?}"))
}

/// The usage error for a text that looks like a cap but is not one.
pub fn malformed(what: &str, why: &str) -> UsageError {
    UsageError(format!(
        "{what} looks like a Tahoe capability, but {why}; check that it was copied whole \
         (it is not quoted here, since a cap is a secret)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
