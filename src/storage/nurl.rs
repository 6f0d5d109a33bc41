//! NURLs and the list of storage servers.
//!
//! A Tahoe-LAFS 1.20 storage server announces, beside its Foolscap fURL,
//! `anonymous-storage-NURLs: [pb://SPKI-HASH@HOST:PORT/SWISSNUM#v=1]`
//! (`http-storage-node-protocol.rst`, "Server Identity"; the form checked
//! here is the one `storage/http_server.py` `build_nurl` writes): the
//! user part is the unpadded URL-safe base64 SHA-256 of the server
//! certificate's SubjectPublicKeyInfo, the one path segment the swissnum
//! (the storage service's bearer secret), the fragment `v=1` the protocol
//! version. The gateway keeps the announcements it received in
//! `private/introducer_NAME_cache.yaml` (one file per introducer) and the
//! operator's static ones in `private/servers.yaml`; both are read here.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::StorageError;
use crate::tahoe::base32;

/// A parsed HTTPS storage NURL. `Debug` and `Display` leave out the
/// swissnum.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Nurl {
    /// The pinned SPKI hash, as it appears in the NURL (43 characters).
    pub(crate) spki_hash: String,
    /// Host name or IP address (IPv6 without its brackets).
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
    /// The swissnum: the bearer secret of the storage service.
    pub(crate) swissnum: String,
}

fn bad(what: impl Into<String>) -> StorageError {
    StorageError::BadNurl { what: what.into() }
}

impl Nurl {
    /// Parses `pb://SPKI-HASH@HOST:PORT/SWISSNUM#v=1`. Errors name the
    /// part that is wrong and never repeat the swissnum.
    pub(crate) fn parse(text: &str) -> Result<Nurl, StorageError> {
        let text = text.trim();
        let rest = if let Some(rest) = text.strip_prefix("pb://") {
            rest
        } else if text.starts_with("pb+tor://") {
            return Err(bad("Tor NURLs (pb+tor://) are not supported"));
        } else {
            return Err(bad("it does not start with pb://"));
        };
        let (rest, fragment) = rest
            .split_once('#')
            .ok_or_else(|| bad("no #v=1 fragment (a Foolscap fURL, not an HTTPS NURL?)"))?;
        if fragment != "v=1" {
            return Err(bad(format!(
                "unsupported protocol version fragment #{}",
                printable(fragment)
            )));
        }
        let (spki_hash, rest) = rest
            .split_once('@')
            .ok_or_else(|| bad("no SPKI hash before @"))?;
        match URL_SAFE_NO_PAD.decode(spki_hash) {
            Ok(bytes) if bytes.len() == 32 => {}
            _ => {
                return Err(bad(
                    "the SPKI hash is not 32 bytes in unpadded URL-safe base64",
                ));
            }
        }
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no /SWISSNUM path"))?;
        let (host, port) = split_host_port(authority)?;
        if path.is_empty() {
            return Err(bad("empty swissnum"));
        }
        if !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad(
                "the swissnum is not one path segment of letters, digits, - and _",
            ));
        }
        Ok(Nurl {
            spki_hash: spki_hash.to_owned(),
            host,
            port,
            swissnum: path.to_owned(),
        })
    }

    /// The server's base URL, `https://HOST:PORT`.
    pub(crate) fn base_url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// `HOST:PORT` or `[V6]:PORT`.
fn split_host_port(authority: &str) -> Result<(String, u16), StorageError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unclosed [ in the IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("no :PORT after the host"))?;
        (host, port)
    } else {
        authority
            .rsplit_once(':')
            .ok_or_else(|| bad("no :PORT after the host"))?
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
    {
        return Err(bad(format!("invalid host {:?}", printable(host))));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 && !port.starts_with('+') => p,
        _ => return Err(bad(format!("invalid port {:?}", printable(port)))),
    };
    Ok((host.to_owned(), port))
}

/// A short, printable excerpt of input quoted in an error.
fn printable(s: &str) -> String {
    s.chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl fmt::Display for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.base_url())
    }
}

