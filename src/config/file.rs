//! The configuration file (`--config percore.toml`) and the precedence rule:
//! **flags > environment > file > defaults**.
//!
//! The file has a key for every flag, spelled like the flag (`max-body-size`, or
//! `max_body_size`). Each value is checked by the very parser its flag uses, so a file
//! accepts exactly what the command line accepts, and an error names the key. Unknown keys
//! are errors too: a typo must not silently fall back to a default.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches};

use super::Cli;

/// Flags that make no sense in the file.
const NOT_IN_FILE: [&str; 3] = ["config", "help", "version"];

/// Where an effective setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Env,
    Flag,
    Unset,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::File => "config file",
            Source::Env => "environment",
            Source::Flag => "command line",
            Source::Unset => "unset",
        })
    }
}

/// The command line, merged with the file.
#[derive(Debug)]
pub struct Loaded {
    pub cli: Cli,
    /// Every setting: its key, its value as given (None: unset), and where it came from.
    pub settings: Vec<(String, Option<String>, Source)>,
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// A bad flag or environment variable (clap prints these itself, with usage).
    Args(clap::Error),
    /// The file is unreadable or not TOML.
    File { path: PathBuf, message: String },
    /// A key in the file is unknown or has a bad value.
    Key { path: PathBuf, key: String, message: String },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Args(e) => write!(f, "{e}"),
            LoadError::File { path, message } => write!(f, "config file {}: {message}", path.display()),
            LoadError::Key { path, key, message } => {
                write!(f, "config file {}: key `{key}`: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Parse `args` (with the program name first), read the config file if one is named, and
/// merge them.
pub fn load(args: &[OsString]) -> Result<Loaded, LoadError> {
    load_with(Cli::command(), args)
}

/// [`load`] for `percore check-config` (its own usage and `--help`).
pub fn load_for_check(args: &[OsString]) -> Result<Loaded, LoadError> {
    load_with(Cli::check_config_command(), args)
}

/// [`load`], with `command` parsing the command line first (so that its usage and help are
/// the ones shown).
fn load_with(command: clap::Command, args: &[OsString]) -> Result<Loaded, LoadError> {
    let first = command.try_get_matches_from(args).map_err(LoadError::Args)?;
    let path: Option<PathBuf> = first.get_one::<PathBuf>("config").cloned();
    let mut from_file = BTreeSet::new();
    let mut merged: Vec<OsString> = args.to_vec();
    if let Some(path) = &path {
        for (long, value) in read_file(path)? {
            // A flag or environment variable wins over the file.
            if matches!(first.value_source(&long), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
            {
                continue;
            }
            merged.extend(value.into_iter().map(OsString::from));
            from_file.insert(long);
        }
    }
    let matches = Cli::command().try_get_matches_from(&merged).map_err(LoadError::Args)?;
    let cli = Cli::from_arg_matches(&matches).map_err(LoadError::Args)?;
    let settings = Cli::command()
        .get_arguments()
        .filter(|a| !NOT_IN_FILE.contains(&a.get_id().as_str()))
        .map(|a| {
            let id = a.get_id().as_str();
            let value = matches
                .get_raw(id)
                .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(","));
            let source = match matches.value_source(id) {
                _ if from_file.contains(id) => Source::File,
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env,
                Some(ValueSource::DefaultValue) => Source::Default,
                _ => Source::Unset,
            };
            (a.get_long().unwrap_or(id).to_string(), value, source)
        })
        .collect();
    Ok(Loaded { cli, settings })
}

/// The file's settings as command-line arguments, each checked on its own so that an error
/// names its key. Returns (argument id, arguments).
fn read_file(path: &Path) -> Result<Vec<(String, Vec<String>)>, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LoadError::File { path: path.to_owned(), message: e.to_string() })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| LoadError::File { path: path.to_owned(), message: e.to_string() })?;
    let cmd = Cli::command();
    let mut out = Vec::new();
    for (key, value) in table {
        let key_err = |message: String| LoadError::Key { path: path.to_owned(), key: key.clone(), message };
        let long = key.replace('_', "-");
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && !NOT_IN_FILE.contains(&a.get_id().as_str()))
        else {
            return Err(key_err("unknown key".to_string()));
        };
        let is_switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let args: Vec<String> = match (&value, is_switch) {
            (toml::Value::Boolean(true), true) => vec![format!("--{long}")],
            (toml::Value::Boolean(false), true) => Vec::new(),
            (_, true) => return Err(key_err("expected true or false".to_string())),
            // A flag that takes `true`/`false` (`ws-per-message-deflate = false`).
            (toml::Value::Boolean(b), false) => vec![format!("--{long}={b}")],
            (toml::Value::String(s), false) => vec![format!("--{long}={s}")],
            (toml::Value::Integer(i), false) => vec![format!("--{long}={i}")],
            (toml::Value::Float(f), false) => vec![format!("--{long}={f}")],
            // Repeatable flags (`bind = ["0.0.0.0:8000", "[::]:8000"]`).
            (toml::Value::Array(items), false)
                if matches!(arg.get_action(), ArgAction::Append)
                    && items.iter().all(|i| matches!(i, toml::Value::String(_))) =>
            {
                items.iter().filter_map(|i| i.as_str()).map(|i| format!("--{long}={i}")).collect()
            }
            (_, false) => return Err(key_err("expected a string or a number".to_string())),
        };
        // Check the value with the flag's own parser, alone. A key that needs another one
        // (`certfile` needs `keyfile`) cannot have it in a probe of one key: that rule is
        // the merged parse's to check, with every key of the file in.
        let mut probe = vec!["percore".to_string()];
        probe.extend(args.iter().cloned());
        match Cli::command().try_get_matches_from(&probe) {
            Err(e) if e.kind() != clap::error::ErrorKind::MissingRequiredArgument => {
                let message = e.to_string();
                let first_line =
                    message.lines().next().unwrap_or("invalid value").trim_start_matches("error: ");
                return Err(key_err(first_line.to_string()));
            }
            _ => {}
        }
        out.push((arg.get_id().as_str().to_string(), args));
    }
    Ok(out)
}

