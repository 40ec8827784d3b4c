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
        // Every problem at once: a secret's file that cannot be read hides nothing else.
        let problems: Vec<ConfigError> = [
            config.read_secrets(),
            config.read_certificates(),
            config.validate(),
        ]
        .into_iter()
        .filter_map(Result::err)
        .flat_map(ConfigError::into_each)
        .collect();
        match problems.is_empty() {
            true => Ok(config),
            false => Err(ConfigError::all(problems)),
        }
    }

    /// Reads the TLS certificates and keys the configuration names.
    fn read_certificates(&mut self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let smtp = tls("smtp", &self.smtp.tls_cert, &self.smtp.tls_key, &[]);
        let http = tls(
            "http",
            &self.http.tls_cert,
            &self.http.tls_key,
            &[b"http/1.1"],
        );
        match smtp {
            Ok(loaded) => self.smtp.tls = loaded,
            Err(e) => errors.push(e),
        }
        match http {
            Ok(loaded) => self.http.tls = loaded,
            Err(e) => errors.push(e),
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::all(errors)),
        }
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
        if let Some(file) = &self.store.url_file {
            match secret(file) {
                _ if self.store.url.is_some() => errors.push(invalid(
                    "store.url_file",
                    "set either store.url or store.url_file, not both",
                )),
                Ok(text) => match crate::store::Database::parse(&text) {
                    Ok(url) => self.store.url = Some(url),
                    Err(problem) => errors.push(invalid("store.url_file", problem)),
                },
                Err(problem) => errors.push(invalid("store.url_file", problem)),
            }
        }
        if let Some(file) = self.store.ca_file.clone() {
            match certificates(&file) {
                Ok(_) if self.store.url.is_none() => {
                    errors.push(invalid("store.ca_file", "set, but store.url is not"))
                }
                Ok(roots) => self.store.url = self.store.url.take().map(|u| u.with_roots(roots)),
                Err(problem) => errors.push(invalid("store.ca_file", problem)),
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

/// A section's certificate and key, read into a rustls configuration (ring, TLS 1.2 and 1.3).
fn tls(
    section: &str,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
    alpn: &[&[u8]],
) -> Result<Option<super::Tls>, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(_), None) => {
            return Err(invalid(
                &format!("{section}.tls_key"),
                "missing: tls_cert needs its key",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                &format!("{section}.tls_cert"),
                "missing: tls_key needs its certificate",
            ));
        }
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| {
            invalid(
                &format!("{section}.tls_cert"),
                format!("{}: {e}", cert.display()),
            )
        })?;
    if chain.is_empty() {
        return Err(invalid(
            &format!("{section}.tls_cert"),
            format!("{}: no certificate in it", cert.display()),
        ));
    }
    let secret = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        invalid(
            &format!("{section}.tls_key"),
            format!("{}: {e}", key.display()),
        )
    })?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, secret))
        .map_err(|e| {
            invalid(
                &format!("{section}.tls_key"),
                format!("does not fit the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Some(super::Tls(std::sync::Arc::new(config))))
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// A secret kept in a file of its own (systemd's `LoadCredential=` makes such files): its
/// text without the line end.
/// The certificates of a PEM file: at least one.
fn certificates(file: &Path) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    match roots.is_empty() {
        true => Err(format!("{}: no certificate in it", file.display())),
        false => Ok(roots),
    }
}

fn secret(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        return Err(format!("{} is empty", file.display()));
    }
    Ok(text.to_string())
}

/// The file and, with `environment`, the `IMIPD_` variables over it (an empty one clears its
/// key: the default applies, whatever the file says); every section's first problem when it
/// does not deserialize.
fn read(path: Option<&Path>, environment: bool) -> Result<Config, Vec<ConfigError>> {
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        let file = config::File::from(path)
            .format(config::FileFormat::Toml)
            .required(true);
        let cleared: Vec<String> = match environment {
            true => environment_keys()
                .into_iter()
                .filter(|(name, _)| std::env::var_os(name).is_some_and(|v| v.is_empty()))
                .map(|(_, key)| key)
                .collect(),
            false => Vec::new(),
        };
        builder = match cleared.is_empty() {
            true => builder.add_source(file),
            false => builder.add_source(without(file, &cleared).map_err(|e| vec![keyed(e)])?),
        };
    }
    if environment {
        builder = builder.add_source(
            config::Environment::with_prefix("IMIPD")
                .prefix_separator("_")
                .separator("__")
                .ignore_empty(true)
                .try_parsing(true),
        );
    }
    let built = builder.build().map_err(|e| vec![keyed(e)])?;
    match built.clone().try_deserialize::<Config>() {
        Ok(config) => Ok(config),
        Err(whole) => {
            let (mut errors, rest) = tolerant(&built);
            if errors.is_empty() {
                errors.push(keyed(whole));
            }
            // What the rest says too: one run names every problem of the file.
            if let Some(mut rest) = rest {
                errors.extend(
                    rest.read_secrets()
                        .err()
                        .into_iter()
                        .flat_map(ConfigError::into_each),
                );
                errors.extend(
                    rest.read_certificates()
                        .err()
                        .into_iter()
                        .flat_map(ConfigError::into_each),
                );
                errors.extend(
                    rest.validate()
                        .err()
                        .into_iter()
                        .flat_map(ConfigError::into_each),
                );
            }
            Err(errors)
        }
    }
}

/// Every deserialization problem of the settings, each key's once (an unknown key, a value
/// of the wrong kind), and the configuration the rest makes, the keys in trouble left out
/// (their defaults apply), so that what they hid can be checked too.
fn tolerant(built: &config::Config) -> (Vec<ConfigError>, Option<Config>) {
    let mut errors = Vec::new();
    let Ok(mut table) = built
        .clone()
        .try_deserialize::<std::collections::BTreeMap<String, serde_json::Value>>()
    else {
        return (section_errors(built), None);
    };
    for name in table.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
        errors.push(invalid(
            name,
            format!("unknown section; the sections are {}", SECTIONS.join(", ")),
        ));
    }
    table.retain(|k, _| SECTIONS.contains(&k.as_str()));
    for name in SECTIONS {
        let Some(section) = table.remove(name) else {
            continue;
        };
        let (problems, kept) = clean_section(name, section);
        errors.extend(problems);
        table.insert(name.to_string(), kept);
    }
    let rest = serde_json::to_string(&table)
        .ok()
        .and_then(|json| {
            config::Config::builder()
                .add_source(config::File::from_str(&json, config::FileFormat::Json))
                .build()
                .ok()
        })
        .and_then(|c| c.try_deserialize::<Config>().ok());
    (errors, rest)
}

