//! What deserialization cannot check: addresses, accounts, hashes, limits, templates, the log
//! filter; and what is legal but probably a mistake (warnings). Every problem is found, not
//! only the first.

use super::{Config, ConfigError, Transport};
use crate::mailbox::Mailbox;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The admin token the production samples ship, to be replaced.
const PLACEHOLDER_TOKEN: &str = "change-me-to-a-long-random-token";
/// The demo's admin token (config/imipd.toml).
const DEMO_TOKEN: &str = "demo-admin-token";
/// The samples' accounts' hash of "secret".
const SAMPLE_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$y32NM/1FpUSTQtgjzChkxg$tzcDi61ISGyh1GB8Hi6AxD6B3XDZJk4+GtpIgJeUBi4";

/// Collects the problems of a configuration.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.0.push(ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        });
    }
}

impl Config {
    /// Checks what deserialization cannot; every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        self.check_accounts(&mut problems);
        if let Err(problem) = check_data_dir(&self.server.data_dir) {
            problems.add("server.data_dir", problem);
        }
        if !crate::mailbox::is_domain(&self.server.hostname) {
            problems.add(
                "server.hostname",
                format!(
                    "{:?} is not a host name (it makes bounce addresses and Message-IDs)",
                    self.server.hostname
                ),
            );
        }
        self.check_limits(&mut problems);
        self.check_outbound(&mut problems);
        for domain in &self.security.mail_from_local_domains {
            if !crate::mailbox::is_domain(domain) {
                problems.add(
                    "security.mail_from_local_domains",
                    format!("{domain:?} is not a domain"),
                );
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            problems.add("log.format", "must be \"text\" or \"json\"");
        }
        if let Err(problem) = check_log_level(&self.log.level) {
            problems.add("log.level", problem);
        }
        self.check_templates(&mut problems);
        self.check_inbound(&mut problems);
        self.check_samples(&mut problems);
        self.check_sockets(&mut problems);
        match problems.0.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::all(problems.0)),
        }
    }

    fn check_accounts(&self, problems: &mut Problems) {
        let mut seen = BTreeMap::new();
        for (name, account) in &self.accounts {
            let key = format!("accounts.\"{name}\"");
            for address in std::iter::once(name).chain(&account.aliases) {
                // Account addresses become envelope senders and headers of outbound mail.
                match Mailbox::parse(address).map(|m| m.cal_address()) {
                    Err(e) => problems.add(&key, format!("{address:?} is not a mailbox: {e}")),
                    Ok(parsed) => {
                        if let Some(other) = seen.insert(parsed, name.clone()) {
                            problems
                                .add(&key, format!("{address} is already an address of {other}"));
                        }
                    }
                }
            }
            if !account.password_hash.is_empty()
                && let Err(problem) = check_password_hash(&account.password_hash)
            {
                problems.add(format!("{key}.password_hash"), problem);
            }
        }
    }

    /// The secrets the sample files ship: the placeholder token nowhere, the demo's token
    /// and password hashes only on a daemon that listens on loopback alone (the demo).
    fn check_samples(&self, problems: &mut Problems) {
        let token = &self.http.admin_token;
        if token == PLACEHOLDER_TOKEN {
            problems.add(
                "http.admin_token",
                "is the sample's placeholder: put a long random token there \
                 (openssl rand -hex 32), or in http.admin_token_file",
            );
        }
        if self.loopback_only() {
            return;
        }
        if token == DEMO_TOKEN {
            problems.add(
                "http.admin_token",
                "is the demo's token, and this is no demo (it takes mail from an MTA, relays, \
                 or listens beyond loopback): put a long random one there (openssl rand -hex 32)",
            );
        }
        for (name, account) in &self.accounts {
            if account.password_hash == SAMPLE_HASH {
                problems.add(
                    format!("accounts.\"{name}\".password_hash"),
                    "is the samples' hash of \"secret\", and this is no demo (it takes mail from \
                     an MTA, relays, or listens beyond loopback): make the account's own with \
                     imipd hash-password",
                );
            }
        }
    }

    /// True for a daemon set up as the demo is: every listener a TCP address on loopback, no
    /// proxy in front, mail kept in the spool and handed to no mailbox store. Anything else
    /// (an MTA's socket, a relay, pass-through, copies) is a production set-up.
    fn loopback_only(&self) -> bool {
        use super::Endpoint;
        let on_loopback = |endpoint: &Option<Endpoint>| match endpoint {
            None => true,
            Some(Endpoint::Tcp(address)) => address.ip().is_loopback(),
            Some(Endpoint::Unix(_)) => false,
        };
        on_loopback(&self.lmtp.listen)
            && on_loopback(&self.smtp.listen)
            && self.http.listen.is_none_or(|a| a.ip().is_loopback())
            && self.http.trusted_proxies.is_empty()
            && self.outbound.transport == Transport::Spool
            && self.inbound.forward.is_none()
            && self.inbound.copy_domain.is_empty()
    }

    /// A unix listener's folder must be there: `serve` would fail to bind, and systemd
    /// restart it every two seconds.
    fn check_sockets(&self, problems: &mut Problems) {
        use super::Endpoint;
        for (key, endpoint) in [
            ("lmtp.listen", &self.lmtp.listen),
            ("smtp.listen", &self.smtp.listen),
        ] {
            let Some(Endpoint::Unix(path)) = endpoint else {
                continue;
            };
            let folder = path.parent().filter(|p| !p.as_os_str().is_empty());
            if let Some(folder) = folder.filter(|f| !f.is_dir()) {
                problems.add(
                    key,
                    format!(
                        "the folder {} of the socket does not exist: create it (mkdir -p {0}) \
                         and let imipd's user write in it",
                        folder.display()
                    ),
                );
            }
        }
    }

    fn check_limits(&self, problems: &mut Problems) {
        for (key, value) in [
            ("limits.max_message_size", self.limits.max_message_size),
            ("limits.max_object_size", self.limits.max_object_size),
            ("limits.max_attendees", self.limits.max_attendees),
            ("limits.max_instances", self.limits.max_instances),
            ("limits.max_recipients", self.limits.max_recipients),
            ("limits.max_parts", self.limits.max_parts),
            ("limits.max_connections", self.limits.max_connections),
            ("limits.max_expansion", self.limits.max_expansion),
            ("limits.max_objects", self.limits.max_objects),
            (
                "limits.max_account_size",
                self.limits.max_account_size as usize,
            ),
            ("limits.max_uninvited", self.limits.max_uninvited),
            ("limits.max_inbox_items", self.limits.max_inbox_items),
            ("limits.max_inbox_size", self.limits.max_inbox_size),
            ("limits.max_new_per_sender", self.limits.max_new_per_sender),
            ("outbound.concurrency", self.outbound.concurrency),
            ("store.pool_size", self.store.pool_size),
        ] {
            if value == 0 {
                problems.add(key, "must be greater than 0");
            }
        }
        for (key, value) in [
            ("outbound.relay_timeout", self.outbound.relay_timeout),
            ("outbound.lease", self.outbound.lease),
            ("outbound.bounce_window", self.outbound.bounce_window),
            ("limits.command_timeout", self.limits.command_timeout),
            ("limits.data_timeout", self.limits.data_timeout),
            ("limits.expansion_timeout", self.limits.expansion_timeout),
            ("http.request_timeout", self.http.request_timeout),
            ("http.idle_timeout", self.http.idle_timeout),
        ] {
            if value.is_zero() {
                problems.add(key, "must be longer than 0s");
            }
        }
        if self.inbound.duplicate_window < Duration::from_secs(86400) {
            problems.add(
                "inbound.duplicate_window",
                "must be at least 1d: an MTA sends a message again for days when it missed the \
                 answer, and the copy would be applied twice",
            );
        }
        if self.store.url.is_some() && self.outbound.lease <= self.outbound.relay_timeout {
            problems.add(
                "outbound.lease",
                "must be longer than outbound.relay_timeout: another host would send a message \
                 still being delivered",
            );
        }
        let most = crate::store::max_value(self.store.url.as_ref());
        if self.limits.max_object_size > most {
            let why = match self.store.url {
                Some(_) => "what one commit may carry to PostgreSQL",
                None => "larger values would not be flushed durably by sled",
            };
            problems.add(
                "limits.max_object_size",
                format!("at most {most} bytes with this store ({why})"),
            );
        }
    }

    fn check_outbound(&self, problems: &mut Problems) {
        if self.outbound.min_backoff > self.outbound.max_backoff {
            problems.add(
                "outbound.min_backoff",
                "is longer than outbound.max_backoff",
            );
        }
        if self.outbound.transport == Transport::Smtp && self.outbound.relay.is_none() {
            problems.add(
                "outbound.relay",
                "transport = \"smtp\" needs smtp://host:port or smtps://host:port",
            );
        }
    }

    fn check_inbound(&self, problems: &mut Problems) {
        let copies = self.inbound.copy_domain.trim();
        if copies.is_empty() {
            return;
        }
        if !crate::mailbox::is_domain(copies) {
            problems.add("inbound.copy_domain", format!("{copies:?} is not a domain"));
        }
        if self.inbound.forward.is_some() {
            problems.add(
                "inbound.copy_domain",
                "set with inbound.forward: imipd is either in front of the mailbox store or beside it",
            );
        }
        let taken = self.accounts.keys().find(|a| {
            a.rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(copies))
        });
        if let Some(account) = taken {
            problems.add(
                "inbound.copy_domain",
                format!("{copies} is the domain of the account {account}: use a domain of its own"),
            );
        }
    }

    fn check_templates(&self, problems: &mut Problems) {
        const SUBJECT: &[&str] = &["title", "when", "who", "answer"];
        const BODY: &[&str] = &[
            "subject",
            "lang",
            "answers",
            "headline",
            "details",
            "description",
            "footer",
            "title",
            "when",
            "who",
        ];
        // Each template's key and the placeholders it may use, in the order of `texts` below.
        const TEMPLATES: [(&str, &[&str]); 6] = [
            ("invite_subject", SUBJECT),
            ("update_subject", SUBJECT),
            ("cancel_subject", SUBJECT),
            ("reply_subject", SUBJECT),
            ("text_body", BODY),
            ("html_body", BODY),
        ];
        let t = &self.templates;
        let texts = [
            &t.invite_subject,
            &t.update_subject,
            &t.cancel_subject,
            &t.reply_subject,
            &t.text_body,
            &t.html_body,
        ];
        let mut given: Vec<(String, &str, &[&str])> = (TEMPLATES.iter().zip(texts))
            .map(|((name, known), text)| (format!("templates.{name}"), text.as_str(), *known))
            .collect();
        for (language, own) in &t.language {
            let texts = [
                &own.invite_subject,
                &own.update_subject,
                &own.cancel_subject,
                &own.reply_subject,
                &own.text_body,
                &own.html_body,
            ];
            for ((name, known), text) in TEMPLATES.iter().zip(texts) {
                if let Some(text) = text {
                    let key = format!("templates.language.{}.{name}", language.tag());
                    given.push((key, text, known));
                }
            }
        }
        for (key, text, known) in given {
            for name in placeholders(text).filter(|n| !known.contains(n)) {
                problems.add(
                    key.as_str(),
                    format!(
                        "unknown placeholder {{{name}}}; known here: {}",
                        known
                            .iter()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                );
            }
        }
    }
}

