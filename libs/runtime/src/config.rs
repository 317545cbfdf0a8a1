//! Settings from a config file. Precedence, lowest first: defaults, the file (`--config FILE` or
//! `ALOFT_CONFIG`), `ALOFT_*` environment variables, flags. The file is YAML; its keys are the long flag
//! names (`kafka-brokers` or `kafka_brokers`), so `--help` documents both. An unknown key is an error that
//! names it and lists the valid ones, at start rather than silently ignored.

use std::ffi::OsString;
use std::path::Path;

use clap::{ArgAction, CommandFactory, FromArgMatches};

/// Parses the process's command line with the config file applied; exits with a clear message on error.
pub fn parse<T: CommandFactory + FromArgMatches>() -> T {
    let args: Vec<OsString> = std::env::args_os().collect();
    match parse_from::<T>(args) {
        Ok(parsed) => parsed,
        Err(ParseError::Clap(error)) => error.exit(),
        Err(ParseError::Config(message)) => {
            eprintln!("error: {message}");
            std::process::exit(2);
        }
    }
}

#[derive(Debug)]
pub enum ParseError {
    Clap(clap::Error),
    Config(ConfigFileError),
}

/// What is wrong with a `--config` file; the message names the file and the setting.
#[derive(Debug, thiserror::Error)]
#[error("config file {path}{problem}")]
pub struct ConfigFileError {
    pub path: String,
    pub problem: ConfigFileProblem,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileProblem {
    #[error(": {0}")]
    Unreadable(std::io::Error),
    #[error(" is not valid YAML: {0}")]
    NotYaml(serde_yaml::Error),
    #[error(" must be a mapping of setting: value")]
    NotMapping,
    #[error(": key {0} is not a setting name")]
    KeyNotName(String),
    #[error(": unknown setting {key:?}; valid settings: {valid}")]
    UnknownSetting { key: String, valid: String },
    #[error(": {key} must be a single value")]
    NotSingle { key: String },
    #[error(": {key} must be true or false, not {value:?}")]
    NotBoolean { key: String, value: String },
}

/// `parse` over given arguments (the first is the program name), for tests.
pub fn parse_from<T: CommandFactory + FromArgMatches>(args: Vec<OsString>) -> Result<T, ParseError> {
    // Later occurrences of a flag win, so the file's values (inserted first) yield to the command line.
    let command = T::command().args_override_self(true);
    let config_path = config_path(&args).or_else(|| std::env::var_os("ALOFT_CONFIG"));
    let mut full: Vec<OsString> = args.first().cloned().into_iter().collect();
    if let Some(path) = config_path {
        full.extend(config_args(&command, Path::new(&path)).map_err(ParseError::Config)?);
    }
    full.extend(args.into_iter().skip(1));
    let matches = command.try_get_matches_from(full).map_err(ParseError::Clap)?;
    T::from_arg_matches(&matches).map_err(ParseError::Clap)
}

fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().cloned();
        }
        if let Some(value) = text.strip_prefix("--config=") {
            return Some(OsString::from(value));
        }
    }
    None
}

/// The file's settings as flags, leaving out those an `ALOFT_*` environment variable already sets.
fn config_args(command: &clap::Command, path: &Path) -> Result<Vec<OsString>, ConfigFileError> {
    let fail = |problem| ConfigFileError {
        path: path.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(ConfigFileProblem::Unreadable(e)))?;
    let document: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| fail(ConfigFileProblem::NotYaml(e)))?;
    let entries = match document {
        serde_yaml::Value::Mapping(entries) => entries,
        serde_yaml::Value::Null => return Ok(Vec::new()),
        _ => return Err(fail(ConfigFileProblem::NotMapping)),
    };
    let valid: Vec<&clap::Arg> = command
        .get_arguments()
        .filter(|arg| {
            arg.get_long()
                .is_some_and(|long| long != "config" && long != "help" && long != "version")
        })
        .collect();
    let valid_names = || {
        valid
            .iter()
            .filter_map(|arg| arg.get_long())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut flags = Vec::new();
    for (key, value) in entries {
        let key = match key {
            serde_yaml::Value::String(key) => key,
            other => return Err(fail(ConfigFileProblem::KeyNotName(format!("{other:?}")))),
        };
        let long = key.replace('_', "-");
        let Some(arg) = valid.iter().find(|arg| arg.get_long() == Some(long.as_str())) else {
            return Err(fail(ConfigFileProblem::UnknownSetting {
                key,
                valid: valid_names(),
            }));
        };
        if arg.get_env().is_some_and(|env| std::env::var_os(env).is_some()) {
            continue;
        }
        let value = match value {
            serde_yaml::Value::String(text) => text,
            serde_yaml::Value::Number(number) => number.to_string(),
            serde_yaml::Value::Bool(flag) => flag.to_string(),
            _ => return Err(fail(ConfigFileProblem::NotSingle { key })),
        };
        if matches!(arg.get_action(), ArgAction::SetTrue) {
            match value.as_str() {
                "true" => flags.push(OsString::from(format!("--{long}"))),
                "false" => {}
                other => {
                    return Err(fail(ConfigFileProblem::NotBoolean {
                        key,
                        value: other.to_string(),
                    }))
                }
            }
            continue;
        }
        flags.push(OsString::from(format!("--{long}")));
        flags.push(OsString::from(value));
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser, Debug)]
    struct Example {
        #[command(flatten)]
        backend: crate::BackendArgs,
        #[arg(long, env = "ALOFT_TEST_CONFIG_LISTEN", default_value = "127.0.0.1:1")]
        listen: String,
    }

    fn parse_with(file: &str, flags: &[&str]) -> Result<Example, ParseError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aloft.yaml");
        std::fs::write(&path, file).unwrap();
        let mut args: Vec<OsString> = vec!["aloft-test".into(), "--config".into(), path.clone().into()];
        args.extend(flags.iter().map(OsString::from));
        parse_from::<Example>(args)
    }

    #[test]
    fn file_values_apply_and_flags_override_them() {
        let parsed = parse_with(
            "kafka_brokers: 10.0.0.1:9092\npartitions: 16\nlisten: 0.0.0.0:9\n",
            &[],
        )
        .unwrap();
        assert_eq!(parsed.backend.kafka_brokers.as_deref(), Some("10.0.0.1:9092"));
        assert_eq!(parsed.backend.partitions, 16);
        assert_eq!(parsed.listen, "0.0.0.0:9");
        let parsed = parse_with("partitions: 16\n", &["--partitions", "4"]).unwrap();
        assert_eq!(parsed.backend.partitions, 4);
    }

    #[test]
    fn unknown_settings_and_bad_values_are_named() {
        let Err(ParseError::Config(message)) = parse_with("kafka_broker: x\n", &[]) else {
            panic!("an unknown key must be refused");
        };
        assert!(
            message.to_string().contains("unknown setting \"kafka_broker\""),
            "{message}"
        );
        assert!(message.to_string().contains("kafka-brokers"), "{message}");
        let Err(ParseError::Config(message)) = parse_with("partitions: [1, 2]\n", &[]) else {
            panic!("a list must be refused");
        };
        assert!(
            message.to_string().contains("partitions must be a single value"),
            "{message}"
        );
        let Err(ParseError::Clap(error)) = parse_with("partitions: 0\n", &[]) else {
            panic!("an out-of-range value must be refused");
        };
        assert!(error.to_string().contains("partitions"), "{error}");
        let Err(ParseError::Config(message)) = parse_with("- a\n", &[]) else {
            panic!("a list document must be refused");
        };
        assert!(message.to_string().contains("must be a mapping"), "{message}");
    }
}
