//! Reading a directory listing (`GET /uri/DIRCAP?t=json`) one child at a
//! time, as it streams in.
//!
//! A listing is `["dirnode", {"children": {NAME: [TYPE, {…}], …}, …}]`.
//! Parsed whole into a `serde_json::Value`, it takes several times its size
//! in memory (a small map costs a B-tree node of about 600 bytes), so a
//! hostile listing at the byte limit (`http.max_listing_bytes`) could still
//! take gigabytes. Here only one child is a `Value` at a time: it is handed
//! to the caller (who keeps what it needs, e.g. a `tree::Node`) and
//! dropped; every other part of the reply is skipped without being kept.
//! One child's text may have at most [`ENTRY_LIMIT`] bytes, so even a
//! hostile child cannot grow large as a `Value`.

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufReader, Read};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::client::{Bounded, Method, Payload, cap_segment};
use super::{Cap, Client, TahoeError, base32, redact};
use crate::chk::cap::ChkCap;
use crate::chk::dirnode;
use crate::storage::native::NativePath;
use crate::storage::read::{self, ReadFailure};

/// Most bytes of one child's entry in a listing. An entry of this tool's
/// backups is a few hundred bytes (a few KiB with ACLs and xattrs, whose
/// values Linux file systems keep to 64 KiB each).
pub(crate) const ENTRY_LIMIT: u64 = 1 << 20;

impl Client {
    /// Lists the directory `dir` (`GET /uri/DIRCAP?t=json`), parsing the
    /// reply as it streams in: each child goes to `add(&mut acc, name,
    /// child)` as soon as it is read, where `acc` is made by `fresh()` for
    /// every try (a retried request starts over). The reply may have at
    /// most [`Client::max_listing_bytes`] bytes and each child's entry at
    /// most 1 MiB, `ENTRY_LIMIT` ([`TahoeError::TooLarge`], noticed as it
    /// arrives). A reply that is not a directory listing is
    /// [`TahoeError::BadReply`].
    pub fn list_dir<A>(
        &self,
        dir: &Cap,
        mut fresh: impl FnMut() -> A,
        mut add: impl FnMut(&mut A, String, Value),
    ) -> Result<A, TahoeError> {
        if let Some(path) = self.native()
            && let Some(listed) = self.list_native(path, dir, &mut fresh, &mut add)
        {
            return listed;
        }
        let url = format!("{}/{}?t=json", self.uri(), cap_segment(dir));
        let limit = self.max_listing_bytes();
        self.with_retries("list", Some(dir), |deadline| {
            let reply = self.exchange(Method::Get, &url, Payload::Empty, deadline)?;
            let mut bounded = Bounded::new(reply.into_body().into_reader(), limit);
            let budget = EntryBudget::default();
            let mut acc = fresh();
            let result = {
                let reader = Counted {
                    inner: BufReader::with_capacity(64 * 1024, &mut bounded),
                    budget: &budget,
                };
                let mut de = serde_json::Deserializer::from_reader(reader);
                Envelope {
                    acc: &mut acc,
                    add: &mut add,
                    budget: &budget,
                }
                .deserialize(&mut de)
                .and_then(|()| de.end())
            };
            match result {
                Ok(()) => Ok(acc),
                Err(_) if bounded.exceeded => Err(TahoeError::TooLarge {
                    what: "the directory listing",
                    limit,
                    hint: Some("http.max_listing_bytes"),
                }),
                Err(_) if budget.exceeded.get() => Err(TahoeError::TooLarge {
                    what: "an entry of the directory listing",
                    limit: ENTRY_LIMIT,
                    hint: None,
                }),
                Err(e) if e.is_io() => Err(self.map_ureq(ureq::Error::from(io::Error::from(e)))),
                Err(e) => Err(TahoeError::BadReply(format!(
                    "not a directory listing ({})",
                    redact(&e.to_string())
                ))),
            }
        })
    }
}

