//! The TOML configuration: every key has a default, and `IMIPD_SECTION__KEY` environment
//! variables override the file (for example `IMIPD_SERVER__DATA_DIR=/var/lib/imipd`).

use crate::itip::{CalAddress, percent_decode};
use crate::mailbox::Mailbox;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment could not be read or deserialized.
    #[error("{0}")]
    Read(#[from] config::ConfigError),
    /// A key holds a value that makes no sense.
    #[error("{key}: {problem}")]
    Invalid {
        /// The key, as written in the file (`lmtp.listen`).
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`
    pub server: Server,
    /// `[lmtp]`
    pub lmtp: Lmtp,
    /// `[smtp]`
    pub smtp: Listener,
    /// `[http]`
    pub http: Http,
    /// `[inbound]`
    pub inbound: Inbound,
    /// `[outbound]`
    pub outbound: Outbound,
    /// `[security]`
    pub security: Security,
    /// `[limits]`
    pub limits: Limits,
    /// `[log]`
    pub log: Log,
    /// `[templates]`
    pub templates: Templates,
    /// `[accounts."alice@example.com"]`: the local calendar users.
    pub accounts: BTreeMap<String, Account>,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Server {
    /// Folder of the sled store.
    pub data_dir: PathBuf,
    /// This host's name: greetings, Message-IDs, bounce addresses.
    pub hostname: String,
    /// PRODID written into generated iCalendar objects.
    pub prodid: String,
}

/// `[lmtp]`: on by default, on loopback.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lmtp {
    /// `host:port`, or empty for off.
    pub listen: String,
}

impl Default for Lmtp {
    fn default() -> Self {
        Lmtp {
            listen: "127.0.0.1:2424".into(),
        }
    }
}

/// `[smtp]`: off unless `listen` is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listener {
    /// `host:port`, or empty for off.
    pub listen: String,
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// `host:port`, or empty for off.
    pub listen: String,
    /// Bearer token with access to every account; empty for none.
    pub admin_token: String,
    /// How long a client may take to send a whole request (head and body) once it started.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

/// What to do with invitations for objects a user does not have yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AutoAdd {
    /// Add every invitation.
    #[default]
    Always,
    /// Add only when the sender's domain passed DMARC by a trusted Authentication-Results.
    Authenticated,
    /// Never add: only updates to objects the user already has are applied.
    Never,
}

/// `[inbound]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Inbound {
    /// `always`, `authenticated` or `never`.
    pub auto_add: AutoAdd,
    /// Pass-through mode: `lmtp://host:port` of the real mailbox store. Every message is
    /// forwarded there unchanged after its calendar parts are processed, and its answer for
    /// each recipient is passed back. Empty: off.
    pub forward: String,
}

/// Where outbound scheduling mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// `.eml` files in `outbound.spool_dir`.
    #[default]
    Spool,
    /// Relayed through `outbound.relay` with SMTP.
    Smtp,
}

/// `[outbound]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Outbound {
    /// `spool` (the embedded default).
    pub transport: Transport,
    /// Folder for `.eml` files when the transport is `spool`.
    pub spool_dir: PathBuf,
    /// The smarthost: `smtp://[user:password@]host:port` (STARTTLS when offered) or
    /// `smtps://...` (TLS from the start).
    pub relay: String,
    /// First wait before retrying a temporary failure.
    pub min_backoff: String,
    /// Longest wait between retries.
    pub max_backoff: String,
    /// How long a message may stay queued before it fails for good (status 5.1).
    pub max_queue_lifetime: String,
    /// Tell the other attendees when an answer changes a local organizer's object
    /// (RFC 6638 section 4.2).
    pub notify_attendees: bool,
    /// How long answers are collected before the other attendees are told, so that several
    /// answers make one update per attendee.
    pub notify_delay: String,
    /// How long one relay attempt may take, connection to the answer after the final dot.
    pub relay_timeout: String,
    /// Deliveries in progress at once; a relay that stalls holds one of them.
    pub concurrency: usize,
}

/// A relay, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS from the start (`smtps://`).
    pub implicit_tls: bool,
    /// AUTH user and password.
    pub credentials: Option<(String, String)>,
}

impl Relay {
    /// Parses `smtp://user:password@host:port` or `smtps://host:465`.
    pub fn parse(url: &str) -> Result<Relay, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("expected smtp://host:port or smtps://host:port")?;
        let implicit_tls = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => false,
            "smtps" => true,
            other => return Err(format!("unknown scheme {other:?}: use smtp:// or smtps://")),
        };
        let rest = rest.trim_end_matches('/');
        let (credentials, address) = match rest.rsplit_once('@') {
            Some((user_password, address)) => {
                let (user, password) = user_password
                    .split_once(':')
                    .ok_or("credentials must be user:password@")?;
                (
                    Some((percent_decode(user), percent_decode(password))),
                    address,
                )
            }
            None => (None, rest),
        };
        let (host, port) = match address.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| format!("{port:?} is not a port"))?,
            ),
            None => (address, if implicit_tls { 465 } else { 587 }),
        };
        if host.is_empty() {
            return Err("no host".into());
        }
        Ok(Relay {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            implicit_tls,
            credentials,
        })
    }
}

