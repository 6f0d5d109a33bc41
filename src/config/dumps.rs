//! The options of the dump job kinds (`postgresql`, `mysql`, `sqlite`,
//! `subversion`, `subversion_dir`; `docs/dumps.md`): one self-contained type
//! per kind, parsed from one mapping that holds `kind` and that kind's keys.
//!
//! The job schema (`jobs.rs`) hands a dump job's mapping, without the keys
//! every job has (`name`, `retention`, `hooks`), to [`parse`].
//! No key takes a password: the tools' own mechanisms (`.pgpass`,
//! `PGPASSFILE`, MySQL option files) carry them, so a password is never in
//! lafs-backup's config, its `config show` output or its logs.

use std::path::PathBuf;

use super::ConfigError;
use super::emit::Out;
use super::node::{Kind, Node};
use super::schema::{Invalid, InvalidKind, Layer, Value, check_duplicates, join, parse_list};

/// Which databases a server dump covers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Databases {
    /// `all`: the whole server as one stream (`pg_dumpall`,
    /// `mysqldump --all-databases`).
    All,
    /// `each` (the default): every database the server lists (minus the
    /// system ones and `exclude`), one stream each.
    Each,
    /// A list: these databases, one stream each.
    Named(Vec<String>),
}

/// How to reach a database server; every field unset means the tool's own
/// default (a local socket, the current user).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Connection {
    /// A host name, or (PostgreSQL) a directory holding the unix socket.
    pub(crate) host: Option<String>,
    /// The TCP port.
    pub(crate) port: Option<u16>,
    /// The user to connect as.
    pub(crate) user: Option<String>,
    /// (MySQL) The unix socket file.
    pub(crate) socket: Option<PathBuf>,
}

/// `kind: postgresql`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Postgresql {
    pub(crate) databases: Databases,
    /// Databases left out of `each`.
    pub(crate) exclude: Vec<String>,
    pub(crate) connection: Connection,
    /// Arguments added to every `pg_dump`/`pg_dumpall` (e.g. `--no-owner`).
    pub(crate) extra_args: Vec<String>,
    pub(crate) pg_dump: String,
    pub(crate) pg_dumpall: String,
    pub(crate) psql: String,
}

/// `kind: mysql` (MySQL and MariaDB).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mysql {
    pub(crate) databases: Databases,
    /// Databases left out of `each`.
    pub(crate) exclude: Vec<String>,
    pub(crate) connection: Connection,
    /// An option file with the credentials (`--defaults-extra-file`).
    pub(crate) defaults_extra_file: Option<PathBuf>,
    /// Arguments added to every `mysqldump`.
    pub(crate) extra_args: Vec<String>,
    pub(crate) mysqldump: String,
    pub(crate) mysql: String,
}

/// `kind: sqlite`: one database file, copied through SQLite's backup API.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sqlite {
    pub(crate) path: PathBuf,
}

/// `kind: subversion`: one repository, `svnadmin dump` in full.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subversion {
    pub(crate) repository: PathBuf,
    pub(crate) svnadmin: String,
}

/// `kind: subversion_dir`: every repository directly under a directory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SubversionDir {
    pub(crate) directory: PathBuf,
    pub(crate) svnadmin: String,
}

/// One dump job's options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Dump {
    Postgresql(Postgresql),
    Mysql(Mysql),
    Sqlite(Sqlite),
    Subversion(Subversion),
    SubversionDir(SubversionDir),
}

/// The values of `kind` this module parses.
pub(crate) const KINDS: [&str; 5] = [
    "postgresql",
    "mysql",
    "sqlite",
    "subversion",
    "subversion_dir",
];