impl fmt::Debug for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nurl")
            .field("spki_hash", &self.spki_hash)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("swissnum", &"<secret>")
            .finish()
    }
}

/// One storage server reachable over HTTPS.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    /// Its server id (`v0-...`, the `key_s` of its announcement), or for a
    /// server given by NURL only, `nurl:SPKI-HASH`.
    pub(crate) id: String,
    /// Its nickname (may be empty).
    pub(crate) nickname: String,
    /// Where and how to reach it.
    pub(crate) nurl: Nurl,
    /// The seed of the server permutation (`storage_client.py`
    /// `_parse_announcement`).
    pub(crate) permutation_seed: Vec<u8>,
    /// The lease seed: the Foolscap tub id of the announced fURL (20 bytes),
    /// which Tahoe 1.20 uses for HTTPS servers too
    /// (`HTTPNativeStorageServer.get_lease_seed`).
    pub(crate) lease_seed: [u8; 20],
}

impl Server {
    /// How the server is named in messages: nickname and address.
    pub(crate) fn label(&self) -> String {
        if self.nickname.is_empty() {
            self.nurl.to_string()
        } else {
            format!("{} ({})", self.nickname, self.nurl)
        }
    }

    /// A server given by its NURL alone (a static list in config). Its
    /// permutation seed is the SHA-256 of its SPKI hash: Tahoe's fallback
    /// for a server id that is not a `v0-` key, so the order is stable
    /// though not the gateway's (the gateway permutes by the announced seed).
    pub(crate) fn from_nurl(text: &str) -> Result<Server, StorageError> {
        let nurl = Nurl::parse(text)?;
        let id = format!("nurl:{}", nurl.spki_hash);
        // No fURL, no tub id: a stable stand-in, so leases renew across
        // runs, though not the gateway's own lease on that server.
        let mut lease_seed = [0u8; 20];
        lease_seed.copy_from_slice(&Sha256::digest(format!("lease:{id}").as_bytes())[..20]);
        Ok(Server {
            lease_seed,
            permutation_seed: Sha256::digest(id.as_bytes()).to_vec(),
            id,
            nickname: String::new(),
            nurl,
        })
    }
}

/// One announcement of an announcement cache or of `servers.yaml`.
#[derive(Deserialize)]
struct Ann {
    #[serde(rename = "anonymous-storage-FURL", default)]
    furl: Option<String>,
    #[serde(rename = "anonymous-storage-NURLs", default)]
    nurls: Vec<String>,
    #[serde(rename = "permutation-seed-base32", default)]
    permutation_seed: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(rename = "service-name", default)]
    service_name: Option<String>,
}

#[derive(Deserialize)]
struct CacheEntry {
    ann: Ann,
    key_s: String,
}

#[derive(Deserialize)]
struct StaticEntry {
    ann: Ann,
}

#[derive(Deserialize)]
struct ServersYaml {
    #[serde(default)]
    storage: std::collections::BTreeMap<String, StaticEntry>,
}

/// The servers a gateway node knows over HTTPS: the announcements cached in
/// `NODE/private/introducer_*_cache.yaml` plus the static
/// `NODE/private/servers.yaml`, which wins for a server in both (as in
/// `storage_client.py`). Servers announcing no NURL (Foolscap only) are left
/// out; the result is sorted by server id.
pub(crate) fn servers_of_node(node_dir: &Path) -> Result<Vec<Server>, StorageError> {
    let private = node_dir.join("private");
    let err = |path: &Path, what: String| StorageError::Servers {
        path: path.display().to_string(),
        what,
    };
    let entries = std::fs::read_dir(&private).map_err(|e| err(&private, e.to_string()))?;
    let mut caches: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("introducer_") && n.ends_with("_cache.yaml"))
        })
        .collect();
    caches.sort();
    let mut by_id = std::collections::BTreeMap::new();
    for path in &caches {
        let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
        // An empty cache is `[]` or nothing at all.
        let list: Vec<CacheEntry> = if text.trim().is_empty() {
            Vec::new()
        } else {
            serde_saphyr::from_str(&text).map_err(|e| err(path, e.to_string()))?
        };
        for entry in list {
            if let Some(server) =
                server_of(&entry.key_s, entry.ann).map_err(|e| err(path, e.to_string()))?
            {
                by_id.insert(server.id.clone(), server);
            }
        }
    }
    let static_path = private.join("servers.yaml");
    match std::fs::read_to_string(&static_path) {
        Ok(text) if !text.trim().is_empty() => {
            let parsed: ServersYaml =
                serde_saphyr::from_str(&text).map_err(|e| err(&static_path, e.to_string()))?;
            for (id, entry) in parsed.storage {
                if let Some(server) =
                    server_of(&id, entry.ann).map_err(|e| err(&static_path, e.to_string()))?
                {
                    by_id.insert(server.id.clone(), server);
                }
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(&static_path, e.to_string())),
    }
    Ok(by_id.into_values().collect())
}