/// The outbound timings, parsed.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First wait.
    pub min: std::time::Duration,
    /// Longest wait.
    pub max: std::time::Duration,
    /// Lifetime in the queue.
    pub lifetime: std::time::Duration,
    /// Collection window before the other attendees are told about answers.
    pub notify_delay: std::time::Duration,
    /// Longest relay attempt.
    pub relay_timeout: std::time::Duration,
}

/// `[security]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    /// authserv-ids whose Authentication-Results headers are trusted (RFC 8601); empty
    /// means no DMARC requirement.
    pub trusted_authserv_ids: Vec<String>,
    /// Domains whose local accounts may also speak by mail (another system sends scheduling
    /// mail for them); by default mail never speaks for a local account.
    pub mail_from_local_domains: Vec<String>,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest message accepted, in bytes (SIZE).
    pub max_message_size: usize,
    /// Largest calendar object stored, in bytes.
    pub max_object_size: usize,
    /// Most attendees in one component.
    pub max_attendees: usize,
    /// Most components (instances) in one object.
    pub max_instances: usize,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Most calendar objects one message may carry.
    pub max_parts: usize,
    /// How long an SMTP/LMTP client may take to send one command (RFC 5321 4.5.3.2).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// How long DATA may take, from the 354 to the final dot.
    #[serde(with = "humantime_serde")]
    pub data_timeout: Duration,
    /// Open connections per listener; more are turned away (421 4.7.0, HTTP 503).
    pub max_connections: usize,
}

/// `[templates]`: subjects and bodies of outbound mail. Subjects may use `{title}`,
/// `{when}`, `{who}` (the sender's name or address) and `{answer}`; bodies also `{headline}`,
/// `{details}` (when, where, who, what changed), `{description}` and `{footer}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Templates {
    /// A first invitation.
    pub invite_subject: String,
    /// An update.
    pub update_subject: String,
    /// A cancellation.
    pub cancel_subject: String,
    /// An attendee's answer.
    pub reply_subject: String,
    /// A line at the end of every readable part; empty for none.
    pub footer: String,
    /// The text/plain body.
    pub text_body: String,
    /// The text/html body (values are HTML-escaped before they are put in).
    pub html_body: String,
    /// Attach the iTIP object as `invite.ics` too, as Google and Outlook do.
    pub attach_ics: bool,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            invite_subject: "Invitation: {title} @ {when}".into(),
            update_subject: "Updated invitation: {title} @ {when}".into(),
            cancel_subject: "Cancelled event: {title} @ {when}".into(),
            reply_subject: "{who} {answer}: {title}".into(),
            footer: "Sent by imipd on behalf of the organizer's calendar.".into(),
            text_body: "{headline}\n\n{details}\n{description}\n-- \n{footer}\n".into(),
            html_body: "<!DOCTYPE html>\n<html><body>\n<h2>{headline}</h2>\n{details}\n<p>{description}</p>\n<p><small>{footer}</small></p>\n</body></html>\n".into(),
            attach_ics: true,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `imipd=debug`.
    pub level: String,
}

/// `[accounts."alice@example.com"]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Account {
    /// Other addresses of the same calendar user.
    pub aliases: Vec<String>,
    /// argon2 hash for HTTP Basic authentication (`imipd hash-password`).
    pub password_hash: String,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            data_dir: PathBuf::from("data"),
            hostname: "localhost".into(),
            prodid: "-//imipd//imipd//EN".into(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: "127.0.0.1:8080".into(),
            admin_token: String::new(),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            transport: Transport::Spool,
            spool_dir: PathBuf::from("spool"),
            relay: String::new(),
            min_backoff: "1m".into(),
            max_backoff: "1h".into(),
            max_queue_lifetime: "2d".into(),
            notify_attendees: true,
            notify_delay: "1m".into(),
            relay_timeout: "2m".into(),
            concurrency: 4,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_object_size: 1024 * 1024,
            max_attendees: 1000,
            max_instances: 1000,
            max_recipients: 100,
            max_parts: 16,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            max_connections: 512,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// The store's folder must be a writable folder, or one that can be created.
fn check_data_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(format!("{} is not a folder", dir.display())),
        Ok(_) => {
            let probe = dir.join(".imipd-check");
            std::fs::write(&probe, b"")
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(|e| format!("{} is not writable: {e}", dir.display()))
        }
        Err(_) => {
            let parent = dir
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            match std::fs::metadata(parent) {
                Ok(meta) if meta.is_dir() => Ok(()),
                _ => Err(format!(
                    "{} does not exist and neither does its parent folder",
                    dir.display()
                )),
            }
        }
    }
}

