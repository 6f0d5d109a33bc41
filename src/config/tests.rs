use super::node::{Kind, Node};
use super::*;

/// Loads the base plus one layer named `cfg.yaml`.
fn load_one(yaml: &str) -> Result<Loaded, ConfigError> {
    load_from_strs(&[("cfg.yaml", yaml)])
}

fn config(yaml: &str) -> Config {
    match load_one(yaml) {
        Ok(loaded) => loaded.config,
        Err(err) => panic!("config should load: {err}"),
    }
}

/// The error message for a config that must fail.
fn error(yaml: &str) -> String {
    match load_one(yaml) {
        Ok(loaded) => panic!("config should fail, got {:?}", loaded.config),
        Err(err) => err.to_string(),
    }
}

fn assert_error(yaml: &str, expected: &str) {
    let message = error(yaml);
    assert!(
        message.contains(expected),
        "error {message:?} should contain {expected:?}"
    );
}

/// The dotted keys of the leaves of a YAML tree, in document order.
fn leaf_keys(node: &Node, prefix: &str, out: &mut Vec<String>) {
    let is_leaf = Config::keys().iter().any(|k| k == prefix);
    match &node.kind {
        Kind::Map(entries) if !is_leaf => {
            for entry in entries {
                leaf_keys(&entry.value, &schema::join(prefix, &entry.key), out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

fn yaml_keys(text: &str) -> Vec<String> {
    let node = node::parse(text).expect("valid YAML");
    let mut keys = Vec::new();
    leaf_keys(&node, "", &mut keys);
    keys
}

// ------------------------------------------------------------ base config

#[test]
fn base_config_has_the_documented_defaults() {
    let loaded = load_from_strs(&[]).expect("base loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = loaded.config;
    assert_eq!(c.source.path, None);
    assert_eq!(c.source.queue.path, None);
    assert!(c.source.queue.check_mtime);
    assert_eq!(c.source.entry_cache.path, None);
    assert_eq!(c.source.entry_cache.commit_after.queries, Some(50));
    assert_eq!(c.source.entry_cache.commit_after.seconds, Some(10.0));
    assert!(c.source.one_file_system);
    assert!(c.source.exclude_caches);
    assert_eq!(c.destination.url, "http://localhost:3456/uri");
    assert!(c.destination.result.print_to_stdout);
    assert_eq!(c.destination.result.append_to_file, None);
    assert_eq!(c.destination.result.append_to_lafs_dir, None);
    let xz = &c.destination.encoding.xz;
    assert!(xz.enabled);
    assert_eq!(xz.min_size, Some(5120));
    assert_eq!(xz.options, None);
    assert!(xz.path_filter.is_empty());
    // zstd since issue 16: an xz encoder at preset 6 alone takes ~94 MiB.
    assert_eq!(c.destination.encoding.codec, Codec::Zstd);
    assert_eq!(xz.max_parallel, 1);
    assert!(c.filter.is_empty());
    assert!(!c.operation.queue_only);
    assert!(!c.operation.reuse_queue);
    assert!(!c.operation.disable_deduplication);
    assert!(!c.operation.try_resume);
    assert_eq!(
        c.operation.timeouts.updates,
        Timeouts::PerAttempt(vec![1200.0, 2400.0, 3600.0])
    );
    assert_eq!(c.operation.rate_limit.bytes, None);
    assert_eq!(c.operation.rate_limit.objects, None);
    assert_eq!(c.http.retry.attempts, 4);
    assert_eq!(
        c.http.retry.delay,
        RetryDelay::PerRetry(vec![10.0, 60.0, 600.0])
    );
    assert_eq!(c.logging.level, LogLevel::Warning);
    assert_eq!(Config::default(), c);
}

#[test]
fn base_config_sets_every_key_in_schema_order() {
    assert_eq!(yaml_keys(BASE_YAML), Config::keys());
}

#[test]
fn dump_lists_every_key_in_base_order() {
    assert_eq!(yaml_keys(&Config::builtin().to_yaml()), Config::keys());
}

#[test]
fn docs_describe_every_key() {
    let docs = include_str!("../../docs/config.md");
    for key in Config::keys() {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/config.md lacks `{key}`"
        );
    }
    for (key, _) in IGNORED_KEYS {
        assert!(
            docs.contains(&format!("`{key}`")),
            "docs/config.md lacks `{key}`"
        );
    }
}

#[test]
fn empty_and_comment_only_layers_change_nothing() {
    let base = Config::builtin();
    assert_eq!(config(""), base);
    assert_eq!(config("# nothing here\n"), base);
    assert_eq!(config("---\n"), base);
    assert_eq!(config("source:\nlogging:\n"), base);
    assert_eq!(config("source: {}\n"), base);
}

// ------------------------------------------------------------ layering

#[test]
fn later_scalars_override_earlier_ones() {
    let loaded = load_from_strs(&[
        (
            "a.yaml",
            "source:\n  path: /a\n  queue: {check_mtime: false}\n",
        ),
        ("b.yaml", "source:\n  path: /b\n"),
    ])
    .expect("loads");
    assert_eq!(loaded.config.source.path.as_deref(), Some("/b"));
    // Untouched by b.yaml: mappings merge key by key.
    assert!(!loaded.config.source.queue.check_mtime);
}

#[test]
fn lists_replace_lists() {
    let loaded = load_from_strs(&[
        ("a.yaml", "filter: ['-^/a/', '-^/b/']\n"),
        ("b.yaml", "filter: ['+^/c/']\n"),
        ("c.yaml", "operation: {timeouts: {updates: [5]}}\n"),
    ])
    .expect("loads");
    assert_eq!(loaded.config.filter, vec!["+^/c/".to_owned()]);
    assert_eq!(
        loaded.config.operation.timeouts.updates,
        Timeouts::PerAttempt(vec![5.0])
    );
}

#[test]
fn explicit_null_overrides_scalars_and_lists() {
    let loaded = load_from_strs(&[
        (
            "a.yaml",
            "source: {path: /a}\ndestination: {result: {append_to_file: /log}}\nfilter: ['-x']\n",
        ),
        (
            "b.yaml",
            "source:\n  path: null\ndestination:\n  result:\n    append_to_file:\n  \
             encoding:\n    xz:\n      min_size: null\nfilter: ~\noperation:\n  timeouts:\n    \
             updates: null\n",
        ),
    ])
    .expect("loads");
    let c = loaded.config;
    assert_eq!(c.source.path, None);
    assert_eq!(c.destination.result.append_to_file, None);
    assert_eq!(c.destination.encoding.xz.min_size, None);
    assert!(c.filter.is_empty());
    assert_eq!(c.operation.timeouts.updates, Timeouts::None);
}

#[test]
fn mappings_merge_key_by_key() {
    let c = config(
        "destination:\n  result:\n    print_to_stdout: false\n\
         operation:\n  rate_limit:\n    bytes: '1:10'\n",
    );
    assert!(!c.destination.result.print_to_stdout);
    // Siblings keep their defaults.
    assert_eq!(c.destination.url, "http://localhost:3456/uri");
    assert_eq!(c.destination.encoding.xz.min_size, Some(5120));
    assert_eq!(c.operation.rate_limit.objects, None);
    assert_eq!(
        c.operation.timeouts.updates,
        Config::builtin().operation.timeouts.updates
    );
}

#[test]
fn null_bool_is_false_like_in_the_original() {
    let c = config("source:\n  queue:\n    check_mtime:\n");
    assert!(!c.source.queue.check_mtime);
}

#[test]
fn anchors_and_merge_keys_work() {
    let c = config("source:\n  <<: {one_file_system: false}\n  path: /x\n");
    assert_eq!(c.source.path.as_deref(), Some("/x"));
    assert!(!c.source.one_file_system);
    let c = config("source:\n  path: &p /srv/data\n  queue:\n    path: *p\n");
    assert_eq!(c.source.queue.path, Some(PathBuf::from("/srv/data")));
    let c =
        config("operation:\n  timeouts: &t\n    updates: 7\n  rate_limit:\n    <<: {bytes: '2'}\n");
    assert_eq!(c.operation.timeouts.updates, Timeouts::Fixed(7.0));
    assert_eq!(
        c.operation.rate_limit.bytes,
        Some(RateSpec {
            interval_secs: 2.0,
            burst: 1.0
        })
    );
}

// ------------------------------------------------------------ errors

#[test]
fn unknown_key_names_file_line_and_dotted_key() {
    let message = error("source:\n  path: /x\n  queue:\n    chek_mtime: true\n");
    assert_eq!(
        message,
        "cfg.yaml:4: unknown config key source.queue.chek_mtime"
    );
    assert_eq!(
        error("sources:\n  path: /x\n"),
        "cfg.yaml:1: unknown config key sources"
    );
}

#[test]
fn unknown_key_in_a_later_file_names_that_file() {
    let err = load_from_strs(&[
        ("a.yaml", "source: {path: /a}\n"),
        ("b.yaml", "\n\nbogus: 1\n"),
    ])
    .expect_err("fails");
    assert_eq!(err.to_string(), "b.yaml:3: unknown config key bogus");
    assert!(matches!(err, ConfigError::UnknownKey { line: 3, .. }));
}

#[test]
fn wrong_type_names_file_line_and_key() {
    assert_eq!(
        error("source:\n  queue:\n    check_mtime: maybe\n"),
        "cfg.yaml:3: wrong type for source.queue.check_mtime: expected true or false, \
         found the string \"maybe\""
    );
    assert_eq!(
        error("# comment\nsource: /srv\n"),
        "cfg.yaml:2: wrong type for source: expected a mapping of config keys, \
         found the string \"/srv\""
    );
    assert_eq!(
        error("http:\n  retry:\n    attempts: [1]\n"),
        "cfg.yaml:3: wrong type for http.retry.attempts: expected an integer (the total \
         number of attempts), found a list"
    );
    assert_error(
        "destination:\n  encoding:\n    xz:\n      min_size: -5\n",
        "cfg.yaml:4: wrong type for destination.encoding.xz.min_size: expected a non-negative integer, found the integer -5",
    );
    assert_error(
        "source:\n  path: 5\n",
        "cfg.yaml:2: wrong type for source.path: expected a string",
    );
}

#[test]
fn invalid_value_names_file_line_and_key() {
    assert_eq!(
        error("\noperation:\n  rate_limit:\n    bytes: abc\n"),
        "cfg.yaml:4: invalid value for operation.rate_limit.bytes: \"abc\" is not a number; \
         a rate spec is INTERVAL[:BURST], seconds per unit and a burst size, \
         e.g. '1/3e5:20e6' (300 kB/s, 20 MB burst) or '10:50'"
    );
    assert_error(
        "destination:\n  url: localhost:3456\n",
        "cfg.yaml:2: invalid value for destination.url: \"localhost:3456\" is not an http:// or https:// URL",
    );
    assert_error(
        "logging:\n  level: loud\n",
        "cfg.yaml:2: wrong type for logging.level: expected one of error, warning, info, debug, noise, found the string \"loud\"",
    );
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let message = error("source:\n  path: /x\n queue: 1\n");
    assert!(
        message.starts_with("cfg.yaml:3: invalid YAML: "),
        "{message}"
    );
    let message = error("filter: ['-a'\noperation: {}\n");
    assert!(
        message.starts_with("cfg.yaml:2: invalid YAML: "),
        "{message}"
    );
    let message = error("source:\n  path: \"unterminated\n");
    assert!(message.starts_with("cfg.yaml:"), "{message}");
    assert!(message.contains("invalid YAML"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");
    let message = error("a: 1\n---\nb: 2\n");
    assert!(
        message.starts_with("cfg.yaml:3: invalid YAML: "),
        "{message}"
    );
}

#[test]
fn duplicate_keys_are_errors() {
    assert_eq!(
        error("source:\n  path: /a\n  path: /b\n"),
        "cfg.yaml:3: duplicate config key source.path (first given on line 2)"
    );
    assert_eq!(
        error("logging: {}\nlogging: {}\n"),
        "cfg.yaml:2: duplicate config key logging (first given on line 1)"
    );
}

#[test]
fn document_must_be_a_mapping() {
    assert_eq!(
        error("- a\n- b\n"),
        "cfg.yaml:1: a config file must be a mapping of keys (such as 'source:'), found a list"
    );
}

#[test]
fn errors_in_list_elements_point_at_the_element() {
    assert_eq!(
        error("operation:\n  timeouts:\n    updates:\n      - 10\n      - 0\n"),
        "cfg.yaml:5: invalid value for operation.timeouts.updates item #2: \
         must be a positive, finite number of seconds"
    );
    let message = error("filter:\n  - '+^/a/'\n  - '^/b/'\n");
    assert!(
        message.starts_with("cfg.yaml:3: invalid value for filter: "),
        "{message}"
    );
    assert!(message.contains("#2"), "names the rule: {message}");
    assert!(message.contains("^/b/"), "names the rule: {message}");
    let message = error("filter:\n  - '+^/a/'\n  - '-(unclosed'\n");
    assert!(
        message.starts_with("cfg.yaml:3: invalid value for filter: "),
        "{message}"
    );
    assert!(message.contains("(unclosed"), "{message}");
    assert_eq!(
        error("filter:\n  - '+a'\n  - [1, 'x']\n"),
        "cfg.yaml:3: wrong type for filter rule #2: expected a string '+REGEX' (include) \
         or '-REGEX' (exclude), found a list"
    );
    assert_error(
        "filter: '-x'\n",
        "cfg.yaml:1: wrong type for filter: expected a list",
    );
}

#[test]
fn missing_required_key_is_named() {
    let c = Config::builtin();
    let err = c.require("source.queue.path").expect_err("unset");
    assert_eq!(
        err.to_string(),
        "missing required config key source.queue.path: set it in a config file given with -c"
    );
    assert!(c.require("filter").is_err());
    assert!(c.require("no.such.key").is_err());
    assert!(c.require("destination.url").is_ok());
    assert!(c.require("source.queue.check_mtime").is_ok());
    assert!(c.source_path().is_err());
    assert!(c.queue_path().is_err());
    assert!(c.entry_cache_path().is_err());

    let c = config(
        "source: {path: '/s/*', queue: {path: /q}, entry_cache: {path: /db}}\nfilter: ['-x']\n",
    );
    assert_eq!(c.source_path().ok(), Some("/s/*"));
    assert_eq!(c.queue_path().ok(), Some(Path::new("/q")));
    assert_eq!(c.entry_cache_path().ok(), Some(Path::new("/db")));
    assert!(c.require("source.path").is_ok());
    assert!(c.require("filter").is_ok());
}

#[test]
fn load_reads_files_in_order_and_names_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, "source:\n  path: /a\n  queue: {path: /qa}\n").expect("write");
    std::fs::write(&b, "source:\n  path: /b\nmanhole: {endpoint: 'tcp:8022'}\n").expect("write");
    let loaded = load(&[a.clone(), b.clone()]).expect("loads");
    assert_eq!(loaded.config.source.path.as_deref(), Some("/b"));
    assert_eq!(loaded.config.source.queue.path, Some(PathBuf::from("/qa")));
    assert_eq!(loaded.warnings.len(), 1);
    assert!(
        loaded.warnings[0].starts_with(&format!("{}:3: ignoring config key manhole", b.display()))
    );

    std::fs::write(&b, "source:\n  pathh: /b\n").expect("write");
    let err = load(&[a.clone(), b.clone()]).expect_err("fails");
    assert_eq!(
        err.to_string(),
        format!("{}:2: unknown config key source.pathh", b.display())
    );

    let missing = dir.path().join("missing.yaml");
    let err = load(&[a, missing.clone()]).expect_err("fails");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read config file {}: ", missing.display())),
        "{err}"
    );
}

// ------------------------------------------------------------ legacy keys

#[test]
fn ignored_keys_of_the_original_warn_once_each() {
    let mut yaml = String::new();
    let mut lines = Vec::new();
    // One layer holding every ignored key, each with nested content.
    let mut sections: Vec<(&str, Vec<&str>)> = Vec::new();
    for (key, _) in IGNORED_KEYS {
        let (section, leaf) = key.split_once('.').unwrap_or(("", key));
        match sections.iter_mut().find(|(s, _)| *s == section) {
            Some((_, leaves)) => leaves.push(leaf),
            None => sections.push((section, vec![leaf])),
        }
    }
    for (section, leaves) in &sections {
        let indent = if section.is_empty() { "" } else { "  " };
        if !section.is_empty() {
            yaml.push_str(&format!("{section}:\n"));
        }
        for leaf in leaves {
            lines.push((yaml.lines().count() + 1, schema::join(section, leaf)));
            yaml.push_str(&format!(
                "{indent}{leaf}:\n{indent}  nested: {{deep: [1, 2]}}\n{indent}  other: x\n"
            ));
        }
    }
    let loaded = load_one(&yaml).expect("ignored keys load");
    assert_eq!(loaded.config, Config::builtin());
    assert_eq!(
        loaded.warnings.len(),
        IGNORED_KEYS.len(),
        "{:#?}",
        loaded.warnings
    );
    for ((key, why), warning) in IGNORED_KEYS.iter().zip(&loaded.warnings) {
        let line = lines
            .iter()
            .find(|(_, full)| full == key)
            .map(|(line, _)| *line)
            .unwrap_or(0);
        assert_eq!(
            warning,
            &format!("cfg.yaml:{line}: ignoring config key {key}: {why}")
        );
    }
}

#[test]
fn ignored_keys_with_scalar_or_null_values_also_warn() {
    let loaded = load_one("source:\n  pick_policy: alphasort_last\nmanhole:\nlogging:\n  tag:\n")
        .expect("loads");
    assert_eq!(
        loaded.warnings,
        vec![
            format!(
                "cfg.yaml:2: ignoring config key source.pick_policy: {}",
                IGNORED_KEYS[1].1
            ),
            format!(
                "cfg.yaml:3: ignoring config key manhole: {}",
                IGNORED_KEYS[0].1
            ),
            "cfg.yaml:5: ignoring config key logging.tag: log record tags are not supported"
                .to_owned(),
        ]
    );
}

/// A config as users of the original tool wrote it: the original's
/// `core.yaml` with settings filled in.
const ORIGINAL_CONFIG: &str = r#"
source:
  # Path or glob pattern (to match path) to backup, required.
  path: /srv/backups/root-fs.*
  queue:
    path: /var/lib/lafs-backup/queue.txt
    check_mtime: true
  entry_cache:
    path: /var/lib/lafs-backup/entry_cache.sqlite
    commit_after:
      queries: 50
      seconds: 10
  pick_policy: alphasort_last

destination:
  url: http://localhost:3456/uri
  result:
    print_to_stdout: true
    append_to_file: /var/log/lafs-backup.caps
    append_to_lafs_dir: URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/backups
  encoding:
    xz:
      enabled: true
      options: {options: {level: 9}}
      min_size: 5120
      path_filter:
        - '-\.(gz|bz2|zip|7z|rar|xz|lzma|jpe?g|png|mp[34]|ogg|avi|mkv)$'
        - [500, '\.(txt|log|csv)$']
        - ['+', '^/etc/']
        - ['-', '^/var/cache/']
        - '+\.sql$'

http:
  ca_certs_files: /etc/ssl/certs/ca-certificates.crt
  debug_requests: false
  request_pool_options:
    maxPersistentPerHost: 10
    cachedConnectionTimeout: 600
    retryAutomatically: true
  retry:
    attempts: 4
    delay: [10, 60, 600]

filter:
  - '+^/var/log/($|security/)'
  - '-^/var/(tmp|cache|log|spool)/'
  - '-/(?i)\.?svn(/.*|ignore)$'

operation:
  queue_only: false
  reuse_queue: false
  disable_deduplication: false
  try_resume: false
  timeouts:
    # null, 0 or false to disable
    updates: [1200, 2400, 3600]
  rate_limit:
    bytes: 1/3e5:20e6
    objects: '10:50'

logging:
  warnings: true
  sql_queries: false
  tag:
  version: 1
  formatters:
    basic:
      format: '%(asctime)s :: %(name)s :: %(levelname)s: %(message)s'
      datefmt: '%Y-%m-%d %H:%M:%S'
  handlers:
    console:
      class: logging.StreamHandler
      stream: ext://sys.stderr
      formatter: basic
      level: custom
    debug_logfile:
      class: logging.handlers.RotatingFileHandler
      filename: /tmp/lafs-backup.debug.log
      formatter: basic
      encoding: utf-8
      maxBytes: 5_242_880 # 5 MiB
      backupCount: 2
      level: NOISE
  root:
    level: custom
    handlers: [console, debug_logfile]

manhole:
  endpoint: tcp:8022:interface=localhost
  on_signal: USR1
  client: ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC0 user@host
  server:
    public: |
      ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDx lafs-backup
    private: |
      -----BEGIN RSA PRIVATE KEY-----
      MIIEpAIBAAKCAQEA8b1ewlelXFUMZhj3R3vzXGa2qs+ViEqVrL9YaUn2Pu1MC8F8
      -----END RSA PRIVATE KEY-----
"#;

#[test]
fn a_config_of_the_original_tool_loads_unchanged() {
    let loaded = load_one(ORIGINAL_CONFIG).expect("the original's config loads");
    let c = &loaded.config;
    assert_eq!(c.source.path.as_deref(), Some("/srv/backups/root-fs.*"));
    assert_eq!(
        c.source.entry_cache.path,
        Some(PathBuf::from("/var/lib/lafs-backup/entry_cache.sqlite"))
    );
    assert_eq!(
        c.destination.result.append_to_lafs_dir.as_deref(),
        Some(
            "URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb/backups"
        )
    );
    let xz = &c.destination.encoding.xz;
    assert_eq!(
        xz.options,
        Some(XzOptions {
            level: 9,
            extreme: false
        })
    );
    assert_eq!(
        xz.path_filter.iter().map(|r| r.action).collect::<Vec<_>>(),
        vec![
            XzAction::Never,
            XzAction::AtLeast(500),
            XzAction::UseMinSize,
            XzAction::Never,
            XzAction::UseMinSize
        ]
    );
    assert_eq!(xz.path_filter[1].regex, r"\.(txt|log|csv)$");
    assert_eq!(c.filter.len(), 3);
    assert_eq!(c.filter[2], r"-/(?i)\.?svn(/.*|ignore)$");
    assert_eq!(
        c.operation.rate_limit.bytes,
        Some(RateSpec {
            interval_secs: 1.0 / 3e5,
            burst: 20e6
        })
    );
    assert_eq!(
        c.operation.rate_limit.objects,
        Some(RateSpec {
            interval_secs: 10.0,
            burst: 50.0
        })
    );
    let warned: Vec<&str> = loaded
        .warnings
        .iter()
        .map(|w| {
            w.split("ignoring config key ")
                .nth(1)
                .and_then(|rest| rest.split(':').next())
                .unwrap_or("")
        })
        .collect();
    assert_eq!(
        warned,
        vec![
            "source.pick_policy",
            "http.debug_requests",
            "http.request_pool_options",
            "logging.warnings",
            "logging.sql_queries",
            "logging.tag",
            "logging.version",
            "logging.formatters",
            "logging.handlers",
            "logging.root",
            "manhole",
        ]
    );
    // The result dumps and reloads like any config.
    let again = load_from_strs(&[("dump", &c.to_yaml())]).expect("dump reloads");
    assert_eq!(&again.config, c);
    assert!(again.warnings.is_empty());
}

// ------------------------------------------------------------ YAML 1.1-isms

#[test]
fn yaml_1_1_numbers_and_booleans_are_accepted() {
    let c = config(
        "source:\n  queue: {check_mtime: no}\n  one_file_system: off\n  exclude_caches: yes\n  \
         entry_cache: {commit_after: {queries: 1_000, seconds: 1_0}}\n\
         destination:\n  encoding:\n    xz:\n      min_size: 10_000_000\n\
         operation:\n  timeouts: {updates: [1_200, 2_400]}\n  queue_only: on\n\
         http:\n  retry: {attempts: 1_0, delay: 2_5}\n",
    );
    assert!(!c.source.queue.check_mtime);
    assert!(!c.source.one_file_system);
    assert!(c.source.exclude_caches);
    assert!(c.operation.queue_only);
    assert_eq!(c.source.entry_cache.commit_after.queries, Some(1000));
    assert_eq!(c.source.entry_cache.commit_after.seconds, Some(10.0));
    assert_eq!(c.destination.encoding.xz.min_size, Some(10_000_000));
    assert_eq!(
        c.operation.timeouts.updates,
        Timeouts::PerAttempt(vec![1200.0, 2400.0])
    );
    assert_eq!(c.http.retry.attempts, 10);
    assert_eq!(c.http.retry.delay, RetryDelay::Fixed(25.0));
}

#[test]
fn sizes_may_use_exponents() {
    let c = config("destination: {encoding: {xz: {min_size: 20e6, path_filter: [[1e3, 'x']]}}}\n");
    assert_eq!(c.destination.encoding.xz.min_size, Some(20_000_000));
    assert_eq!(
        c.destination.encoding.xz.path_filter[0].action,
        XzAction::AtLeast(1000)
    );
    assert_error(
        "destination: {encoding: {xz: {min_size: 1.5}}}\n",
        "cfg.yaml:1: wrong type for destination.encoding.xz.min_size",
    );
}

// ------------------------------------------------------------ rate specs

#[test]
fn rate_specs_parse() {
    let spec = RateSpec::parse("1/3e5:20e6").expect("valid");
    assert_eq!(spec.interval_secs, 1.0 / 300_000.0);
    assert_eq!(spec.burst, 2e7);
    assert_eq!(spec.rate(), 300_000.0);
    assert_eq!(
        RateSpec::parse("10:50"),
        Ok(RateSpec {
            interval_secs: 10.0,
            burst: 50.0
        })
    );
    assert_eq!(
        RateSpec::parse("5"),
        Ok(RateSpec {
            interval_secs: 5.0,
            burst: 1.0
        })
    );
    assert_eq!(
        RateSpec::parse(" 0.5 : 2 "),
        Ok(RateSpec {
            interval_secs: 0.5,
            burst: 2.0
        })
    );
    assert_eq!(
        RateSpec::parse("1/300_000:20_000_000"),
        RateSpec::parse("1/3e5:2e7")
    );
    for bad in [
        "-1", "0", "abc", "1:0", "1:0.5", "1/0", "", ":5", "1:", "inf", "nan", "1:inf", "1/-2",
        "1:2:3", "_1", "1_", "1__0", "1/2/3",
    ] {
        assert!(RateSpec::parse(bad).is_err(), "{bad:?} should be rejected");
    }
}

#[test]
fn rate_specs_in_config() {
    let c = config("operation:\n  rate_limit:\n    bytes: 1/3e5:20e6\n    objects: 5\n");
    assert_eq!(
        c.operation.rate_limit.bytes,
        Some(RateSpec {
            interval_secs: 1.0 / 3e5,
            burst: 2e7
        })
    );
    assert_eq!(
        c.operation.rate_limit.objects,
        Some(RateSpec {
            interval_secs: 5.0,
            burst: 1.0
        })
    );
    let c = config("operation: {rate_limit: {objects: 10:50, bytes: 0.25}}\n");
    assert_eq!(
        c.operation.rate_limit.objects,
        Some(RateSpec {
            interval_secs: 10.0,
            burst: 50.0
        })
    );
    assert_eq!(
        c.operation.rate_limit.bytes.map(|r| r.interval_secs),
        Some(0.25)
    );
    for (bad, why) in [
        ("-1", "the interval must be a positive"),
        ("0", "the interval must be a positive"),
        ("abc", "\"abc\" is not a number"),
        ("'1:0'", "the burst must be a finite number of at least 1"),
        ("true", "wrong type"),
    ] {
        assert_error(
            &format!("operation:\n  rate_limit:\n    objects: {bad}\n"),
            "cfg.yaml:3: ",
        );
        assert_error(
            &format!("operation:\n  rate_limit:\n    objects: {bad}\n"),
            why,
        );
        assert_error(
            &format!("operation:\n  rate_limit:\n    objects: {bad}\n"),
            "operation.rate_limit.objects",
        );
    }
}

#[test]
fn rate_spec_display_reads_back_exactly() {
    for spec in [
        "1/3e5:20e6",
        "10:50",
        "5",
        "0.1",
        "1/3",
        "1/7:1.5",
        "123456.789:1e300",
    ] {
        let parsed = RateSpec::parse(spec).expect("valid");
        let shown = parsed.to_string();
        assert_eq!(
            RateSpec::parse(&shown),
            Ok(parsed),
            "{spec} shown as {shown}"
        );
    }
    assert_eq!(
        RateSpec::parse("1/3e5:20e6").map(|r| r.to_string()),
        Ok("1/300000:20000000".to_owned())
    );
    assert_eq!(
        RateSpec::parse("10:50").map(|r| r.to_string()),
        Ok("10:50".to_owned())
    );
}

// ------------------------------------------------------------ timeouts

#[test]
fn timeouts_variants() {
    let updates = |v: &str| {
        config(&format!("operation:\n  timeouts:\n    updates: {v}\n"))
            .operation
            .timeouts
            .updates
    };
    assert_eq!(
        updates("[10, 20.5]"),
        Timeouts::PerAttempt(vec![10.0, 20.5])
    );
    assert_eq!(updates("30"), Timeouts::Fixed(30.0));
    assert_eq!(updates("0.5"), Timeouts::Fixed(0.5));
    for none in ["null", "", "~", "0", "false", "-1", "-0.5"] {
        assert_eq!(updates(none), Timeouts::None, "{none:?}");
    }
    for (bad, why) in [
        ("true", "wrong type"),
        ("[]", "an empty list"),
        ("[10, -1]", "item #2: must be a positive"),
        ("[10, x]", "item #2: expected a positive number"),
        ("'10'", "wrong type"),
        (".inf", "not a finite number"),
    ] {
        let message = error(&format!("operation:\n  timeouts:\n    updates: {bad}\n"));
        assert!(message.starts_with("cfg.yaml:3: "), "{message}");
        assert!(message.contains("operation.timeouts.updates"), "{message}");
        assert!(message.contains(why), "{message} should contain {why}");
    }
    let t = Timeouts::PerAttempt(vec![1.0, 2.0]);
    assert_eq!(t.attempts(), Some(2));
    assert_eq!(t.timeout(1), Some(std::time::Duration::from_secs(2)));
    assert_eq!(Timeouts::Fixed(3.0).attempts(), None);
    assert_eq!(Timeouts::None.timeout(0), None);
}

#[test]
fn retry_settings() {
    let c = config("http: {retry: {attempts: 0, delay: 5}}\n");
    assert_eq!(c.http.retry.attempts, 1);
    assert_eq!(c.http.retry.delay, RetryDelay::Fixed(5.0));
    let c = config("http: {retry: {attempts: -3, delay: [1, 2]}}\n");
    assert_eq!(c.http.retry.attempts, 1);
    assert_eq!(c.http.retry.delay.before_retry(0).as_secs(), 1);
    assert_eq!(c.http.retry.delay.before_retry(5).as_secs(), 2);
    assert_error(
        "http: {retry: {delay: []}}\n",
        "http.retry.delay: an empty list",
    );
    assert_error(
        "http: {retry: {delay: -1}}\n",
        "http.retry.delay: must be a non-negative",
    );
    assert_error(
        "http: {retry: {delay: null}}\n",
        "wrong type for http.retry.delay",
    );
}

#[test]
fn commit_limits() {
    let c = config("source: {entry_cache: {commit_after: {queries: 0, seconds: -1}}}\n");
    assert_eq!(c.source.entry_cache.commit_after.queries, None);
    assert_eq!(c.source.entry_cache.commit_after.seconds, None);
    let c = config("source: {entry_cache: {commit_after: {queries: -5, seconds: null}}}\n");
    assert_eq!(c.source.entry_cache.commit_after.queries, None);
    assert_eq!(c.source.entry_cache.commit_after.seconds, None);
    let c = config("source: {entry_cache: {commit_after: {queries: 1, seconds: 0.5}}}\n");
    assert_eq!(c.source.entry_cache.commit_after.queries, Some(1));
    assert_eq!(c.source.entry_cache.commit_after.seconds, Some(0.5));
    assert_error(
        "source: {entry_cache: {commit_after: {queries: lots}}}\n",
        "wrong type for source.entry_cache.commit_after.queries",
    );
}

#[test]
fn log_levels() {
    for level in LogLevel::ALL {
        assert_eq!(
            config(&format!("logging: {{level: {level}}}\n"))
                .logging
                .level,
            level
        );
    }
    assert_eq!(
        config("logging: {level: DEBUG}\n").logging.level,
        LogLevel::Debug
    );
    assert_eq!("Noise".parse::<LogLevel>(), Ok(LogLevel::Noise));
    assert!("verbose".parse::<LogLevel>().is_err());
}

#[test]
fn urls() {
    assert_eq!(
        config("destination: {url: 'https://grid.example:3456/uri'}\n")
            .destination
            .url,
        "https://grid.example:3456/uri"
    );
    assert_error(
        "destination: {url: null}\n",
        "wrong type for destination.url",
    );
    assert_error(
        "destination: {url: ''}\n",
        "invalid value for destination.url",
    );
}

#[test]
fn monitor_keys() {
    let c = config(
        "monitor:\n  healthchecks_url: 'https://hc.example/ping/x'\n  max_backup_age: 26h\n  \
         min_lease_days: 7\n  max_unverified_days: 40\nlease: {renew_every_days: 7}\n",
    );
    assert_eq!(
        c.monitor.healthchecks_url.as_deref(),
        Some("https://hc.example/ping/x")
    );
    let age = c.monitor.max_backup_age.expect("set");
    assert_eq!((age.0.days, age.0.hours), (0, 26));
    assert_eq!(c.monitor.min_lease_days, Some(7));
    assert_eq!(c.lease.renew_every_days, Some(7));
    assert_eq!(Config::builtin().lease.renew_every_days, None);
    assert_error(
        "monitor:\n  healthchecks_url: 'hc.example/ping'\n",
        "cfg.yaml:2: invalid value for monitor.healthchecks_url: \"hc.example/ping\" is not an http:// or https:// URL",
    );
    assert_error(
        "monitor:\n  max_backup_age: 2 days\n",
        "cfg.yaml:2: invalid value for monitor.max_backup_age: \"2 days\" is not a duration",
    );
    assert_error(
        "monitor:\n  max_backup_age: 0d\n",
        "cfg.yaml:2: invalid value for monitor.max_backup_age: a zero duration",
    );
    assert_error("monitor:\n  min_lease: 3\n", "monitor.min_lease");
}

#[test]
fn paths_must_not_be_empty() {
    assert_error(
        "source: {queue: {path: ''}}\n",
        "cfg.yaml:1: invalid value for source.queue.path: an empty path; use null to leave it unset",
    );
}

// ------------------------------------------------------------ xz

#[test]
fn xz_options_forms() {
    let options = |v: &str| {
        config(&format!(
            "destination:\n  encoding:\n    xz:\n      options: {v}\n"
        ))
        .destination
        .encoding
        .xz
        .options
    };
    let nine = Some(XzOptions {
        level: 9,
        extreme: false,
    });
    assert_eq!(options("{level: 9}"), nine);
    assert_eq!(options("{preset: 9}"), nine);
    assert_eq!(options("{options: {level: 9}}"), nine);
    assert_eq!(options("{options: {preset: 9}}"), nine);
    assert_eq!(
        options("{level: 0, extreme: true}"),
        Some(XzOptions {
            level: 0,
            extreme: true
        })
    );
    assert_eq!(options("{}"), Some(XzOptions::default()));
    assert_eq!(options("{options: null}"), Some(XzOptions::default()));
    assert_eq!(options("null"), None);

    let bad = |v: &str| {
        error(&format!(
            "destination:\n  encoding:\n    xz:\n      options: {v}\n"
        ))
    };
    assert_eq!(
        bad("{level: 10}"),
        "cfg.yaml:4: invalid value for destination.encoding.xz.options.level: \
         the xz preset level must be an integer from 0 to 9"
    );
    assert_eq!(
        bad("{options: {level: -1}}"),
        "cfg.yaml:4: invalid value for destination.encoding.xz.options.options.level: \
         the xz preset level must be an integer from 0 to 9"
    );
    assert!(bad("{level: 9, preset: 9}").contains("give only one"));
    assert!(bad("{options: {level: 9}, extreme: true}").contains("not both"));
    assert_eq!(
        bad("{format: xz}"),
        "cfg.yaml:4: unknown config key destination.encoding.xz.options.format"
    );
    assert!(
        bad("{level: 9, level: 8}")
            .contains("duplicate config key destination.encoding.xz.options.level")
    );
    assert!(bad("9").contains("wrong type for destination.encoding.xz.options"));
    assert!(
        bad("{extreme: maybe}").contains("wrong type for destination.encoding.xz.options.extreme")
    );

    // A later layer's options replace the earlier ones whole.
    let loaded = load_from_strs(&[
        (
            "a.yaml",
            "destination: {encoding: {xz: {options: {level: 9}}}}\n",
        ),
        ("b.yaml", "destination: {encoding: {xz: {options: null}}}\n"),
    ])
    .expect("loads");
    assert_eq!(loaded.config.destination.encoding.xz.options, None);
}

#[test]
fn xz_path_filter_forms() {
    let c = config(
        "destination:\n  encoding:\n    xz:\n      path_filter:\n        - '+^/a'\n        - '-^/b'\n        \
         - [0, '^/c']\n        - ['+', '^/d']\n        - ['-', '^/e']\n        - [10_000, '^/f']\n",
    );
    let rules = &c.destination.encoding.xz.path_filter;
    let expected = [
        (XzAction::UseMinSize, "^/a"),
        (XzAction::Never, "^/b"),
        (XzAction::AtLeast(0), "^/c"),
        (XzAction::UseMinSize, "^/d"),
        (XzAction::Never, "^/e"),
        (XzAction::AtLeast(10_000), "^/f"),
    ];
    assert_eq!(rules.len(), expected.len());
    for (rule, (action, regex)) in rules.iter().zip(expected) {
        assert_eq!(rule.action, action);
        assert_eq!(rule.regex, regex);
    }

    let bad = |rules: &str| {
        error(&format!(
            "destination:\n  encoding:\n    xz:\n      path_filter:\n        - '+ok'\n{rules}"
        ))
    };
    let key = "destination.encoding.xz.path_filter rule #2";
    assert_eq!(
        bad("        - 'no prefix'\n"),
        format!(
            "cfg.yaml:6: invalid value for {key}: the rule \"no prefix\" must start with '+' \
             (compress if at least min_size bytes) or '-' (never compress)"
        )
    );
    let message = bad("        - '-(['\n");
    assert!(
        message.starts_with(&format!(
            "cfg.yaml:6: invalid value for {key}: the regex \"([\" does not compile"
        )),
        "{message}"
    );
    let message = bad("        - [5, '(?<=x)y']\n");
    assert!(
        message.starts_with(&format!("cfg.yaml:6: invalid value for {key}: the regex")),
        "{message}"
    );
    assert!(message.contains("look-around"), "{message}");
    assert!(bad("        - [1, 'x', 'y']\n").contains("exactly two elements"));
    assert!(bad("        - [-1, 'x']\n").contains(&format!(
        "cfg.yaml:6: wrong type for {key}: expected a size threshold"
    )));
    assert!(bad("        - ['*', 'x']\n").contains("expected a size threshold"));
    assert!(bad("        - [1, 2]\n").contains("expected a regex string as the second element"));
    assert!(bad("        - {a: b}\n").contains(&format!("wrong type for {key}")));
    assert_error(
        "destination: {encoding: {xz: {path_filter: '+x'}}}\n",
        "wrong type for destination.encoding.xz.path_filter: expected a list of rules",
    );
}

// ------------------------------------------------------------ dump

/// A config exercising every kind of value, with strings that are hard to
/// write as YAML.
fn tricky_config() -> Config {
    let mut c = Config::builtin();
    c.source.path = Some(" /srv/my dir: #1/ünïcödé/*".to_owned());
    c.source.queue.path = Some(PathBuf::from("/var/lib/it's \"quoted\"/queue"));
    c.source.queue.check_mtime = false;
    c.source.entry_cache.path = Some(PathBuf::from("yes"));
    c.source.entry_cache.commit_after.queries = None;
    c.source.entry_cache.commit_after.seconds = Some(0.25);
    c.source.one_file_system = false;
    c.destination.url = "https://h:1/uri?x=#y".to_owned();
    c.destination.result.print_to_stdout = false;
    c.destination.result.append_to_file = Some(PathBuf::from("5120"));
    c.destination.result.append_to_lafs_dir = Some("null".to_owned());
    let xz = &mut c.destination.encoding.xz;
    xz.enabled = false;
    xz.min_size = None;
    xz.options = Some(XzOptions {
        level: 9,
        extreme: true,
    });
    xz.path_filter = vec![
        XzRule {
            action: XzAction::AtLeast(0),
            regex: r"\.(txt|log)$".to_owned(),
        },
        XzRule {
            action: XzAction::UseMinSize,
            regex: "^/etc/".to_owned(),
        },
        XzRule {
            action: XzAction::Never,
            regex: "it's: [#]".to_owned(),
        },
    ];
    c.filter = vec![
        r"+^/var/log/($|security/)".to_owned(),
        r"-/(?i)\.?svn(/.*|ignore)$".to_owned(),
        "-'single' \"double\" \\\\ back".to_owned(),
        "- leading space: and # hash".to_owned(),
        "+ünï\\d+ 日本".to_owned(),
        "-tab\there".to_owned(),
        "-new\nline".to_owned(),
        "+".to_owned(),
        "-true".to_owned(),
    ];
    c.operation.queue_only = true;
    c.operation.disable_deduplication = true;
    c.operation.timeouts.updates = Timeouts::Fixed(0.1);
    c.operation.rate_limit.bytes = RateSpec::parse("1/3e5:20e6").ok();
    c.operation.rate_limit.objects = RateSpec::parse("10:50").ok();
    c.http.retry.attempts = 7;
    c.http.retry.delay = RetryDelay::Fixed(2.5);
    c.logging.level = LogLevel::Noise;
    c
}

#[test]
fn dump_round_trips_exactly() {
    let c = tricky_config();
    let dump = c.to_yaml();
    let loaded = load_from_strs(&[("dump", &dump)]).unwrap_or_else(|e| panic!("{e}\n{dump}"));
    assert_eq!(loaded.config, c, "{dump}");
    assert!(loaded.warnings.is_empty());
    assert_eq!(loaded.config.to_yaml(), dump);
    assert_eq!(yaml_keys(&dump), Config::keys());
    assert!(!dump.contains('#') || !dump.lines().any(|l| l.trim_start().starts_with('#')));
}

#[test]
fn dump_round_trips_other_variants() {
    let mut c = Config::builtin();
    c.operation.timeouts.updates = Timeouts::None;
    c.http.retry.delay = RetryDelay::PerRetry(vec![0.0, 1.5, 1e-9, 123456789.125]);
    c.operation.rate_limit.bytes = Some(RateSpec {
        interval_secs: std::f64::consts::PI,
        burst: 1.0,
    });
    c.destination.encoding.xz.min_size = Some(u64::MAX);
    let dump = c.to_yaml();
    assert_eq!(
        load_from_strs(&[("dump", &dump)]).map(|l| l.config).ok(),
        Some(c),
        "{dump}"
    );

    let mut c = Config::builtin();
    c.operation.timeouts.updates = Timeouts::PerAttempt(vec![0.1, 1e20]);
    c.http.retry.delay = RetryDelay::Fixed(0.0);
    let dump = c.to_yaml();
    assert_eq!(
        load_from_strs(&[("dump", &dump)]).map(|l| l.config).ok(),
        Some(c),
        "{dump}"
    );
}

#[test]
fn dump_shows_rules_readably() {
    let dump = tricky_config().to_yaml();
    assert!(
        dump.contains("\n  - '+^/var/log/($|security/)'\n"),
        "{dump}"
    );
    assert!(
        dump.contains("\n  - '-/(?i)\\.?svn(/.*|ignore)$'\n"),
        "{dump}"
    );
    assert!(
        dump.contains("\n        - [0, '\\.(txt|log)$']\n"),
        "{dump}"
    );
    assert!(
        dump.contains("\n    bytes: '1/300000:20000000'\n"),
        "{dump}"
    );
    assert!(dump.contains("\n  level: noise\n"), "{dump}");
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_string_round_trips(s in any::<String>(), t in "\\PC*") {
            let mut c = Config::builtin();
            c.source.path = Some(s.clone());
            c.destination.result.append_to_lafs_dir = Some(t.clone());
            // A literal regex that always compiles.
            c.filter = vec![format!("-{}", regex_syntax::escape(&s))];
            let dump = c.to_yaml();
            let loaded = load_from_strs(&[("dump", &dump)]);
            prop_assert!(loaded.is_ok(), "{:?}\n{}", loaded.err().map(|e| e.to_string()), dump);
            prop_assert_eq!(loaded.map(|l| l.config).ok(), Some(c));
        }

        #[test]
        fn any_finite_float_round_trips(a in 1e-300f64..1e300, b in 0f64..1e300) {
            let mut c = Config::builtin();
            c.operation.timeouts.updates = Timeouts::PerAttempt(vec![a]);
            c.http.retry.delay = RetryDelay::Fixed(b);
            c.operation.rate_limit.objects = RateSpec::new(a, b.max(1.0)).ok();
            let dump = c.to_yaml();
            prop_assert_eq!(load_from_strs(&[("dump", &dump)]).map(|l| l.config).ok(), Some(c));
        }
    }
}

#[test]
fn huge_second_counts_do_not_panic() {
    use std::time::Duration;
    assert_eq!(super::seconds(1e20), Duration::MAX);
    assert_eq!(super::seconds(1.5), Duration::from_millis(1500));
    let t = super::Timeouts::Fixed(1e30);
    assert_eq!(t.timeout(0), Some(Duration::MAX));
}

/// A cap put where a config value is quoted in an error (by mistake, or a
/// YAML error next to one) is never shown, in any spelling.
#[test]
fn caps_in_config_errors_are_not_shown() {
    let key = "forau3r7zp4pfptesmflovhrpm";
    let cap = format!("URI:DIR2:{key}:kyjd2wg3k3cariu7snnqc26hxjg757vvkd62q5czeev6eapniieq");
    for spelling in [cap.clone(), cap.replace(':', "%3A"), cap.to_lowercase()] {
        for yaml in [
            format!("destination:\n  url: '{spelling}'\n"),
            format!("logging:\n  level: '{spelling}'\n"),
            format!("destination:\n  url: [\"{spelling}\"\n"),
        ] {
            let e = error(&yaml);
            assert!(!e.to_lowercase().contains(key), "{yaml}: {e}");
        }
    }
}

#[test]
fn concurrency_is_at_least_one_for_every_command() {
    assert_eq!(
        config("operation: {concurrency: 3}\n")
            .operation
            .concurrency,
        3
    );
    assert_error(
        "operation:\n  concurrency: 0\n",
        "cfg.yaml:2: invalid value for operation.concurrency: must be at least 1",
    );
    assert_error("operation:\n  concurrency: -2\n", "a positive integer");
}

// ------------------------------------------------------------ retention

#[test]
fn retention_is_unset_by_default_and_takes_one_policy() {
    use crate::retention::{CycleRules, HanoiRules, KeepDuration, KeepRules, Policy, TierRules};
    assert_eq!(Config::builtin().retention, None);
    let policy = |yaml: &str| config(yaml).retention.and_then(|r| r.policy);
    assert_eq!(
        policy("retention: {keep: {}}\n"),
        Some(Policy::Keep(KeepRules::default()))
    );
    assert_eq!(
        policy("retention:\n  keep: {daily: 7, weekly: -1, within: 1y2m}\n"),
        Some(Policy::Keep(KeepRules {
            daily: 7,
            weekly: -1,
            within: Some(KeepDuration {
                years: 1,
                months: 2,
                ..KeepDuration::default()
            }),
            ..KeepRules::default()
        }))
    );
    assert_eq!(
        policy("retention: {cycle: {frequency: 2, phase: 1}}\n"),
        Some(Policy::Cycle(CycleRules {
            frequency: 2,
            phase: 1,
            ..CycleRules::default()
        }))
    );
    assert_eq!(
        policy("retention: {hanoi: {discs: 32, archive_oldest: true}}\n"),
        Some(Policy::Hanoi(HanoiRules {
            discs: 32,
            archive_oldest: true,
            ..HanoiRules::default()
        }))
    );
    assert_eq!(
        policy("retention: {tiers: {}}\n"),
        Some(Policy::Tiers(TierRules::default()))
    );
    let r = config("retention: {forget_after_backup: true}\n").retention;
    assert_eq!(
        r.as_ref()
            .map(|r| (r.policy.is_none(), r.forget_after_backup)),
        Some((true, true))
    );
    let tiers = policy(
        "retention:\n  tiers:\n    levels:\n      - {format: 'W-%Y-%U', priority: 5, keep_days: 3}\n",
    );
    let Some(Policy::Tiers(t)) = tiers else {
        panic!("tiers expected")
    };
    assert_eq!(
        (t.levels.len(), t.levels[0].priority, t.levels[0].keep_days),
        (1, 5, 3)
    );
}

#[test]
fn retention_errors_name_file_line_and_key() {
    for (yaml, expected) in [
        (
            "retention:\n  keep:\n    dayly: 3\n",
            "cfg.yaml:3: unknown config key retention.keep.dayly",
        ),
        (
            "retention:\n  kept: {}\n",
            "cfg.yaml:2: unknown config key retention.kept",
        ),
        (
            "retention:\n  keep: {}\n  cycle: {}\n",
            "cfg.yaml:3: invalid value for retention.cycle: retention already has the policy keep",
        ),
        (
            "retention:\n  keep:\n    daily: -2\n",
            "cfg.yaml:3: invalid value for retention.keep.daily: -2 is not a count",
        ),
        (
            "retention:\n  cycle:\n    frequency: 0\n",
            "cfg.yaml:3: invalid value for retention.cycle.frequency: 0 is not",
        ),
        (
            "retention:\n  cycle:\n    phase: 2\n    frequency: 2\n",
            "cfg.yaml:3: invalid value for retention.cycle.phase: 2 is not from 0 to frequency - 1 (1)",
        ),
        (
            "retention:\n  cycle:\n    phase: -1\n",
            "cfg.yaml:3: invalid value for retention.cycle.phase",
        ),
        (
            "retention:\n  hanoi:\n    discs: 0\n",
            "cfg.yaml:3: invalid value for retention.hanoi.discs: 0 is not a number of discs from 1 to 32",
        ),
        (
            "retention:\n  hanoi:\n    discs: 33\n",
            "cfg.yaml:3: invalid value for retention.hanoi.discs: 33 is not",
        ),
        (
            "retention:\n  keep:\n    within: 2 weeks\n",
            "cfg.yaml:3: invalid value for retention.keep.within: invalid duration \"2 weeks\"",
        ),
        (
            "retention:\n  keep:\n    within_daily: 14\n",
            "cfg.yaml:3: wrong type for retention.keep.within_daily",
        ),
        (
            "retention:\n  tiers:\n    levels:\n      - {format: 'x-%', priority: 1}\n",
            "cfg.yaml:4: invalid value for retention.tiers.levels level #1.format",
        ),
        (
            "retention:\n  tiers:\n    levels:\n      - {format: 'x-%Y'}\n",
            "cfg.yaml:4: invalid value for retention.tiers.levels level #1: lacks priority",
        ),
        ("retention: daily\n", "cfg.yaml:1: wrong type for retention"),
        (
            "retention:\n  forget_after_backup: 3\n",
            "cfg.yaml:2: wrong type for retention.forget_after_backup",
        ),
    ] {
        assert_error(yaml, expected);
    }
}

#[test]
fn retention_dump_round_trips() {
    for yaml in [
        "retention:\n  keep: {last: 2, within: 14d, within_monthly: 1y}\n  forget_after_backup: true\n",
        "retention: {cycle: {frequency: 3, phase: 2, diffs: 0, fulls: 4}}\n",
        "retention: {hanoi: {discs: 7, frequency: 2, archive_oldest: true}}\n",
        "retention: {tiers: {}}\n",
    ] {
        let c = config(yaml);
        let dump = c.to_yaml();
        let loaded = load_from_strs(&[("dump", &dump)]).unwrap_or_else(|e| panic!("{e}\n{dump}"));
        assert_eq!(loaded.config, c, "{dump}");
        assert_eq!(yaml_keys(&dump), Config::keys());
    }
}

#[test]
fn filter_files_accumulate_across_layers_and_null_empties_them() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a.rules");
    let b = t.path().join("b.rules");
    std::fs::write(&a, "# a\n-\\.o$\n").unwrap();
    std::fs::write(&b, "\n+^/keep/\n").unwrap();
    let (a_s, b_s) = (a.display().to_string(), b.display().to_string());
    let first = format!("filter_files: [{a_s:?}]\nfilter: ['-x']\n");
    let second = format!("filter_files: [{b_s:?}]\nfilter: ['-y']\n");
    let loaded = load_from_strs(&[("one.yaml", &first), ("two.yaml", &second)]).unwrap();
    // Unlike `filter`, which the second layer replaced.
    assert_eq!(loaded.config.filter_files.paths, [a.clone(), b.clone()]);
    assert_eq!(loaded.config.filter, ["-y"]);
    let filter = crate::filter::source_filter(&loaded.config).unwrap();
    assert!(!filter.includes(b"y", false));
    assert!(!filter.includes(b"z.o", false));
    // The dump reads back to the same config.
    let again = load_one(&loaded.config.to_yaml()).unwrap();
    assert_eq!(again.config, loaded.config);
    let cleared = load_from_strs(&[("one.yaml", &first), ("two.yaml", "filter_files:\n")])
        .unwrap()
        .config;
    assert!(cleared.filter_files.paths.is_empty());
}

#[test]
fn filter_files_errors_name_the_config_line_and_the_rule_file_line() {
    let t = tempfile::tempdir().unwrap();
    let bad = t.path().join("bad.rules");
    std::fs::write(&bad, "-ok\n# c\nnot a rule\n").unwrap();
    let missing = t.path().join("missing.rules");
    let yaml = format!("filter_files:\n  - {:?}\n", missing.display().to_string());
    let message = error(&yaml);
    assert!(
        message.starts_with(
            "cfg.yaml:2: invalid value for filter_files file #1: cannot read the rule file"
        ),
        "{message}"
    );
    assert!(message.contains("missing.rules"), "{message}");
    let yaml = format!("filter_files:\n\n  - {:?}\n", bad.display().to_string());
    let message = error(&yaml);
    assert!(message.starts_with("cfg.yaml:3: "), "{message}");
    assert!(
        message.contains(&format!("{}:3: ", bad.display())),
        "{message}"
    );
    assert_error("filter_files: 3\n", "wrong type for filter_files");
}

const TWO_JOBS: &str = "jobs:
  - name: home
    source:
      path: /home
      queue:
        path: /var/q-home
      one_file_system: true
    filter: ['-\\.cache$']
    retention:
      tiers: {}
  - name: etc
    source:
      path: /etc
";

#[test]
fn jobs_parse_with_their_overrides_and_round_trip() {
    let config = config(TWO_JOBS);
    assert_eq!(config.jobs.len(), 2);
    let home = &config.jobs[0];
    assert_eq!(home.name, "home");
    assert_eq!(home.line, 2);
    assert_eq!(home.path, "/home");
    assert_eq!(home.queue_path.as_deref(), Some(Path::new("/var/q-home")));
    assert_eq!(home.one_file_system, Some(true));
    assert_eq!(home.exclude_caches, None);
    assert_eq!(home.filter.as_deref(), Some(&["-\\.cache$".to_owned()][..]));
    assert!(home.retention.as_ref().is_some_and(Option::is_some));
    let etc = &config.jobs[1];
    assert_eq!((etc.name.as_str(), etc.line), ("etc", 11));
    assert_eq!((etc.filter.clone(), etc.retention.clone()), (None, None));
    // The dump reads back to the same config (only the lines differ).
    let again = self::config(&config.to_yaml());
    assert_eq!(again.to_yaml(), config.to_yaml());
    let strip = |c: &Config| {
        let mut jobs = c.jobs.clone();
        jobs.iter_mut().for_each(|j| j.line = 0);
        jobs
    };
    assert_eq!(strip(&again), strip(&config));
}

#[test]
fn jobs_is_a_list_a_later_layer_replaces_whole() {
    let later = "jobs:\n  - name: other\n    source:\n      path: /srv\n";
    let config = load_from_strs(&[("one.yaml", TWO_JOBS), ("two.yaml", later)])
        .unwrap()
        .config;
    let names: Vec<_> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["other"]);
    let cleared = load_from_strs(&[("one.yaml", TWO_JOBS), ("two.yaml", "jobs: null\n")])
        .unwrap()
        .config;
    assert!(cleared.jobs.is_empty());
}

#[test]
fn bad_jobs_name_the_line_and_key() {
    let dup = "jobs:\n  - name: a\n    source: {path: /a}\n  - name: a\n    source: {path: /b}\n";
    assert_eq!(
        error(dup),
        "cfg.yaml:4: invalid value for jobs job #2.name: \
         duplicate job name \"a\" (first given on line 2)"
    );
    assert_error(
        "jobs:\n  - name: a\n    source: {path: /a}\n    hooks: {bogus: []}\n",
        "cfg.yaml:4: unknown config key jobs job #1.hooks.bogus",
    );
    assert_error(
        "jobs:\n  - name: a\n    source: {path: /a, entry_cache: {path: /c}}\n",
        "unknown config key jobs job #1.source.entry_cache",
    );
    assert_error(
        "jobs:\n  - source: {path: /a}\n",
        "invalid value for jobs job #1.name: missing",
    );
    assert_error(
        "jobs:\n  - name: a\n",
        "invalid value for jobs job #1.source.path: missing",
    );
    assert_error(
        "jobs:\n  - name: a/b\n    source: {path: /a}\n",
        "without '/'",
    );
    assert_error("jobs: 3\n", "wrong type for jobs");
}

// ------------------------------------------------------------ hooks

#[test]
fn hooks_parse_globally_and_per_job_and_dump_back() {
    let text = "hooks:\n  before: [[/bin/sh, -c, 'echo hi']]\n  finally:\n    - [env]\n  timeout: 7\n\
                jobs:\n  - name: a\n    source: {path: /a}\n    hooks: {on_error: [[/bin/true, x]]}\n";
    let config = config(text);
    assert_eq!(config.hooks.before, [["/bin/sh", "-c", "echo hi"]]);
    assert_eq!(config.hooks.finally, [["env"]]);
    assert_eq!(config.hooks.timeout, 7);
    assert!(config.hooks.after.is_empty());
    assert_eq!(config.jobs[0].hooks.on_error, [["/bin/true", "x"]]);
    assert_eq!(config.jobs[0].hooks.timeout, 300);
    assert_eq!(Config::builtin().hooks, crate::config::Hooks::default());
    let again = load_from_strs(&[("dump.yaml", &config.to_yaml())])
        .unwrap()
        .config;
    assert_eq!(again.hooks, config.hooks);
    assert_eq!(again.jobs[0].hooks, config.jobs[0].hooks);
}

#[test]
fn bad_hooks_name_the_line_and_key() {
    assert_error(
        "hooks:\n  before: [[/bin/true]]\n  bfore: [[/bin/true]]\n",
        "cfg.yaml:3: unknown config key hooks.bfore",
    );
    assert_error(
        "hooks:\n  after:\n    - [/no/such/hook-program]\n",
        "cfg.yaml:3: invalid value for hooks.after command #1: the program \"/no/such/hook-program\" is not an executable file",
    );
    assert_error(
        "hooks:\n  after: [[no-such-hook-program-in-path]]\n",
        "not an executable file (nor found in PATH)",
    );
    assert_error("hooks:\n  after: [[]]\n", "an empty command");
    assert_error(
        "hooks:\n  after: [/bin/true]\n",
        "wrong type for hooks.after command #1",
    );
    assert_error("hooks:\n  timeout: 0\n", "invalid value for hooks.timeout");
    assert_error("hooks: [1]\n", "wrong type for hooks");
}

// ------------------------------------------------------------ stream job kinds

const STREAM_JOBS: &str = "jobs:
  - name: vol
    kind: btrfs
    subvolume: /mnt/data/home
    snapshot_dir: /mnt/data/.snapshots
    max_incrementals: 5
    retention: {keep: {last: 3}}
  - name: pg
    kind: postgresql
    databases: [app, audit]
    host: /run/pg
    port: 5433
    hooks: {finally: [[/bin/true]]}
  - name: my
    kind: mysql
    databases: all
    socket: /run/mysqld.sock
    defaults_extra_file: /etc/backup-my.cnf
  - name: lite
    kind: sqlite
    path: /var/lib/app.db
  - name: svn
    kind: subversion
    repository: /srv/svn/main
  - name: svns
    kind: subversion_dir
    directory: /srv/svn
";

#[test]
fn stream_job_kinds_parse_and_round_trip() {
    use crate::config::dumps::{Databases, Dump};
    let config = config(STREAM_JOBS);
    let kinds: Vec<JobKind> = config.jobs.iter().map(|j| j.kind).collect();
    use JobKind::{Btrfs, Dump as D};
    assert_eq!(kinds, [Btrfs, D, D, D, D, D]);
    let vol = &config.jobs[0];
    let btrfs = vol.btrfs.as_ref().unwrap();
    assert_eq!(btrfs.subvolume, Path::new("/mnt/data/home"));
    assert_eq!(btrfs.schedule.max_incrementals, 5);
    assert_eq!(btrfs.schedule.backup_days, [1, 7, 14, 21]);
    assert!(vol.retention.as_ref().is_some_and(Option::is_some));
    let Some(Dump::Postgresql(pg)) = &config.jobs[1].dump else {
        panic!("a postgresql job")
    };
    assert_eq!(
        pg.databases,
        Databases::Named(vec!["app".into(), "audit".into()])
    );
    assert_eq!(pg.connection.port, Some(5433));
    assert_eq!(config.jobs[1].hooks.finally, [["/bin/true"]]);
    assert!(matches!(&config.jobs[2].dump, Some(Dump::Mysql(m)) if m.databases == Databases::All));
    assert!(matches!(&config.jobs[3].dump, Some(Dump::Sqlite(_))));
    assert!(matches!(&config.jobs[5].dump, Some(Dump::SubversionDir(_))));
    // The dump reads back to the same jobs.
    let again = self::config(&config.to_yaml());
    assert_eq!(again.to_yaml(), config.to_yaml());
    let strip = |c: &Config| {
        let mut jobs = c.jobs.clone();
        jobs.iter_mut().for_each(|j| j.line = 0);
        jobs
    };
    assert_eq!(strip(&again), strip(&config));
}

#[test]
fn bad_stream_jobs_name_the_line_and_key() {
    assert_error(
        "jobs:\n  - name: a\n    kind: zfs\n",
        "cfg.yaml:3: invalid value for jobs job #1.kind: must be tree, command, btrfs or a dump kind",
    );
    assert_error(
        "jobs:\n  - name: a\n    kind: btrfs\n    subvolume: /x\n",
        "invalid value for jobs job #1.snapshot_dir: missing",
    );
    assert_error(
        "jobs:\n  - name: a\n    kind: btrfs\n    subvolume: /x\n    snapshot_dir: /s\n    source: {path: /a}\n",
        "only a job of kind: tree has a source.path",
    );
    assert_error(
        "jobs:\n  - name: a\n    kind: postgresql\n    subvolume: /x\n",
        "cfg.yaml:4: unknown config key jobs job #1.subvolume",
    );
    assert_error(
        "jobs:\n  - name: a\n    kind: sqlite\n    command: [x]\n",
        "unknown config key jobs job #1.command",
    );
    assert_error(
        "jobs:\n  - name: a\n    kind: btrfs\n    subvolume: /x\n    snapshot_dir: /s\n    command: [x]\n",
        "only a job of kind: command runs a command",
    );
    assert_error(
        "jobs:\n  - name: a\n    kind: subversion\n",
        "needs jobs job #1.repository",
    );
}

// ---- destination.storage and destination.native (issue 17 item 3) ----

const GOOD_NURL: &str =
    "pb://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.1:9999/sw1ssnum#v=1";

#[test]
fn native_storage_keys_default_to_the_gateway() {
    let c = Config::builtin();
    assert_eq!(c.destination.storage, StorageMode::Gateway);
    let n = &c.destination.native;
    assert_eq!(n.node_dir, None);
    assert_eq!(n.convergence_file, None);
    assert_eq!(n.lease_secret_file, None);
    assert!(n.servers.is_empty());
    assert!(!n.required);
}

#[test]
fn native_storage_keys_are_read() {
    let yaml = format!(
        "destination:\n  storage: native\n  native:\n    node_dir: /n\n    \
         convergence_file: /c\n    lease_secret_file: /l\n    servers: ['{GOOD_NURL}']\n    \
         required: true\n"
    );
    let c = load_one(&yaml).expect("loads").config;
    assert_eq!(c.destination.storage, StorageMode::Native);
    let n = &c.destination.native;
    assert_eq!(n.node_dir.as_deref(), Some(std::path::Path::new("/n")));
    assert_eq!(
        n.convergence_file.as_deref(),
        Some(std::path::Path::new("/c"))
    );
    assert_eq!(
        n.lease_secret_file.as_deref(),
        Some(std::path::Path::new("/l"))
    );
    assert_eq!(n.servers, vec![GOOD_NURL.to_owned()]);
    assert!(n.required);
    // The dump leaves the swissnum out (a secret), and reading such a dump
    // back fails loudly rather than use a wrong swissnum.
    let dump = c.to_yaml();
    assert!(!dump.contains("sw1ssnum"), "{dump}");
    let redacted = GOOD_NURL.replace("sw1ssnum", "<swissnum>");
    assert!(dump.contains(&format!("- '{redacted}'")), "{dump}");
    let e = error(&dump);
    assert!(
        e.contains(
            "invalid value for destination.native.servers NURL #1: its swissnum was left \
             out by dump-config (a secret); give the server's whole NURL"
        ),
        "{e}"
    );
    // With the swissnum put back, the dump reads back the same.
    let restored = dump.replace("<swissnum>", "sw1ssnum");
    assert_eq!(load_one(&restored).expect("reloads").config, c);
}

#[test]
fn native_storage_keys_reject_bad_values() {
    assert_eq!(
        error("destination:\n  storage: direct\n"),
        "cfg.yaml:2: wrong type for destination.storage: expected one of gateway, native, \
         found the string \"direct\""
    );
    assert_eq!(
        error("destination:\n  native:\n    servers: 'pb://x'\n"),
        "cfg.yaml:3: wrong type for destination.native.servers: expected a list of NURLs, \
         or null, found the string \"pb://x\""
    );
    assert_eq!(
        error("destination:\n  native:\n    required: sometimes\n"),
        "cfg.yaml:3: wrong type for destination.native.required: expected true or false, \
         found the string \"sometimes\""
    );
    assert_eq!(
        error("destination:\n  native:\n    nodedir: /n\n"),
        "cfg.yaml:3: unknown config key destination.native.nodedir"
    );
    // A bad NURL names the element and what is wrong, never the swissnum.
    let bad = GOOD_NURL.replace("#v=1", "#v=2");
    let e = error(&format!(
        "destination:\n  native:\n    servers:\n      - '{GOOD_NURL}'\n      - '{bad}'\n"
    ));
    assert!(
        e.starts_with(
            "cfg.yaml:5: invalid value for destination.native.servers NURL #2: invalid NURL"
        ),
        "{e}"
    );
    assert!(!e.contains("sw1ssnum"), "{e}");
}
