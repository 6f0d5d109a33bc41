//! The facade of the native storage path (issue 17 item 3): from the
//! `destination.native` config, loads the node settings (convergence and
//! lease secrets, k/happy/N, the servers) and offers what backup needs:
//! [`Native::upload_file`], [`Native::upload_dir`] and [`Native::download`].
//!
//! [`setup`] decides between the native path and the gateway: no server
//! NURLs found is a [`Setup::Fallback`] (one warning, the gateway is used)
//! unless `destination.native.required`; a secret that cannot be read or
//! has the wrong length is always an error: it is a mistake in the config,
//! and falling back would hide it. Secrets are never in a message or in
//! `Debug` output.

use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::immutable::{LeaseSecret, UploadError, Uploader};
use super::nurl::{Server, servers_of_node};
use super::read::{ReadFailure, Readers, with_reader};
use crate::chk::cap::ChkCap;
use crate::chk::dirnode::{Child, pack};
use crate::chk::{ChkError, LIT_THRESHOLD, Params};
use crate::config::{Config, NativeStorage, StorageMode};
use crate::tahoe::base32;

/// Tahoe's defaults when `tahoe.cfg` does not set them (`client.py`
/// `DEFAULT_ENCODING_PARAMETERS`): 3-of-10, happy 7.
const DEFAULT_NEEDED: u16 = 3;
const DEFAULT_HAPPY: u16 = 7;
const DEFAULT_TOTAL: u16 = 10;

/// The most bytes read of a secret file or `tahoe.cfg`: both are small, and
/// a wrong path (a device, a huge file) must not be read whole.
const MAX_SMALL_FILE: u64 = 1024 * 1024;

/// Why the native path cannot be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NativeError {
    /// A setting is missing or wrong (a secret file unreadable or of the
    /// wrong length, no node directory and no secret file, a bad
    /// `tahoe.cfg`).
    #[error("destination.native: {0}")]
    Config(String),
    /// `destination.native.required` is true and the native path cannot
    /// be used.
    #[error("destination.native.required is true, but {0}")]
    Required(String),
}

/// What [`setup`] decided.
#[derive(Debug)]
pub(crate) enum Setup {
    /// The native path is ready.
    Ready(Native),
    /// Use the gateway: the reason, for the one warning.
    Fallback(String),
}

/// The native storage path, ready to upload and download.
pub(crate) struct Native {
    uploader: Uploader,
    /// A client per server, kept for the run: reads reuse its connections.
    readers: Readers,
    /// Warnings about the settings (loose secret file permissions), for the
    /// caller to log once.
    pub(crate) warnings: Vec<String>,
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Native")
            .field("servers", &self.uploader.servers.len())
            .field("params", &self.uploader.params)
            .field("happy", &self.uploader.happy)
            .finish_non_exhaustive()
    }
}

/// k, happy and N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Shares {
    /// `shares.needed`.
    pub(crate) needed: u16,
    /// `shares.happy`.
    pub(crate) happy: u16,
    /// `shares.total`.
    pub(crate) total: u16,
}

/// The native storage path as a run uses it (issue 17 item 3): the facade,
/// whether a failure may fall back to the gateway, and whether the one
/// fallback warning was given. Every command gets it from its gateway
/// client ([`crate::tahoe::Client::native`]), set by the one place that
/// opens the client (`commands::context`).
pub(crate) struct NativePath {
    native: Native,
    /// `destination.native.required`: a failure stops the work instead of
    /// falling back to the gateway.
    required: bool,
    /// Whether the one fallback warning was given.
    warned: AtomicBool,
}

impl std::fmt::Debug for NativePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativePath")
            .field("native", &self.native)
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl NativePath {
    pub(crate) fn new(native: Native, required: bool) -> NativePath {
        NativePath {
            native,
            required,
            warned: AtomicBool::new(false),
        }
    }

    /// The facade.
    pub(crate) fn native(&self) -> &Native {
        &self.native
    }

    /// `destination.native.required`.
    pub(crate) fn required(&self) -> bool {
        self.required
    }

    /// Logs, once per run, that the native path failed (`why`) and `doing`
    /// (e.g. `uploading`) goes through the gateway instead.
    pub(crate) fn warn_fallback(&self, why: &dyn std::fmt::Display, doing: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the native storage path failed ({why}); {doing} through the gateway instead"
            );
        }
    }
}