/// The settings whose value differs between `a` and `b` (their keys, in flag order).
pub fn changed<'a>(a: &'a Loaded, b: &Loaded) -> Vec<&'a str> {
    a.settings
        .iter()
        .filter(|(key, value, _)| {
            b.settings.iter().find(|(k, _, _)| k == key).map(|(_, v, _)| v) != Some(value)
        })
        .map(|(key, _, _)| key.as_str())
        .collect()
}

/// The effective configuration as TOML, one line per setting with its source, for
/// `percore check-config`.
pub fn render(loaded: &Loaded) -> String {
    let mut out =
        String::from("# effective percore configuration (flags > environment > config file > defaults)\n");
    for (key, value, source) in &loaded.settings {
        match value {
            Some(v) => out.push_str(&format!("{key} = {}  # {source}\n", toml_string(v))),
            None => out.push_str(&format!("# {key} is not set\n")),
        }
    }
    out
}

fn toml_string(v: &str) -> String {
    match v {
        "true" | "false" => v.to_string(),
        _ if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.len() < 16 => v.to_string(),
        _ => format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("percore-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("percore").chain(list.iter().copied()).map(OsString::from).collect()
    }

    #[test]
    fn file_fills_what_flags_leave() {
        let path =
            write("fill", "port = 9001\nmax_body_size = \"1MiB\"\nno-pin = true\nkeep-alive = \"5s\"\n");
        let p = path.to_str().unwrap();
        let loaded = load(&args(&["--config", p, "--port", "9002"])).unwrap();
        assert_eq!(loaded.cli.port, 9002, "a flag wins over the file");
        assert_eq!(loaded.cli.max_body_size, 1 << 20);
        assert!(loaded.cli.no_pin);
        assert_eq!(loaded.cli.keep_alive, std::time::Duration::from_secs(5));
        let source = |k: &str| loaded.settings.iter().find(|(key, _, _)| key == k).unwrap().2;
        assert_eq!(source("port"), Source::Flag);
        assert_eq!(source("max-body-size"), Source::File);
        assert_eq!(source("backlog"), Source::Default);
        let text = render(&loaded);
        assert!(text.contains("max-body-size = \"1MiB\"  # config file"), "{text}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn changed_settings_are_named() {
        let a = load(&args(&["--port", "1", "--log-level", "warn"])).unwrap();
        let b = load(&args(&["--port", "2", "--log-level", "warn", "--metrics-port", "9"])).unwrap();
        assert_eq!(changed(&a, &b), vec!["port", "metrics-port"]);
        assert!(changed(&a, &a).is_empty());
    }

    #[test]
    fn every_setting_applied_on_reload_is_a_setting() {
        let a = load(&args(&[])).unwrap();
        for key in crate::config::APPLIED_ON_RELOAD {
            assert!(a.settings.iter().any(|(k, _, _)| k == key), "{key} is not a setting");
        }
    }

    #[test]
    fn arrays_for_repeatable_flags() {
        let path = write("arrays", "bind = [\"127.0.0.1:1\", \"[::1]:2\"]\n");
        let loaded = load(&args(&["--config", path.to_str().unwrap()])).unwrap();
        assert_eq!(loaded.cli.bind, vec!["127.0.0.1:1".to_string(), "[::1]:2".to_string()]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn keys_that_need_each_other_are_read_together() {
        let both = write("tls-both", "certfile = \"/c.pem\"\nkeyfile = \"/k.pem\"\n");
        let loaded = load(&args(&["--config", both.to_str().unwrap()])).unwrap();
        assert_eq!(loaded.cli.certfile.as_deref(), Some(Path::new("/c.pem")));
        assert_eq!(loaded.cli.keyfile.as_deref(), Some(Path::new("/k.pem")));
        // One without the other is still refused, by the parse of the whole file.
        let alone = write("tls-alone", "certfile = \"/c.pem\"\n");
        let err = load(&args(&["--config", alone.to_str().unwrap()])).unwrap_err().to_string();
        assert!(err.contains("--keyfile"), "{err}");
        for p in [both, alone] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn errors_name_the_key() {
        let path = write("bad", "port = \"eighty\"\n");
        let err = load(&args(&["--config", path.to_str().unwrap()])).unwrap_err().to_string();
        assert!(err.contains("key `port`"), "{err}");
        let path2 = write("unknown", "prot = 80\n");
        let err = load(&args(&["--config", path2.to_str().unwrap()])).unwrap_err().to_string();
        assert!(err.contains("key `prot`: unknown key"), "{err}");
        let path3 = write("syntax", "port = = 1\n");
        assert!(matches!(load(&args(&["--config", path3.to_str().unwrap()])), Err(LoadError::File { .. })));
        for p in [path, path2, path3] {
            std::fs::remove_file(p).unwrap();
        }
    }
}