/// Parses a dump job's mapping (`kind` plus that kind's keys) at `key`.
/// Every other key is an error naming it.
pub(crate) fn parse(node: &Node, key: &str) -> Result<Dump, Invalid> {
    let Kind::Map(entries) = &node.kind else {
        return Err(Invalid::ty(
            node,
            key,
            "a mapping with kind and its options",
        ));
    };
    check_duplicates(entries, key)?;
    let Some(kind_entry) = entries.iter().find(|e| e.key == "kind") else {
        return Err(Invalid::value(
            node,
            key,
            format!("no kind (one of {})", KINDS.join(", ")),
        ));
    };
    let kind_key = join(key, "kind");
    let kind = String::parse(&kind_entry.value, &kind_key)?;
    if !KINDS.contains(&kind.as_str()) {
        return Err(Invalid::value(
            &kind_entry.value,
            &kind_key,
            format!("unknown dump kind {kind:?} (one of {})", KINDS.join(", ")),
        ));
    }
    let mut opts = Opts::default();
    for entry in entries.iter().filter(|e| e.key != "kind") {
        let child = join(key, &entry.key);
        let allowed = match kind.as_str() {
            "postgresql" => PG_KEYS.contains(&entry.key.as_str()),
            "mysql" => MYSQL_KEYS.contains(&entry.key.as_str()),
            "sqlite" => entry.key == "path",
            "subversion" => ["repository", "svnadmin"].contains(&entry.key.as_str()),
            _ => ["directory", "svnadmin"].contains(&entry.key.as_str()),
        };
        if !allowed {
            return Err(Invalid {
                line: entry.key_line,
                key: child,
                kind: InvalidKind::Unknown,
            });
        }
        opts.set(&entry.key, &entry.value, &child)?;
    }
    let need = |value: Option<PathBuf>, name: &str| {
        value.ok_or_else(|| {
            Invalid::value(
                &kind_entry.value,
                &kind_key,
                format!("a {kind} dump needs {}", join(key, name)),
            )
        })
    };
    let svnadmin = opts
        .svnadmin
        .take()
        .unwrap_or_else(|| "svnadmin".to_owned());
    Ok(match kind.as_str() {
        "postgresql" => Dump::Postgresql(Postgresql {
            databases: opts.databases.unwrap_or(Databases::Each),
            exclude: opts.exclude,
            connection: opts.connection,
            extra_args: opts.extra_args,
            pg_dump: opts
                .tools
                .remove("pg_dump")
                .unwrap_or_else(|| "pg_dump".into()),
            pg_dumpall: opts
                .tools
                .remove("pg_dumpall")
                .unwrap_or_else(|| "pg_dumpall".into()),
            psql: opts.tools.remove("psql").unwrap_or_else(|| "psql".into()),
        }),
        "mysql" => Dump::Mysql(Mysql {
            databases: opts.databases.unwrap_or(Databases::Each),
            exclude: opts.exclude,
            connection: opts.connection,
            defaults_extra_file: opts.defaults_extra_file,
            extra_args: opts.extra_args,
            mysqldump: opts
                .tools
                .remove("mysqldump")
                .unwrap_or_else(|| "mysqldump".into()),
            mysql: opts.tools.remove("mysql").unwrap_or_else(|| "mysql".into()),
        }),
        "sqlite" => Dump::Sqlite(Sqlite {
            path: need(opts.path, "path")?,
        }),
        "subversion" => Dump::Subversion(Subversion {
            repository: need(opts.repository, "repository")?,
            svnadmin,
        }),
        _ => Dump::SubversionDir(SubversionDir {
            directory: need(opts.directory, "directory")?,
            svnadmin,
        }),
    })
}

/// Parses a dump job's mapping from YAML text; errors name `file`.
pub(crate) fn from_yaml(text: &str, file: &str) -> Result<Dump, ConfigError> {
    let node = super::node::parse(text).map_err(|e| ConfigError::Syntax {
        file: file.to_owned(),
        line: e.line,
        message: e.message,
    })?;
    let mut warnings = Vec::new();
    let layer = Layer {
        file,
        warnings: &mut warnings,
    };
    parse(&node, "").map_err(|e| layer.fail(e))
}

// A PostgreSQL unix socket is a directory given as `host` (libpq's rule),
// so there is no `socket` key here.
const PG_KEYS: [&str; 9] = [
    "databases",
    "exclude",
    "host",
    "port",
    "user",
    "extra_args",
    "pg_dump",
    "pg_dumpall",
    "psql",
];

const MYSQL_KEYS: [&str; 10] = [
    "databases",
    "exclude",
    "host",
    "port",
    "user",
    "socket",
    "defaults_extra_file",
    "extra_args",
    "mysqldump",
    "mysql",
];

/// Whether a tool setting names a program that can run (the hooks' rule:
/// a path with a `/` that is executable, or a name found in `PATH`).
pub(crate) fn resolves(program: &str) -> bool {
    super::hooks::resolves(program)
}

/// Every key any kind takes, before the kind's own defaults are applied.
#[derive(Default)]
struct Opts {
    databases: Option<Databases>,
    exclude: Vec<String>,
    connection: Connection,
    defaults_extra_file: Option<PathBuf>,
    extra_args: Vec<String>,
    tools: std::collections::HashMap<String, String>,
    svnadmin: Option<String>,
    path: Option<PathBuf>,
    repository: Option<PathBuf>,
    directory: Option<PathBuf>,
}

