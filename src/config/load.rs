//! Reading a configuration: the file, the `IMIPD_` environment over it, then the files that
//! hold secrets. Each problem names its key, or the environment variable that caused it, and
//! every section's problem is reported at once.

use super::{Config, ConfigError};
use std::path::Path;

/// The sections of a file, in the order they are checked.
const SECTIONS: [&str; 12] = [
    "server",
    "lmtp",
    "smtp",
    "http",
    "inbound",
    "outbound",
    "security",
    "store",
    "limits",
    "log",
    "templates",
    "accounts",
];

impl Config {
    /// Reads the file (when given) and the `IMIPD_` environment, reads the secrets' files,
    /// then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match read(path, true) {
            Ok(config) => config,
            // What the file alone says decides whom to blame.
            Err(errors) if read(path, false).is_ok() => {
                return Err(ConfigError::all(blame_environment(errors)));
            }
            Err(errors) => return Err(ConfigError::all(errors)),
        };
        config.read_secrets()?;
        config.validate()?;
        Ok(config)
    }

    /// Fills `http.admin_token` and the relay's password from the files named for them.
    fn read_secrets(&mut self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if let Some(file) = &self.http.admin_token_file {
            match secret(file) {
                _ if !self.http.admin_token.is_empty() => errors.push(invalid(
                    "http.admin_token_file",
                    "set either http.admin_token or http.admin_token_file, not both",
                )),
                Ok(token) => self.http.admin_token = token,
                Err(problem) => errors.push(invalid("http.admin_token_file", problem)),
            }
        }
        let from_file = self.outbound.relay_password_file.clone();
        match (&mut self.outbound.relay, from_file) {
            (Some(relay), Some(file)) => match (&mut relay.credentials, secret(file.as_path())) {
                (Some((_, password)), Ok(text)) if password.is_empty() => *password = text,
                (_, Err(problem)) => errors.push(invalid("outbound.relay_password_file", problem)),
                _ => errors.push(invalid(
                    "outbound.relay_password_file",
                    "the relay URL must name the user and no password: smtp://user@host:port",
                )),
            },
            (Some(relay), None) if relay.credentials.as_ref().is_some_and(|c| c.1.is_empty()) => {
                errors.push(invalid(
                    "outbound.relay",
                    "names a user without a password: add :password@ or set outbound.relay_password_file",
                ))
            }
            (None, Some(_)) => errors.push(invalid(
                "outbound.relay_password_file",
                "set, but outbound.relay is not",
            )),
            _ => {}
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::all(errors)),
        }
    }
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// A secret kept in a file of its own (systemd's `LoadCredential=` makes such files): its
/// text without the line end.
fn secret(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    Ok(text.to_string())
}

/// The file and, with `environment`, the `IMIPD_` variables over it; every section's first
/// problem when it does not deserialize.
fn read(path: Option<&Path>, environment: bool) -> Result<Config, Vec<ConfigError>> {
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        builder = builder.add_source(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }
    if environment {
        builder = builder.add_source(
            config::Environment::with_prefix("IMIPD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        );
    }
    let built = builder.build().map_err(|e| vec![keyed(e)])?;
    match built.clone().try_deserialize::<Config>() {
        Ok(config) => Ok(config),
        Err(whole) => {
            let mut errors = section_errors(&built);
            if errors.is_empty() {
                errors.push(keyed(whole));
            }
            Err(errors)
        }
    }
}

/// Each section deserialized alone (in a configuration holding only it, so that its problem
/// is named by its whole key), so that a problem in one does not hide the next one's.
fn section_errors(built: &config::Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let top = built
        .clone()
        .try_deserialize::<std::collections::BTreeMap<String, config::Value>>();
    if let Ok(table) = top {
        for name in table.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
            errors.push(invalid(
                name,
                format!("unknown section; the sections are {}", SECTIONS.join(", ")),
            ));
        }
    }
    for name in SECTIONS {
        let Ok(value) = built.get::<config::Value>(name) else {
            continue;
        };
        let alone = config::Config::builder()
            .set_override(name, value)
            .and_then(|b| b.build())
            .and_then(|c| c.try_deserialize::<Config>());
        if let Err(e) = alone {
            errors.push(keyed(e));
        }
    }
    errors
}

/// A deserialization error that names its key, as `key: problem` like the checks' own.
pub(super) fn keyed(error: config::ConfigError) -> ConfigError {
    match error {
        config::ConfigError::At {
            error,
            key: Some(key),
            ..
        } => invalid(&key, error.to_string()),
        config::ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => invalid(&key, format!("{unexpected} is not {expected}")),
        other => ConfigError::Read(other),
    }
}

/// The `IMIPD_` variables set, with the key each stands for (`IMIPD_SERVER__DATA_DIR` is
/// `server.data_dir`).
fn environment_keys() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(name, _)| {
            let key = name
                .strip_prefix("IMIPD_")?
                .to_ascii_lowercase()
                .replace("__", ".");
            Some((name, key))
        })
        .collect()
}

/// The file alone is good: each problem is a variable's. An unknown key's problem names the
/// field (`unknown field `datadir``), a bad value's names the key.
fn blame_environment(errors: Vec<ConfigError>) -> Vec<ConfigError> {
    let variables = environment_keys();
    errors
        .into_iter()
        .map(|error| {
            let ConfigError::Invalid { key, problem } = &error else {
                return error;
            };
            let culprit = variables.iter().find(|(_, var_key)| {
                let (section, field) = var_key.rsplit_once('.').unwrap_or(("", var_key));
                var_key == key
                    || (key.split('.').next() == Some(section)
                        && problem.contains(&format!("`{field}`")))
            });
            match culprit {
                Some((variable, _)) => ConfigError::Environment {
                    variable: variable.clone(),
                    problem: problem.clone(),
                },
                None => error,
            }
        })
        .collect()
}