impl Client {
    /// [`Client::list_dir`] of an immutable directory (`URI:DIR2-CHK:` read
    /// from the storage servers, `URI:DIR2-LIT:` decoded here) in native
    /// mode: each child as the gateway's listing gives it
    /// ([`dirnode::listing_entry`]), in the same order. `None` for other
    /// caps (mutable directories stay on the gateway) and after a native
    /// failure that falls back to the gateway. The limits are the gateway
    /// path's, applied to what is read: the packed directory (its cap's
    /// size) may have at most `http.max_listing_bytes`, a child's entry at
    /// most [`ENTRY_LIMIT`].
    fn list_native<A>(
        &self,
        path: &NativePath,
        dir: &Cap,
        fresh: &mut impl FnMut() -> A,
        add: &mut impl FnMut(&mut A, String, Value),
    ) -> Option<Result<A, TahoeError>> {
        let text = dir.as_str();
        let packed = if let Some(data) = text.strip_prefix("URI:DIR2-LIT:") {
            base32::decode(data)?
        } else if text.starts_with("URI:DIR2-CHK:") {
            let chk = ChkCap::parse(text).ok()?;
            let limit = self.max_listing_bytes();
            if chk.size > limit {
                return Some(Err(TahoeError::TooLarge {
                    what: "the directory listing",
                    limit,
                    hint: Some("http.max_listing_bytes"),
                }));
            }
            match read::read_all(path.native().readers(), &chk) {
                Ok(data) => data,
                Err(failure) => {
                    return self.native_read_failed(path, failure).err().map(Err);
                }
            }
        } else {
            return None;
        };
        // One child is a `Value` at a time, as on the gateway path; a child
        // that fails (a cap of a kind read only by the gateway) sends the
        // whole listing there (`fresh` starts it over).
        let mut acc = fresh();
        let failed = match dirnode::unpack(&packed) {
            Ok(children) => {
                if children.iter().any(|c| c.entry_len as u64 > ENTRY_LIMIT) {
                    return Some(Err(TahoeError::TooLarge {
                        what: "an entry of the directory listing",
                        limit: ENTRY_LIMIT,
                        hint: None,
                    }));
                }
                children
                    .into_iter()
                    .find_map(|child| match dirnode::listing_entry(&child) {
                        Ok(value) => {
                            add(&mut acc, child.name, value);
                            None
                        }
                        Err(e) => Some(e),
                    })
            }
            Err(e) => Some(e),
        };
        if let Some(e) = failed {
            return self
                .native_read_failed(path, ReadFailure::Native(e))
                .err()
                .map(Err);
        }
        Some(Ok(acc))
    }
}

/// The bytes read so far, and the position past which the child being read
/// is too long (`None`: between children).
#[derive(Default)]
struct EntryBudget {
    count: Cell<u64>,
    limit: Cell<Option<u64>>,
    exceeded: Cell<bool>,
}

impl EntryBudget {
    fn start_entry(&self) {
        self.limit
            .set(Some(self.count.get().saturating_add(ENTRY_LIMIT)));
    }

    fn end_entry(&self) {
        self.limit.set(None);
    }
}

/// Counts what the parser reads (it reads a byte at a time, from a buffer)
/// and fails once a child's entry goes past its budget.
struct Counted<'b, R> {
    inner: R,
    budget: &'b EntryBudget,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let count = self.budget.count.get().saturating_add(n as u64);
        self.budget.count.set(count);
        if self.budget.limit.get().is_some_and(|limit| count > limit) {
            self.budget.exceeded.set(true);
            return Err(io::Error::other("a directory entry is too long"));
        }
        Ok(n)
    }
}

/// `["dirnode", {…}]`: the node type, then the node's data.
struct Envelope<'a, A> {
    acc: &'a mut A,
    add: &'a mut dyn FnMut(&mut A, String, Value),
    budget: &'a EntryBudget,
}