/// The native storage path when `destination.storage: native` can be set
/// up; `None` for the gateway (configured, or the fallback, with one
/// warning). The settings' own warnings (loose secret file permissions)
/// are logged here.
pub(crate) fn from_config(config: &Config) -> Result<Option<NativePath>, NativeError> {
    if config.destination.storage != StorageMode::Native {
        return Ok(None);
    }
    let native = &config.destination.native;
    match setup(native)? {
        Setup::Ready(n) => {
            for warning in &n.warnings {
                tracing::warn!("{warning}");
            }
            Ok(Some(NativePath::new(n, native.required)))
        }
        Setup::Fallback(why) => {
            tracing::warn!("destination.storage is native, but {why}: using the gateway");
            Ok(None)
        }
    }
}

/// Loads the native settings of `cfg`.
pub(crate) fn setup(cfg: &NativeStorage) -> Result<Setup, NativeError> {
    let mut warnings = Vec::new();
    let node = cfg.node_dir.as_deref();
    let secret_path = |explicit: &Option<PathBuf>, name: &str, key: &str| match (explicit, node) {
        (Some(path), _) => Ok(path.clone()),
        (None, Some(node)) => Ok(node.join("private").join(name)),
        (None, None) => Err(NativeError::Config(format!(
            "neither {key} nor node_dir is set"
        ))),
    };
    let conv_path = secret_path(&cfg.convergence_file, "convergence", "convergence_file")?;
    let lease_path = secret_path(&cfg.lease_secret_file, "secret", "lease_secret_file")?;
    let convergence = read_secret(&conv_path, "convergence secret", &mut warnings)?;
    let lease_text = read_secret_text(&lease_path, &mut warnings)?;
    let lease = LeaseSecret::parse(&lease_text).ok_or_else(|| {
        NativeError::Config(format!(
            "{}: not a lease secret (32 bytes in base32, as Tahoe writes private/secret)",
            lease_path.display()
        ))
    })?;
    let shares = match node {
        Some(node) => shares_of_node(node)?,
        None => Shares {
            needed: DEFAULT_NEEDED,
            happy: DEFAULT_HAPPY,
            total: DEFAULT_TOTAL,
        },
    };
    let params =
        Params::new(shares.needed, shares.total).map_err(|e| NativeError::Config(e.to_string()))?;
    let servers = match servers_of(cfg) {
        Ok(servers) if !servers.is_empty() => servers,
        Ok(_) => return fallback(cfg, "no storage server NURLs were found".into()),
        Err(why) => return fallback(cfg, why),
    };
    let readers = match Readers::new(&servers) {
        Ok(readers) => readers,
        Err(e) => return fallback(cfg, e.to_string()),
    };
    Ok(Setup::Ready(Native {
        readers,
        uploader: Uploader {
            servers,
            params,
            happy: usize::from(shares.happy),
            convergence,
            lease,
        },
        warnings,
    }))
}

/// The fallback decision: the gateway with a warning, or an error when
/// the native path is required.
fn fallback(cfg: &NativeStorage, why: String) -> Result<Setup, NativeError> {
    if cfg.required {
        Err(NativeError::Required(why))
    } else {
        Ok(Setup::Fallback(why))
    }
}

/// The static list, else the node's announcement cache.
fn servers_of(cfg: &NativeStorage) -> Result<Vec<Server>, String> {
    if !cfg.servers.is_empty() {
        // Checked when the config was read; an error here names no NURL.
        return cfg
            .servers
            .iter()
            .map(|text| Server::from_nurl(text))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string());
    }
    match &cfg.node_dir {
        Some(node) => servers_of_node(node).map_err(|e| e.to_string()),
        None => Ok(Vec::new()),
    }
}