impl Opts {
    fn set(&mut self, name: &str, value: &Node, key: &str) -> Result<(), Invalid> {
        if matches!(value.kind, Kind::Null) {
            return Ok(());
        }
        match name {
            "databases" => self.databases = Some(databases(value, key)?),
            "exclude" => self.exclude = strings(value, key, "database")?,
            "extra_args" => self.extra_args = strings(value, key, "argument")?,
            "host" => self.connection.host = Some(non_empty(value, key)?),
            "user" => self.connection.user = Some(non_empty(value, key)?),
            "port" => {
                let port = u64::parse(value, key)?;
                self.connection.port = match u16::try_from(port) {
                    Ok(p) if p > 0 => Some(p),
                    _ => return Err(Invalid::value(value, key, "a port from 1 to 65535")),
                };
            }
            "socket" => self.connection.socket = Some(PathBuf::parse(value, key)?),
            "defaults_extra_file" => self.defaults_extra_file = Some(PathBuf::parse(value, key)?),
            "path" => self.path = Some(PathBuf::parse(value, key)?),
            "repository" => self.repository = Some(PathBuf::parse(value, key)?),
            "directory" => self.directory = Some(PathBuf::parse(value, key)?),
            "svnadmin" => self.svnadmin = Some(non_empty(value, key)?),
            tool => {
                self.tools.insert(tool.to_owned(), non_empty(value, key)?);
            }
        }
        Ok(())
    }
}

/// The job's dump keys for the config dump (`kind` first), every one
/// written out so that the dump parses back to the same job.
pub(crate) fn to_out(dump: &Dump) -> Vec<(&'static str, Out)> {
    let text = |s: &str| Out::Str(s.to_owned());
    let texts = |v: &[String]| Out::Seq(v.iter().map(|s| text(s)).collect());
    let opt_text = |s: &Option<String>| s.as_deref().map_or(Out::Null, text);
    let path = |p: &PathBuf| p.to_out();
    let databases = |d: &Databases| match d {
        Databases::All => Out::Word("all"),
        Databases::Each => Out::Word("each"),
        Databases::Named(names) => texts(names),
    };
    let connection = |c: &Connection, socket: bool| {
        let mut out = vec![
            ("host", opt_text(&c.host)),
            ("port", c.port.map_or(Out::Null, |p| Out::Int(p.into()))),
            ("user", opt_text(&c.user)),
        ];
        if socket {
            out.push(("socket", c.socket.as_ref().map_or(Out::Null, path)));
        }
        out
    };
    match dump {
        Dump::Postgresql(pg) => {
            let mut out = vec![
                ("kind", Out::Word("postgresql")),
                ("databases", databases(&pg.databases)),
                ("exclude", texts(&pg.exclude)),
            ];
            out.extend(connection(&pg.connection, false));
            out.extend([
                ("extra_args", texts(&pg.extra_args)),
                ("pg_dump", text(&pg.pg_dump)),
                ("pg_dumpall", text(&pg.pg_dumpall)),
                ("psql", text(&pg.psql)),
            ]);
            out
        }
        Dump::Mysql(my) => {
            let mut out = vec![
                ("kind", Out::Word("mysql")),
                ("databases", databases(&my.databases)),
                ("exclude", texts(&my.exclude)),
            ];
            out.extend(connection(&my.connection, true));
            out.extend([
                (
                    "defaults_extra_file",
                    my.defaults_extra_file.as_ref().map_or(Out::Null, path),
                ),
                ("extra_args", texts(&my.extra_args)),
                ("mysqldump", text(&my.mysqldump)),
                ("mysql", text(&my.mysql)),
            ]);
            out
        }
        Dump::Sqlite(sq) => vec![("kind", Out::Word("sqlite")), ("path", path(&sq.path))],
        Dump::Subversion(svn) => vec![
            ("kind", Out::Word("subversion")),
            ("repository", path(&svn.repository)),
            ("svnadmin", text(&svn.svnadmin)),
        ],
        Dump::SubversionDir(svn) => vec![
            ("kind", Out::Word("subversion_dir")),
            ("directory", path(&svn.directory)),
            ("svnadmin", text(&svn.svnadmin)),
        ],
    }
}

/// `all`, `each`, or a list of database names.
fn databases(node: &Node, key: &str) -> Result<Databases, Invalid> {
    match &node.kind {
        Kind::Str(s) if s == "all" => Ok(Databases::All),
        Kind::Str(s) if s == "each" => Ok(Databases::Each),
        Kind::Seq(_) => {
            let names = strings(node, key, "database")?;
            if names.is_empty() {
                return Err(Invalid::value(
                    node,
                    key,
                    "an empty list dumps nothing; use each or all",
                ));
            }
            Ok(Databases::Named(names))
        }
        _ => Err(Invalid::ty(
            node,
            key,
            "all, each or a list of database names",
        )),
    }
}

fn strings(node: &Node, key: &str, noun: &str) -> Result<Vec<String>, Invalid> {
    parse_list(node, key, "a list of strings", noun, non_empty)
}