/// The listeners as addresses, checked.
#[derive(Debug, Clone)]
pub struct Listeners {
    /// LMTP, when on.
    pub lmtp: Option<SocketAddr>,
    /// SMTP, when on.
    pub smtp: Option<SocketAddr>,
    /// HTTP, when on.
    pub http: Option<SocketAddr>,
}

impl Config {
    /// Reads the file (when given) and the `IMIPD_` environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        builder = builder.add_source(
            config::Environment::with_prefix("IMIPD")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        );
        let config: Config = builder.build()?.try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what deserialization cannot: addresses, accounts, limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listeners()?;
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            key: key.into(),
            problem,
        };
        let mut seen = BTreeMap::new();
        for (name, account) in &self.accounts {
            let key = format!("accounts.\"{name}\"");
            for address in std::iter::once(name).chain(&account.aliases) {
                // Account addresses become envelope senders and headers of outbound mail.
                let parsed = Mailbox::parse(address)
                    .map(|m| m.to_cal_address())
                    .map_err(|e| invalid(&key, format!("{address:?} is not a mailbox: {e}")))?;
                if let Some(other) = seen.insert(parsed, name.clone()) {
                    return Err(invalid(
                        &key,
                        format!("{address} is already an address of {other}"),
                    ));
                }
            }
            if !account.password_hash.is_empty()
                && argon2::PasswordHash::new(&account.password_hash).is_err()
            {
                return Err(invalid(
                    &format!("{key}.password_hash"),
                    "not an argon2 hash (see imipd hash-password)".into(),
                ));
            }
        }
        check_data_dir(&self.server.data_dir)
            .map_err(|problem| invalid("server.data_dir", problem))?;
        if !crate::mailbox::is_domain(&self.server.hostname) {
            return Err(invalid(
                "server.hostname",
                format!(
                    "{:?} is not a host name (it makes bounce addresses and Message-IDs)",
                    self.server.hostname
                ),
            ));
        }
        for (key, value) in [
            ("limits.max_message_size", self.limits.max_message_size),
            ("limits.max_object_size", self.limits.max_object_size),
            ("limits.max_attendees", self.limits.max_attendees),
            ("limits.max_instances", self.limits.max_instances),
            ("limits.max_recipients", self.limits.max_recipients),
            ("limits.max_parts", self.limits.max_parts),
            ("limits.max_connections", self.limits.max_connections),
            ("outbound.concurrency", self.outbound.concurrency),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0".into()));
            }
        }
        for (key, value) in [
            ("limits.command_timeout", self.limits.command_timeout),
            ("limits.data_timeout", self.limits.data_timeout),
            ("http.request_timeout", self.http.request_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than 0s".into()));
            }
        }
        for domain in &self.security.mail_from_local_domains {
            if !crate::mailbox::is_domain(domain) {
                return Err(invalid(
                    "security.mail_from_local_domains",
                    format!("{domain:?} is not a domain"),
                ));
            }
        }
        if self.limits.max_object_size > crate::store::MAX_VALUE {
            return Err(invalid(
                "limits.max_object_size",
                format!(
                    "at most {} bytes (larger values would not be flushed durably)",
                    crate::store::MAX_VALUE
                ),
            ));
        }
        self.backoff()?;
        self.forward()?;
        if self.outbound.transport == Transport::Smtp {
            self.relay()?;
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(invalid("log.format", "must be \"text\" or \"json\"".into()));
        }
        Ok(())
    }

    /// The listener addresses.
    pub fn listeners(&self) -> Result<Listeners, ConfigError> {
        let parse = |key: &str, value: &str| -> Result<Option<SocketAddr>, ConfigError> {
            if value.trim().is_empty() {
                return Ok(None);
            }
            value
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::Invalid {
                    key: key.into(),
                    problem: format!("{value:?} is not host:port"),
                })
        };
        Ok(Listeners {
            lmtp: parse("lmtp.listen", &self.lmtp.listen)?,
            smtp: parse("smtp.listen", &self.smtp.listen)?,
            http: parse("http.listen", &self.http.listen)?,
        })
    }

    /// The outbound retry timings.
    pub fn backoff(&self) -> Result<Backoff, ConfigError> {
        let parse = |key: &str, value: &str| {
            humantime::parse_duration(value.trim()).map_err(|e| ConfigError::Invalid {
                key: key.into(),
                problem: format!("{value:?} is not a duration such as 1m, 1h or 2d ({e})"),
            })
        };
        let backoff = Backoff {
            min: parse("outbound.min_backoff", &self.outbound.min_backoff)?,
            max: parse("outbound.max_backoff", &self.outbound.max_backoff)?,
            lifetime: parse(
                "outbound.max_queue_lifetime",
                &self.outbound.max_queue_lifetime,
            )?,
            notify_delay: parse("outbound.notify_delay", &self.outbound.notify_delay)?,
            relay_timeout: parse("outbound.relay_timeout", &self.outbound.relay_timeout)?,
        };
        if backoff.relay_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                key: "outbound.relay_timeout".into(),
                problem: "must be longer than 0s".into(),
            });
        }
        if backoff.min > backoff.max {
            return Err(ConfigError::Invalid {
                key: "outbound.min_backoff".into(),
                problem: "is longer than outbound.max_backoff".into(),
            });
        }
        Ok(backoff)
    }

    /// The pass-through target, when `inbound.forward` is set.
    pub fn forward(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let value = self.inbound.forward.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let invalid = |problem: String| ConfigError::Invalid {
            key: "inbound.forward".into(),
            problem,
        };
        let address = value
            .strip_prefix("lmtp://")
            .ok_or_else(|| invalid(format!("{value:?}: use lmtp://host:port")))?;
        use std::net::ToSocketAddrs;
        address
            .trim_end_matches('/')
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(Some)
            .ok_or_else(|| invalid(format!("{address:?} is not host:port")))
    }

    /// The relay, when the transport is `smtp`.
    pub fn relay(&self) -> Result<Relay, ConfigError> {
        Relay::parse(self.outbound.relay.trim()).map_err(|problem| ConfigError::Invalid {
            key: "outbound.relay".into(),
            problem,
        })
    }

    /// Maps every address of every account to the account name.
    pub fn address_book(&self) -> BTreeMap<CalAddress, String> {
        let mut book = BTreeMap::new();
        for (name, account) in &self.accounts {
            for address in std::iter::once(name).chain(&account.aliases) {
                if let Some(a) = CalAddress::from_email(address) {
                    book.insert(a, name.to_lowercase());
                }
            }
        }
        book
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()?
            .try_deserialize()?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_and_accounts() {
        let config = from_toml(
            "[server]\nhostname = \"mx.example.com\"\n[accounts.\"alice@example.com\"]\naliases = [\"a.smith@example.com\"]\n",
        )
        .unwrap();
        assert_eq!(config.server.data_dir, PathBuf::from("data"));
        let book = config.address_book();
        assert_eq!(
            book.get(&CalAddress::from_email("A.Smith@Example.com").unwrap())
                .unwrap(),
            "alice@example.com"
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("imipd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("imipd.toml");
        std::fs::write(
            &file,
            "[server]\ndata_dir = \"from-file\"\nhostname = \"file.example\"\n",
        )
        .unwrap();
        // SAFETY: no other test reads or writes these variables.
        unsafe {
            std::env::set_var("IMIPD_SERVER__DATA_DIR", "/var/lib/imipd");
            std::env::set_var("IMIPD_LIMITS__MAX_ATTENDEES", "7");
        }
        let config = Config::load(Some(&file));
        unsafe {
            std::env::remove_var("IMIPD_SERVER__DATA_DIR");
            std::env::remove_var("IMIPD_LIMITS__MAX_ATTENDEES");
        }
        let config = config.unwrap();
        assert_eq!(config.server.data_dir, PathBuf::from("/var/lib/imipd"));
        assert_eq!(config.server.hostname, "file.example");
        assert_eq!(config.limits.max_attendees, 7);
        assert_eq!(config.lmtp.listen, "127.0.0.1:2424");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn relays_and_durations() {
        let relay = Relay::parse("smtp://imipd:p%40ss@mail.example.com:587").unwrap();
        assert_eq!(relay.credentials, Some(("imipd".into(), "p@ss".into())));
        assert_eq!(
            (relay.host.as_str(), relay.port, relay.implicit_tls),
            ("mail.example.com", 587, false)
        );
        assert_eq!(Relay::parse("smtps://mail.example.com").unwrap().port, 465);
        assert!(Relay::parse("http://x").is_err());
        let err = from_toml("[outbound]\ntransport = \"smtp\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("outbound.relay:"), "{err}");
        let err = from_toml("[outbound]\nmax_backoff = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("outbound.max_backoff:"), "{err}");
        let config = from_toml("[outbound]\nmin_backoff = \"2s\"\n").unwrap();
        assert_eq!(
            config.backoff().unwrap().min,
            std::time::Duration::from_secs(2)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = from_toml("[lmtp]\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("lmtp.listen:"), "{err}");
        let err = from_toml("[server]\nbogus = 1\n").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        let err =
            from_toml("[accounts.\"a@x.org\"]\n[accounts.\"b@x.org\"]\naliases = [\"a@x.org\"]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("already an address"), "{err}");
    }
}