/// Reads a small file as text, warning when others may read it.
fn read_secret_text(path: &Path, warnings: &mut Vec<String>) -> Result<String, NativeError> {
    let err = |what: String| NativeError::Config(format!("{}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| err(format!("cannot open it: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| err(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    if let Some(warning) = loose_permissions(path, &meta) {
        warnings.push(warning);
    }
    let mut text = String::new();
    file.take(MAX_SMALL_FILE)
        .read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read it as text: {e}")))?;
    Ok(text)
}

/// Reads a 32-byte base32 secret (`private/convergence`).
fn read_secret(
    path: &Path,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<u8>, NativeError> {
    let text = read_secret_text(path, warnings)?;
    match base32::decode(text.trim()) {
        Some(bytes) if bytes.len() == 32 => Ok(bytes),
        Some(bytes) => Err(NativeError::Config(format!(
            "{}: the {what} is {} bytes long; Tahoe's is 32 (52 characters of base32)",
            path.display(),
            bytes.len()
        ))),
        None => Err(NativeError::Config(format!(
            "{}: the {what} is not base32 text (as Tahoe writes it)",
            path.display()
        ))),
    }
}

/// A warning when group or others may read the secret file *and* its
/// directory lets them reach it. The node's own `private/` is 0700 with
/// files Tahoe writes 0644 inside: that is safe and not warned about. The
/// file is not changed: it may be the node's own.
fn loose_permissions(path: &Path, meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return None;
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir_mode = std::fs::metadata(parent.unwrap_or(Path::new(".")))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o755);
    if dir_mode & 0o011 == 0 {
        return None;
    }
    Some(format!(
        "{}: a secret file others may read (mode {mode:04o}); chmod 600 it",
        path.display()
    ))
}

/// `[client] shares.needed`, `shares.happy` and `shares.total` of the
/// node's `tahoe.cfg`, with Tahoe's defaults for those not set.
pub(crate) fn shares_of_node(node: &Path) -> Result<Shares, NativeError> {
    let path = node.join("tahoe.cfg");
    let err = |what: String| NativeError::Config(format!("{}: {what}", path.display()));
    let file = std::fs::File::open(&path).map_err(|e| err(format!("cannot open it: {e}")))?;
    let mut text = String::new();
    file.take(MAX_SMALL_FILE)
        .read_to_string(&mut text)
        .map_err(|e| err(format!("cannot read it: {e}")))?;
    shares_of_cfg(&text).map_err(err)
}

/// The `[client]` share settings of a `tahoe.cfg` text (configparser
/// syntax: `key = value` or `key: value`, `#`/`;` comments).
pub(crate) fn shares_of_cfg(text: &str) -> Result<Shares, String> {
    let mut shares = Shares {
        needed: DEFAULT_NEEDED,
        happy: DEFAULT_HAPPY,
        total: DEFAULT_TOTAL,
    };
    let mut in_client = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_client = section.trim() == "client";
            continue;
        }
        if !in_client {
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            continue;
        };
        let slot = match key.trim() {
            "shares.needed" => &mut shares.needed,
            "shares.happy" => &mut shares.happy,
            "shares.total" => &mut shares.total,
            _ => continue,
        };
        *slot = value
            .trim()
            .parse()
            .map_err(|_| format!("line {}: {} is not a number", i + 1, key.trim()))?;
    }
    if shares.needed == 0
        || shares.needed > shares.total
        || shares.happy == 0
        || shares.happy > shares.total
    {
        return Err(format!(
            "[client] shares.needed {}, shares.happy {}, shares.total {}: need \
             1 <= needed <= total and 1 <= happy <= total",
            shares.needed, shares.happy, shares.total
        ));
    }
    Ok(shares)
}

impl Native {
    /// Uploads `size` bytes of `reader` (read twice: convergent
    /// encryption) and returns the `URI:CHK:` or `URI:LIT:` cap.
    pub(crate) fn upload_file<R: Read + Seek>(
        &self,
        reader: &mut R,
        size: u64,
    ) -> Result<String, UploadError> {
        Ok(self.uploader.upload(reader, size)?.cap)
    }

    /// Packs and uploads an immutable directory as `mkdir-immutable` does;
    /// returns its `URI:DIR2-CHK:` or `URI:DIR2-LIT:` cap.
    pub(crate) fn upload_dir(&self, children: &[Child<'_>]) -> Result<String, UploadError> {
        let packed = pack(children)?;
        if packed.len() as u64 <= LIT_THRESHOLD {
            return Ok(format!("URI:DIR2-LIT:{}", base32::encode(&packed)));
        }
        let size = packed.len() as u64;
        let cap = self.uploader.upload(&mut Cursor::new(packed), size)?.cap;
        // The same object as a file: only the cap's prefix says directory.
        let mut cap = ChkCap::parse(&cap)?;
        cap.dir = true;
        Ok(cap.to_uri())
    }

    /// [`Native::upload_dir`] of a `mkdir-immutable` request body.
    pub(crate) fn upload_dir_json(&self, body: &str) -> Result<String, UploadError> {
        let children = children_of_mkdir_body(body)
            .map_err(|e| ChkError::Dir(format!("a directory body that does not parse: {e}")))?;
        let children: Vec<Child<'_>> = children
            .iter()
            .map(|c| Child {
                name: &c.name,
                cap: &c.cap,
                metadata: c.metadata,
            })
            .collect();
        self.upload_dir(&children)
    }

    /// Downloads the object of a `URI:CHK:` or `URI:DIR2-CHK:` cap into
    /// `out`, every hash checked.
    pub(crate) fn download(
        &self,
        cap: &str,
        out: &mut impl std::io::Write,
    ) -> Result<(), UploadError> {
        let cap =
            ChkCap::parse(cap).map_err(|e| UploadError::Chk(ChkError::BadCap(e.to_string())))?;
        let mut copy = |r: &mut dyn Read| std::io::copy(r, out);
        match with_reader(&self.readers, &cap, &mut copy) {
            Ok(_) => Ok(()),
            Err(ReadFailure::Native(e)) => Err(UploadError::Chk(e)),
            Err(ReadFailure::Sink(e)) => Err(UploadError::Chk(ChkError::io("writing", e))),
            Err(ReadFailure::Incomplete { .. }) => Err(UploadError::Chk(ChkError::Corrupt(
                "the object is longer than its cap says".into(),
            ))),
        }
    }

    /// The readers of the storage servers ([`super::read`]).
    pub(crate) fn readers(&self) -> &Readers {
        &self.readers
    }
}

/// One child of a `mkdir-immutable` request body, as spans of it.
#[derive(Debug, PartialEq)]
pub(crate) struct BodyChild<'a> {
    /// The name, unescaped.
    pub(crate) name: String,
    /// The read cap, unescaped.
    pub(crate) cap: String,
    /// The metadata object's JSON text exactly as in the body (its key order
    /// is what the gateway keeps, so it must not go through a map).
    pub(crate) metadata: &'a str,
}

/// The children of a `POST /uri?t=mkdir-immutable` body
/// (`{NAME: [TYPE, {"ro_uri": CAP, "metadata": {...}}], ...}`, as
/// `edge::children_json` writes it), so the native path packs exactly what
/// the gateway would.
pub(crate) fn children_of_mkdir_body(body: &str) -> Result<Vec<BodyChild<'_>>, String> {
    let mut p = Scan { s: body, i: 0 };
    let mut out = Vec::new();
    p.expect(b'{')?;
    if p.peek() == Some(b'}') {
        return Ok(out);
    }
    loop {
        let name = p.string()?;
        p.expect(b':')?;
        p.expect(b'[')?;
        let _kind = p.string()?;
        p.expect(b',')?;
        p.expect(b'{')?;
        let (mut cap, mut metadata) = (None, None);
        loop {
            let key = p.string()?;
            p.expect(b':')?;
            let value = p.value()?;
            match key.as_str() {
                "ro_uri" => {
                    cap = Some(serde_json::from_str::<String>(value).map_err(|e| e.to_string())?)
                }
                "metadata" => metadata = Some(value),
                _ => {}
            }
            if p.next_of(b',', b'}')? == b'}' {
                break;
            }
        }
        p.expect(b']')?;
        out.push(BodyChild {
            name,
            cap: cap.ok_or("a child without ro_uri")?,
            metadata: metadata.unwrap_or("{}"),
        });
        if p.next_of(b',', b'}')? == b'}' {
            break;
        }
    }
    match p.peek() {
        None => Ok(out),
        Some(_) => Err(format!("trailing bytes at byte {}", p.i)),
    }
}