fn non_empty(node: &Node, key: &str) -> Result<String, Invalid> {
    let s = String::parse(node, key)?;
    if s.is_empty() {
        return Err(Invalid::value(node, key, "an empty string"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<Dump, String> {
        from_yaml(text, "job.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn postgresql_defaults_and_options() {
        let Dump::Postgresql(pg) = parse_text("kind: postgresql\n").unwrap() else {
            panic!("not postgresql")
        };
        assert_eq!(pg.databases, Databases::Each);
        assert_eq!(pg.pg_dump, "pg_dump");
        assert_eq!(pg.pg_dumpall, "pg_dumpall");
        assert_eq!(pg.psql, "psql");
        assert_eq!(pg.connection, Connection::default());

        let text = "kind: postgresql\ndatabases: [app, wiki]\nexclude: [x]\nhost: /run/pg\n\
                    port: 5433\nuser: backup\nextra_args: [--no-owner]\n\
                    pg_dump: /usr/lib/postgresql/15/bin/pg_dump\n";
        let Dump::Postgresql(pg) = parse_text(text).unwrap() else {
            panic!("not postgresql")
        };
        assert_eq!(
            pg.databases,
            Databases::Named(vec!["app".into(), "wiki".into()])
        );
        assert_eq!(pg.exclude, ["x"]);
        assert_eq!(pg.connection.host.as_deref(), Some("/run/pg"));
        assert_eq!(pg.connection.port, Some(5433));
        assert_eq!(pg.connection.user.as_deref(), Some("backup"));
        assert_eq!(pg.extra_args, ["--no-owner"]);
        assert_eq!(pg.pg_dump, "/usr/lib/postgresql/15/bin/pg_dump");
        let Dump::Postgresql(pg) = parse_text("kind: postgresql\ndatabases: all\n").unwrap() else {
            panic!("not postgresql")
        };
        assert_eq!(pg.databases, Databases::All);
    }

    #[test]
    fn mysql_options() {
        let text = "kind: mysql\ndatabases: all\nsocket: /run/mysqld/mysqld.sock\n\
                    defaults_extra_file: /etc/lafs/my.cnf\nmysqldump: /opt/mysqldump\n";
        let Dump::Mysql(my) = parse_text(text).unwrap() else {
            panic!("not mysql")
        };
        assert_eq!(my.databases, Databases::All);
        assert_eq!(
            my.connection.socket,
            Some(PathBuf::from("/run/mysqld/mysqld.sock"))
        );
        assert_eq!(
            my.defaults_extra_file,
            Some(PathBuf::from("/etc/lafs/my.cnf"))
        );
        assert_eq!(my.mysqldump, "/opt/mysqldump");
        assert_eq!(my.mysql, "mysql");
    }

    #[test]
    fn sqlite_and_subversion() {
        assert_eq!(
            parse_text("kind: sqlite\npath: /var/lib/app.db\n").unwrap(),
            Dump::Sqlite(Sqlite {
                path: "/var/lib/app.db".into()
            })
        );
        assert_eq!(
            parse_text("kind: subversion\nrepository: /srv/svn/a\n").unwrap(),
            Dump::Subversion(Subversion {
                repository: "/srv/svn/a".into(),
                svnadmin: "svnadmin".into()
            })
        );
        assert_eq!(
            parse_text("kind: subversion_dir\ndirectory: /srv/svn\nsvnadmin: /opt/svnadmin\n")
                .unwrap(),
            Dump::SubversionDir(SubversionDir {
                directory: "/srv/svn".into(),
                svnadmin: "/opt/svnadmin".into()
            })
        );
    }

    #[test]
    fn mistakes_name_the_key() {
        let err = parse_text("kind: postgresql\npassword: hunter2\n").unwrap_err();
        assert!(
            err.contains("job.yaml:2") && err.contains("password"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = parse_text("kind: oracle\n").unwrap_err();
        assert!(
            err.contains("unknown dump kind") && err.contains("oracle"),
            "{err}"
        );
        let err = parse_text("kind: sqlite\n").unwrap_err();
        assert!(err.contains("needs path"), "{err}");
        let err = parse_text("kind: mysql\nport: 70000\n").unwrap_err();
        assert!(err.contains("port"), "{err}");
        let err = parse_text("kind: mysql\ndatabases: []\n").unwrap_err();
        assert!(err.contains("databases"), "{err}");
        let err = parse_text("kind: subversion\nrepository: /r\ndirectory: /d\n").unwrap_err();
        assert!(err.contains("directory"), "{err}");
        let err = parse_text("databases: all\n").unwrap_err();
        assert!(err.contains("no kind"), "{err}");
        let err = parse_text("kind: mysql\nextra_args: [\"\"]\n").unwrap_err();
        assert!(err.contains("extra_args"), "{err}");
    }
}