/// A section's problems, and the section without the keys that caused them: each problem is
/// found deserializing the section alone, its key left out, and the section tried again.
fn clean_section(
    name: &str,
    mut section: serde_json::Value,
) -> (Vec<ConfigError>, serde_json::Value) {
    let mut problems = Vec::new();
    // A key at a time; a section has few.
    for _ in 0..64 {
        let alone = serde_json::json!({ name: section.clone() }).to_string();
        let tried = config::Config::builder()
            .add_source(config::File::from_str(&alone, config::FileFormat::Json))
            .build()
            .and_then(|c| c.try_deserialize::<Config>());
        let Err(error) = tried else {
            return (problems, section);
        };
        let error = keyed(error);
        let culprit = culprit(name, &section, &error);
        problems.push(error);
        let removed = match (culprit, section.as_object_mut()) {
            (Some(key), Some(fields)) => fields.remove(&key).is_some(),
            _ => false,
        };
        if !removed {
            // Nothing to leave out: the whole section goes (its defaults apply).
            return (problems, serde_json::json!({}));
        }
    }
    (problems, serde_json::json!({}))
}

/// The key of a section a problem is about: the one it names (`section.key`, or an account's
/// name), or an unknown one (a key the section's type does not have).
fn culprit(section: &str, value: &serde_json::Value, error: &ConfigError) -> Option<String> {
    let ConfigError::Invalid { key, .. } = error else {
        return None;
    };
    let fields = value.as_object()?;
    if let Some(rest) = key.strip_prefix(&format!("{section}.")) {
        // The longest key of the section the path starts with (an account's name has dots).
        return fields
            .keys()
            .filter(|k| rest == k.as_str() || rest.starts_with(&format!("{k}.")))
            .max_by_key(|k| k.len())
            .cloned();
    }
    let known = known_fields(section)?;
    fields
        .keys()
        .find(|k| !known.contains(&k.as_str()))
        .cloned()
}

/// A file's settings without some keys (`section.key`), as a source of their own.
fn without(
    file: config::File<config::FileSourceFile, config::FileFormat>,
    keys: &[String],
) -> Result<config::File<config::FileSourceString, config::FileFormat>, config::ConfigError> {
    let mut settings: serde_json::Value = config::Config::builder()
        .add_source(file)
        .build()?
        .try_deserialize()?;
    for key in keys {
        let mut path: Vec<&str> = key.split('.').collect();
        let Some(last) = path.pop() else { continue };
        let table = path
            .iter()
            .try_fold(&mut settings, |value, part| value.get_mut(*part));
        if let Some(serde_json::Value::Object(table)) = table {
            table.remove(last);
        }
    }
    Ok(config::File::from_str(
        &settings.to_string(),
        config::FileFormat::Json,
    ))
}

/// The keys a section's type takes (none for `accounts`, whose keys are addresses).
fn known_fields(section: &str) -> Option<&'static [&'static str]> {
    use super::*;
    Some(match section {
        "server" => fields::<Server>(),
        "lmtp" => fields::<Lmtp>(),
        "smtp" => fields::<Listener>(),
        "http" => fields::<Http>(),
        "inbound" => fields::<Inbound>(),
        "outbound" => fields::<Outbound>(),
        "security" => fields::<Security>(),
        "store" => fields::<Store>(),
        "limits" => fields::<Limits>(),
        "log" => fields::<Log>(),
        "templates" => fields::<Templates>(),
        _ => return None,
    })
}

/// The field names a derived `Deserialize` asks for: read by a deserializer that takes
/// nothing but them.
fn fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    struct Names(&'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: serde::de::Visitor<'de>>(
            self,
            _: V,
        ) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("only the names"))
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("only the names"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut names = Names(&[]);
    let _ = T::deserialize(&mut names);
    names.0
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