/// The server of one announcement, or `None` if it announces no NURL or is
/// not a storage service.
fn server_of(id: &str, ann: Ann) -> Result<Option<Server>, StorageError> {
    if ann.service_name.as_deref().is_some_and(|s| s != "storage") {
        return Ok(None);
    }
    let Some(first) = ann.nurls.first() else {
        return Ok(None);
    };
    let nurl = Nurl::parse(first)?;
    let seed = match &ann.permutation_seed {
        Some(seed) => base32::decode(seed).ok_or_else(|| StorageError::BadNurl {
            what: format!("server {id}: permutation-seed-base32 is not base32"),
        })?,
        None => match id.strip_prefix("v0-").and_then(base32::decode) {
            Some(key) if id.len() == 55 => key,
            _ => Sha256::digest(id.as_bytes()).to_vec(),
        },
    };
    let tubid = ann
        .furl
        .as_deref()
        .and_then(|f| f.strip_prefix("pb://"))
        .and_then(|f| f.split_once('@'))
        .and_then(|(t, _)| base32::decode(&t.to_ascii_lowercase()))
        .and_then(|t| <[u8; 20]>::try_from(t).ok())
        .ok_or_else(|| StorageError::BadNurl {
            what: format!("server {id}: no Foolscap fURL with a 20-byte tub id (the lease seed)"),
        })?;
    Ok(Some(Server {
        lease_seed: tubid,
        id: id.to_owned(),
        nickname: ann.nickname.unwrap_or_default(),
        nurl,
        permutation_seed: seed,
    }))
}