impl<'de, A> DeserializeSeed<'de> for Envelope<'_, A> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, A> Visitor<'de> for Envelope<'_, A> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[\"dirnode\", {...}]")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let kind: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::custom("an empty list"))?;
        match kind.as_str() {
            "dirnode" => {}
            "unknown" => {
                return Err(de::Error::custom(
                    "the gateway does not recognise this capability",
                ));
            }
            _ => return Err(de::Error::custom("not a directory")),
        }
        let data = DirData {
            acc: self.acc,
            add: self.add,
            budget: self.budget,
        };
        seq.next_element_seed(data)?
            .ok_or_else(|| de::Error::custom("no node data"))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// The node data: its `children` are read, everything else skipped.
struct DirData<'a, A> {
    acc: &'a mut A,
    add: &'a mut dyn FnMut(&mut A, String, Value),
    budget: &'a EntryBudget,
}

impl<'de, A> DeserializeSeed<'de> for DirData<'_, A> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, A> Visitor<'de> for DirData<'_, A> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a directory's data")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let mut children = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "children" && !children {
                children = true;
                map.next_value_seed(Children {
                    acc: &mut *self.acc,
                    add: &mut *self.add,
                    budget: self.budget,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        if !children {
            return Err(de::Error::custom("no children object"));
        }
        Ok(())
    }
}

/// The `children` object: each child is a `Value` only while `add` looks
/// at it.
struct Children<'a, A> {
    acc: &'a mut A,
    add: &'a mut dyn FnMut(&mut A, String, Value),
    budget: &'a EntryBudget,
}

impl<'de, A> DeserializeSeed<'de> for Children<'_, A> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, A> Visitor<'de> for Children<'_, A> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of children")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(name) = map.next_key::<String>()? {
            self.budget.start_entry();
            let child: Value = map.next_value()?;
            self.budget.end_entry();
            (self.add)(self.acc, name, child);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the envelope over `text`; the children's names in order.
    fn names(text: &[u8]) -> Result<Vec<String>, (serde_json::Error, bool)> {
        let budget = EntryBudget::default();
        let mut acc: Vec<String> = Vec::new();
        let mut add = |acc: &mut Vec<String>, name: String, _child: Value| acc.push(name);
        let result = {
            let reader = Counted {
                inner: text,
                budget: &budget,
            };
            let mut de = serde_json::Deserializer::from_reader(reader);
            Envelope {
                acc: &mut acc,
                add: &mut add,
                budget: &budget,
            }
            .deserialize(&mut de)
            .and_then(|()| de.end())
        };
        result.map(|()| acc).map_err(|e| (e, budget.exceeded.get()))
    }

    #[test]
    fn children_in_order_other_fields_skipped() {
        let got = names(
            br#"["dirnode", {"rw_uri": "x", "children": {"b": ["filenode", {}], "a": [1]},
                "mutable": true}, "extra"]"#,
        )
        .unwrap();
        assert_eq!(got, ["b", "a"]);
    }

    #[test]
    fn not_a_listing() {
        for (bad, why) in [
            (&br#"["filenode", {}]"#[..], "not a directory"),
            (br#"["unknown", {}]"#, "does not recognise"),
            (br#"["dirnode", {}]"#, "no children object"),
            (br#"["dirnode"]"#, "no node data"),
            (br#"{}"#, "invalid type"),
            (br#"["dirnode", {"children": {}}] x"#, "trailing"),
        ] {
            let (e, exceeded) = names(bad).unwrap_err();
            assert!(!exceeded);
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn an_entry_past_its_budget_stops_the_read() {
        let mut text = br#"["dirnode", {"children": {"big": [""#.to_vec();
        text.extend(std::iter::repeat_n(
            b'x',
            usize::try_from(ENTRY_LIMIT).unwrap(),
        ));
        text.extend_from_slice(br#""]}}]"#);
        let (e, exceeded) = names(&text).unwrap_err();
        assert!(exceeded && e.is_io(), "{e}");
        // Names (and everything between children) have no such budget.
        let mut text = br#"["dirnode", {"children": {""#.to_vec();
        text.extend(std::iter::repeat_n(
            b'n',
            usize::try_from(ENTRY_LIMIT).unwrap(),
        ));
        text.extend_from_slice(br#"": []}}]"#);
        assert_eq!(names(&text).unwrap().len(), 1);
    }
}