impl Config {
    /// What is legal but probably a mistake, a sentence each; `file` is where the configuration
    /// was read from.
    pub fn warnings(&self, file: Option<&Path>) -> Vec<String> {
        let mut said = Vec::new();
        if file.is_none() {
            said.push(
                "no configuration file: only the defaults and IMIPD_ variables apply".to_string(),
            );
        }
        if self.accounts.is_empty() {
            said.push(
                "no [accounts]: there is no calendar user, and every recipient is refused (550 5.1.1) or only forwarded".into(),
            );
        } else if self.inbound.forward.is_none() && self.inbound.copy_domain.is_empty() {
            said.push(
                "inbound.forward is empty: imipd is the last stop for its accounts' mail, and a \
                 message to them without a calendar part is answered 250 and kept nowhere; put \
                 imipd in front of the mailbox store with inbound.forward, or give it copies \
                 only (README, Deployments)"
                    .into(),
            );
        }
        let here = std::env::current_dir().unwrap_or_default();
        let mut folders = vec![("server.data_dir", &self.server.data_dir)];
        if self.outbound.transport == Transport::Spool {
            folders.push(("outbound.spool_dir", &self.outbound.spool_dir));
        }
        for (key, dir) in folders.into_iter().filter(|(_, d)| d.is_relative()) {
            said.push(format!(
                "{key} = {:?} is relative: it is {} here, and moves with the folder imipd is started in",
                dir.display().to_string(),
                here.join(dir).display()
            ));
        }
        for (key, listen, group) in [
            (
                "lmtp.socket_group",
                &self.lmtp.listen,
                &self.lmtp.socket_group,
            ),
            (
                "smtp.socket_group",
                &self.smtp.listen,
                &self.smtp.socket_group,
            ),
        ] {
            let on_socket = matches!(listen, Some(super::Endpoint::Unix(_)));
            if on_socket
                && !group.trim().is_empty()
                && let Err(e) = super::group_id(group.trim())
            {
                said.push(format!("{key}: {e}: the socket cannot be given to it"));
            }
        }
        if let Some(url) = &self.store.url {
            for host in url.unencrypted_hosts() {
                said.push(format!(
                    "store.url: the connection to {host} is not encrypted (imipd encrypts only \
                     with sslmode=require, checking the server's certificate; prefer, the \
                     default, means none): add ?sslmode=require, or reach the database on \
                     loopback or a local socket"
                ));
            }
        }
        said.extend(self.loose_secrets(file));
        said
    }