/// The servers in Tahoe's order for a storage index: sorted by
/// `SHA1(storage_index + permutation_seed)` (`storage_client.py`
/// `get_servers_for_psi`, `hashutil.permute_server_hash`).
pub(crate) fn permuted<'a>(servers: &'a [Server], storage_index: &[u8]) -> Vec<&'a Server> {
    let mut keyed: Vec<([u8; 20], &Server)> = servers
        .iter()
        .map(|s| {
            let mut h = Sha1::new();
            h.update(storage_index);
            h.update(&s.permutation_seed);
            (h.finalize().into(), s)
        })
        .collect();
    keyed.sort_by_key(|k| k.0);
    keyed.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "l3gpnYQyUXC5rdU6cqLXIOmmCva4PX_AZx7LPGghKXI";
    const SWISS: &str = "cpvfysoatxtwixgnb2lttajmtew4uie6";

    #[test]
    fn parses_a_tahoe_nurl() {
        let n = Nurl::parse(&format!("pb://{HASH}@127.0.0.1:48997/{SWISS}#v=1")).unwrap();
        assert_eq!(n.spki_hash, HASH);
        assert_eq!(n.host, "127.0.0.1");
        assert_eq!(n.port, 48997);
        assert_eq!(n.swissnum, SWISS);
        assert_eq!(n.base_url(), "https://127.0.0.1:48997");
        let v6 = Nurl::parse(&format!("pb://{HASH}@[::1]:443/{SWISS}#v=1")).unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.base_url(), "https://[::1]:443");
        let name = Nurl::parse(&format!("pb://{HASH}@storage.example:443/{SWISS}#v=1")).unwrap();
        assert_eq!(name.host, "storage.example");
    }

    #[test]
    fn bad_nurls_say_what_is_wrong_without_the_swissnum() {
        let cases = [
            ("", "does not start with pb://"),
            (
                &format!("https://{HASH}@h:1/{SWISS}#v=1"),
                "does not start with pb://",
            ),
            (&format!("pb+tor://{HASH}@h.onion:1/{SWISS}#v=1"), "Tor"),
            (
                "pb://tzjcbmufkxyn56hxbhk4hxk3zqhdvpaq@tcp:127.0.0.1:48997/cpvfysoatxtwixgnb2lttajmtew4uie6",
                "no #v=1 fragment",
            ),
            (&format!("pb://{HASH}@h:1/{SWISS}#v=2"), "#v=2"),
            (&format!("pb://h:1/{SWISS}#v=1"), "no SPKI hash"),
            (&format!("pb://short@h:1/{SWISS}#v=1"), "SPKI hash"),
            (&format!("pb://{HASH}=@h:1/{SWISS}#v=1"), "SPKI hash"),
            (&format!("pb://{HASH}@h:1#v=1"), "no /SWISSNUM"),
            (&format!("pb://{HASH}@h:1/#v=1"), "empty swissnum"),
            (
                &format!("pb://{HASH}@h:1/{SWISS}/x#v=1"),
                "one path segment",
            ),
            (&format!("pb://{HASH}@h/{SWISS}#v=1"), "no :PORT"),
            (&format!("pb://{HASH}@h:0/{SWISS}#v=1"), "invalid port"),
            (&format!("pb://{HASH}@h:70000/{SWISS}#v=1"), "invalid port"),
            (&format!("pb://{HASH}@h:+1/{SWISS}#v=1"), "invalid port"),
            (&format!("pb://{HASH}@:1/{SWISS}#v=1"), "invalid host"),
            (&format!("pb://{HASH}@h st:1/{SWISS}#v=1"), "invalid host"),
            (&format!("pb://{HASH}@[::1/{SWISS}#v=1"), "unclosed ["),
        ];
        for (text, want) in cases {
            let err = Nurl::parse(text).unwrap_err().to_string();
            assert!(err.starts_with("invalid NURL: "), "{text}: {err}");
            assert!(err.contains(want), "{text}: {err} lacks {want}");
            assert!(!err.contains(SWISS), "{err}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_swissnum() {
        let n = Nurl::parse(&format!("pb://{HASH}@127.0.0.1:1/{SWISS}#v=1")).unwrap();
        assert!(!format!("{n:?}").contains(SWISS));
        assert!(!format!("{n}").contains(SWISS));
        let s = Server::from_nurl(&format!("pb://{HASH}@127.0.0.1:1/{SWISS}#v=1")).unwrap();
        assert!(!format!("{s:?}").contains(SWISS));
        assert!(!s.label().contains(SWISS));
    }

    #[test]
    fn reads_announcement_cache_and_static_servers() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        std::fs::create_dir(&private).unwrap();
        let seed =
            "gjwhs3t2mizhu2tmn54xe4dcpi2ws2tmnzugontnmryws4ttoi3wg5buomzxu2tbnvrdgnrtna3wom3znvqq";
        std::fs::write(
            private.join("introducer_default_cache.yaml"),
            format!(
                "- ann:\n    anonymous-storage-FURL: pb://tzjcbmufkxyn56hxbhk4hxk3zqhdvpaq@tcp:127.0.0.1:48997/{SWISS}\n    anonymous-storage-NURLs:\n    - pb://{HASH}@127.0.0.1:48997/{SWISS}#v=1\n    nickname: storage2\n    permutation-seed-base32: {seed}\n    service-name: storage\n  key_s: v0-2lynzb2zjloyrpbz5ijlnhg6mdqirsr7ct4s3zjamb363h7g3yma\n\
                 - ann:\n    anonymous-storage-FURL: pb://vg4vwqweqivfns7oqrfij3c24q7p4xqn@tcp:127.0.0.1:43401/a56cyzrzkryo5t5c6qapllmdfvlloxnh\n    nickname: foolscap-only\n    service-name: storage\n  key_s: v0-lj22lafmmleeavksjswrwmldxri5ek7pz5fdcjgut2l2csekexiq\n"
            ),
        )
        .unwrap();
        let servers = servers_of_node(dir.path()).unwrap();
        assert_eq!(servers.len(), 1, "the Foolscap-only server is left out");
        assert_eq!(servers[0].nickname, "storage2");
        assert_eq!(servers[0].nurl.port, 48997);
        assert_eq!(servers[0].permutation_seed, base32::decode(seed).unwrap());
        assert_eq!(
            servers[0].lease_seed.to_vec(),
            base32::decode("tzjcbmufkxyn56hxbhk4hxk3zqhdvpaq").unwrap()
        );

        // servers.yaml adds (or overrides) servers; a seedless v0- id seeds
        // with its key.
        std::fs::write(
            private.join("servers.yaml"),
            format!(
                "storage:\n  v0-lj22lafmmleeavksjswrwmldxri5ek7pz5fdcjgut2l2csekexiq:\n    ann:\n      nickname: static\n      anonymous-storage-FURL: pb://vg4vwqweqivfns7oqrfij3c24q7p4xqn@tcp:127.0.0.1:43401/x\n      anonymous-storage-NURLs: [\"pb://{HASH}@127.0.0.1:4000/{SWISS}#v=1\"]\n"
            ),
        )
        .unwrap();
        let servers = servers_of_node(dir.path()).unwrap();
        assert_eq!(servers.len(), 2);
        let st = servers.iter().find(|s| s.nickname == "static").unwrap();
        assert_eq!(
            st.permutation_seed,
            base32::decode("lj22lafmmleeavksjswrwmldxri5ek7pz5fdcjgut2l2csekexiq").unwrap()
        );

        // A broken cache is a clear error naming the file.
        std::fs::write(private.join("introducer_x_cache.yaml"), "- ann: [\n").unwrap();
        let err = servers_of_node(dir.path()).unwrap_err().to_string();
        assert!(err.contains("introducer_x_cache.yaml"), "{err}");
        std::fs::write(
            private.join("introducer_x_cache.yaml"),
            format!("- ann:\n    anonymous-storage-FURL: pb://vg4vwqweqivfns7oqrfij3c24q7p4xqn@tcp:h:1/x\n    anonymous-storage-NURLs: [\"pb://{HASH}@h:1/{SWISS}#v=9\"]\n  key_s: v0-x\n"),
        )
        .unwrap();
        let err = servers_of_node(dir.path()).unwrap_err().to_string();
        assert!(err.contains("#v=9") && !err.contains(SWISS), "{err}");
        // No node dir at all.
        assert!(servers_of_node(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn permutation_is_tahoes() {
        // Tahoe orders by sha1(storage_index + seed): check against the
        // digest computed independently for two seeds.
        let a = Server {
            id: "a".into(),
            nickname: "a".into(),
            nurl: Nurl::parse(&format!("pb://{HASH}@h:1/{SWISS}#v=1")).unwrap(),
            permutation_seed: b"seed-a".to_vec(),
            lease_seed: [0; 20],
        };
        let mut b = a.clone();
        b.id = "b".into();
        b.permutation_seed = b"seed-b".to_vec();
        let si = [7u8; 16];
        let key = |s: &[u8]| {
            let mut v = si.to_vec();
            v.extend_from_slice(s);
            Sha1::digest(&v)
        };
        let ab = [a.clone(), b.clone()];
        let order = permuted(&ab, &si);
        let a_first = key(b"seed-a") < key(b"seed-b");
        assert_eq!(order[0].id, if a_first { "a" } else { "b" });
        let ba = [b, a];
        let order2 = permuted(&ba, &si);
        assert_eq!(order[0].id, order2[0].id, "input order does not matter");
    }
}