/// A cursor over JSON text that finds the spans of values.
struct Scan<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Scan<'a> {
    fn skip_ws(&mut self) {
        while matches!(
            self.s.as_bytes().get(self.i),
            Some(b' ' | b'\n' | b'\r' | b'\t')
        ) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.as_bytes().get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn next_of(&mut self, a: u8, b: u8) -> Result<u8, String> {
        match self.peek() {
            Some(c) if c == a || c == b => {
                self.i += 1;
                Ok(c)
            }
            _ => Err(format!(
                "expected '{}' or '{}' at byte {}",
                a as char, b as char, self.i
            )),
        }
    }

    /// A JSON string, unescaped.
    fn string(&mut self) -> Result<String, String> {
        let raw = self.value()?;
        if !raw.starts_with('"') {
            return Err(format!("expected a string before byte {}", self.i));
        }
        serde_json::from_str(raw).map_err(|e| e.to_string())
    }

    /// The text of the next value (a string, object, array or scalar).
    fn value(&mut self) -> Result<&'a str, String> {
        self.skip_ws();
        let bytes = self.s.as_bytes();
        let start = self.i;
        let mut depth = 0usize;
        let mut in_string = false;
        while let Some(&c) = bytes.get(self.i) {
            self.i += 1;
            if in_string {
                match c {
                    b'\\' => self.i += 1,
                    b'"' => {
                        in_string = false;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match c {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t' if depth == 0 => {
                    self.i -= 1;
                    break;
                }
                _ => {}
            }
        }
        if in_string || depth > 0 || self.i == start || self.i > bytes.len() {
            return Err(format!("a value cut short at byte {start}"));
        }
        self.s
            .get(start..self.i)
            .ok_or_else(|| format!("a value cut short at byte {start}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A node directory with the given files (relative path, content).
    fn node(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("private")).expect("mkdir");
        std::fs::set_permissions(
            dir.path().join("private"),
            std::fs::Permissions::from_mode(0o700),
        )
        .expect("chmod");
        for (path, content) in files {
            std::fs::write(dir.path().join(path), content).expect("write");
        }
        dir
    }

    fn secret() -> String {
        format!("{}\n", base32::encode(&[7u8; 32]))
    }

    const NURL: &str =
        "pb://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:9999/swissnum#v=1";

    fn cfg(node: Option<&Path>) -> NativeStorage {
        NativeStorage {
            node_dir: node.map(Path::to_path_buf),
            convergence_file: None,
            lease_secret_file: None,
            servers: Vec::new(),
            required: false,
        }
    }

    fn config_error(result: Result<Setup, NativeError>) -> String {
        match result {
            Err(NativeError::Config(e)) => e,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn a_node_dir_gives_secrets_shares_and_servers() {
        let s = secret();
        let dir = node(&[
            ("private/convergence", &s),
            ("private/secret", &s),
            (
                "tahoe.cfg",
                "[node]\nnickname = x\n[client]\nshares.needed = 2\nshares.happy: 3\nshares.total = 3\n",
            ),
        ]);
        let mut c = cfg(Some(dir.path()));
        c.servers = vec![NURL.to_owned()];
        let Setup::Ready(native) = setup(&c).expect("setup") else {
            panic!("expected the native path");
        };
        assert_eq!(native.uploader.params, Params::new(2, 3).expect("params"));
        assert_eq!(native.uploader.happy, 3);
        assert_eq!(native.uploader.convergence, vec![7u8; 32]);
        assert_eq!(native.uploader.servers.len(), 1);
        assert!(native.warnings.is_empty(), "{:?}", native.warnings);
        // Nothing secret in Debug output.
        let debug = format!("{native:?}");
        assert!(
            !debug.contains("swissnum") && !debug.contains(s.trim()),
            "{debug}"
        );
    }

    #[test]
    fn missing_nurls_fall_back_unless_required() {
        let s = secret();
        // A node with no announcement cache: no servers.
        let dir = node(&[
            ("private/convergence", &s),
            ("private/secret", &s),
            ("tahoe.cfg", ""),
        ]);
        let mut c = cfg(Some(dir.path()));
        match setup(&c).expect("setup") {
            Setup::Fallback(why) => assert!(why.contains("no storage server"), "{why}"),
            other => panic!("expected the fallback, got {other:?}"),
        }
        c.required = true;
        let err = setup(&c).expect_err("required");
        assert!(matches!(err, NativeError::Required(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("destination.native.required is true, but "),
            "{err}"
        );
    }

    #[test]
    fn a_bad_secret_is_an_error_never_a_fallback() {
        let s = secret();
        let short = base32::encode(&[1u8; 16]);
        let dir = node(&[
            ("private/convergence", &short),
            ("private/secret", &s),
            ("tahoe.cfg", ""),
        ]);
        let e = config_error(setup(&cfg(Some(dir.path()))));
        assert!(e.contains("is 16 bytes long; Tahoe's is 32"), "{e}");
        assert!(!e.contains(&short), "the secret is not quoted: {e}");

        let dir = node(&[
            ("private/convergence", "not base32!\n"),
            ("private/secret", &s),
        ]);
        let e = config_error(setup(&cfg(Some(dir.path()))));
        assert!(e.contains("not base32"), "{e}");

        let dir = node(&[("private/convergence", &s), ("private/secret", "AAAA\n")]);
        let e = config_error(setup(&cfg(Some(dir.path()))));
        assert!(e.contains("not a lease secret"), "{e}");

        // Unreadable: missing, and a directory.
        let dir = node(&[("private/secret", &s)]);
        let e = config_error(setup(&cfg(Some(dir.path()))));
        assert!(
            e.contains("convergence") && e.contains("cannot open it"),
            "{e}"
        );
        let mut c = cfg(Some(dir.path()));
        c.convergence_file = Some(dir.path().join("private"));
        let e = config_error(setup(&c));
        assert!(e.contains("not a regular file"), "{e}");

        // Neither node_dir nor the secret files.
        let e = config_error(setup(&cfg(None)));
        assert!(
            e.contains("neither convergence_file nor node_dir is set"),
            "{e}"
        );
    }

    #[test]
    fn explicit_files_without_a_node_use_tahoe_defaults_and_warn_when_loose() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let conv = dir.path().join("conv");
        let lease = dir.path().join("lease");
        std::fs::write(&conv, secret()).expect("write");
        std::fs::write(&lease, secret()).expect("write");
        std::fs::set_permissions(&conv, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::set_permissions(&lease, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut c = cfg(None);
        c.convergence_file = Some(conv);
        c.lease_secret_file = Some(lease);
        c.servers = vec![NURL.to_owned()];
        let Setup::Ready(native) = setup(&c).expect("setup") else {
            panic!("expected the native path");
        };
        assert_eq!(native.uploader.params, Params::new(3, 10).expect("params"));
        assert_eq!(native.uploader.happy, 7);
        assert_eq!(native.warnings.len(), 1, "{:?}", native.warnings);
        assert!(native.warnings[0].contains("lease") && native.warnings[0].contains("0644"));
    }

    #[test]
    fn tahoe_cfg_share_settings() {
        let s = shares_of_cfg("# c\n[client]\n; x\nshares.needed=2\n[storage]\nshares.total = 9\n")
            .expect("parse");
        assert_eq!(
            s,
            Shares {
                needed: 2,
                happy: 7,
                total: 10
            }
        );
        let e = shares_of_cfg("[client]\nshares.needed = two\n").expect_err("bad");
        assert!(e.contains("line 2: shares.needed is not a number"), "{e}");
        let e = shares_of_cfg("[client]\nshares.needed = 4\nshares.total = 3\n").expect_err("bad");
        assert!(e.contains("need 1 <= needed <= total"), "{e}");
    }

    #[test]
    fn mkdir_bodies_split_into_children_keeping_metadata_text() {
        let body = r#"{"a\"b":["filenode",{"ro_uri":"URI:LIT:x","metadata":{"z":1,"a":{"k":"}]"}}}],"d":["dirnode",{"ro_uri":"URI:DIR2-LIT:","metadata":{}}]}"#;
        let children = children_of_mkdir_body(body).expect("parses");
        assert_eq!(
            children,
            vec![
                BodyChild {
                    name: "a\"b".into(),
                    cap: "URI:LIT:x".into(),
                    metadata: r#"{"z":1,"a":{"k":"}]"}}"#,
                },
                BodyChild {
                    name: "d".into(),
                    cap: "URI:DIR2-LIT:".into(),
                    metadata: "{}",
                },
            ]
        );
        assert_eq!(children_of_mkdir_body("{}").expect("empty"), vec![]);
        for bad in [
            "",
            "{",
            r#"{"a":["filenode",{"metadata":{}}]}"#,
            r#"{"a":["filenode",{"ro_uri":"x""#,
        ] {
            assert!(children_of_mkdir_body(bad).is_err(), "{bad}");
        }
    }
}