    /// Files holding secrets that every user of the machine may read.
    fn loose_secrets(&self, file: Option<&Path>) -> Vec<String> {
        let relay_password = self
            .outbound
            .relay
            .as_ref()
            .and_then(|r| r.credentials.as_ref())
            .is_some_and(|(_, password)| !password.is_empty())
            && self.outbound.relay_password_file.is_none();
        let token_inline =
            !self.http.admin_token.is_empty() && self.http.admin_token_file.is_none();
        let hashes = self.accounts.values().any(|a| !a.password_hash.is_empty());
        let database_password = self.store.url_file.is_none()
            && self
                .store
                .url
                .as_ref()
                .is_some_and(|url| url.connect.get_password().is_some());
        let mut holders: Vec<(&Path, &str)> = Vec::new();
        if let Some(file) =
            file.filter(|_| relay_password || token_inline || hashes || database_password)
        {
            holders.push((file, "the configuration, which holds secrets"));
        }
        if let Some(token) = &self.http.admin_token_file {
            holders.push((token, "http.admin_token_file"));
        }
        if let Some(password) = &self.outbound.relay_password_file {
            holders.push((password, "outbound.relay_password_file"));
        }
        if let Some(url) = &self.store.url_file {
            holders.push((url, "store.url_file"));
        }
        holders
            .into_iter()
            .filter(|(path, _)| readable_by_others(path))
            .map(|(path, what)| {
                format!(
                    "{} ({what}) is readable by every user: chmod o-r {}",
                    path.display(),
                    path.display()
                )
            })
            .collect()
    }
}

fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

/// The names between braces in a template: `{title}` gives `title`.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.split('{').skip(1).filter_map(|rest| {
        let name = &rest[..rest.find('}')?];
        let word = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        word.then_some(name)
    })
}

/// An argon2 hash in PHC form whose algorithm and parameters argon2 accepts.
fn check_password_hash(text: &str) -> Result<(), String> {
    let hint = "(make one with imipd hash-password)";
    let hash = argon2::PasswordHash::new(text)
        .map_err(|e| format!("not a password hash in PHC form: {e} {hint}"))?;
    argon2::Algorithm::try_from(hash.algorithm).map_err(|_| {
        format!(
            "unknown algorithm {:?}: argon2id, argon2i or argon2d {hint}",
            hash.algorithm.as_str()
        )
    })?;
    argon2::Params::try_from(&hash).map_err(|e| format!("argon2 parameters: {e} {hint}"))?;
    if hash.hash.is_none() {
        return Err(format!("the hash itself is missing {hint}"));
    }
    Ok(())
}

/// A log filter as tracing reads it: `info`, or `imipd=debug,warn`. A misspelt level would
/// read as the name of a module and leave the daemon silent.
fn check_log_level(filter: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let mut bare = 0;
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None => {
                bare += 1;
                directive
            }
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{level:?} is not a level: off, error, warn, info, debug or trace (or TARGET=LEVEL)"
            ));
        }
    }
    match bare {
        0 if filter.trim().is_empty() => Err("empty: say a level, such as info".into()),
        0 | 1 => Ok(()),
        _ => Err("more than one default level".into()),
    }
}

/// The store's folder must be a writable folder, or one that can be created.
fn check_data_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if !meta.is_dir() => Err(format!("{} is not a folder", dir.display())),
        // A probe of a name of its own: two checks at once (ExecStartPre beside ExecReload, or
        // tests) must not remove each other's.
        Ok(_) => tempfile::Builder::new()
            .prefix(".imipd-check-")
            .tempfile_in(dir)
            .and_then(|probe| probe.close())
            .map_err(|e| format!("{} is not writable: {e}", dir.display())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filters() {
        for good in ["info", "warn", "imipd=debug", "imipd=debug,warn", "INFO"] {
            assert_eq!(check_log_level(good), Ok(()), "{good}");
        }
        for bad in ["inof", "imipd=verbose", "", "info,warn"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn password_hashes() {
        let good = "$argon2id$v=19$m=19456,t=2,p=1$y32NM/1FpUSTQtgjzChkxg$tzcDi61ISGyh1GB8Hi6AxD6B3XDZJk4+GtpIgJeUBi4";
        assert_eq!(check_password_hash(good), Ok(()));
        let err = check_password_hash(&good.replace("argon2id", "argon2x")).unwrap_err();
        assert!(err.contains("unknown algorithm \"argon2x\""), "{err}");
        assert!(check_password_hash(&good.replace("m=19456", "m=1")).is_err());
        assert!(check_password_hash("secret").is_err());
    }

    #[test]
    fn template_placeholders() {
        let names: Vec<&str> = placeholders("Invitation: {title} @ {when} {titel} {}").collect();
        assert_eq!(names, ["title", "when", "titel"]);
    }
}
