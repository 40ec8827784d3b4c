//! The TOML configuration: every key has a default, and `IMIPD_SECTION__KEY` environment
//! variables override the file (for example `IMIPD_SERVER__DATA_DIR=/var/lib/imipd`).

use crate::itip::CalAddress;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

mod check;
mod fields;
mod load;

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
    /// An `IMIPD_` environment variable names no key, or holds a value that makes no sense.
    #[error("environment variable {variable}: {problem}")]
    Environment {
        /// The variable (`IMIPD_SERVER__DATA_DIR`).
        variable: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Several of the above, one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// One error for a list of them.
    fn all(mut errors: Vec<ConfigError>) -> ConfigError {
        if errors.len() == 1 {
            errors.remove(0)
        } else {
            ConfigError::Several(errors)
        }
    }

    /// Each problem on its own.
    fn into_each(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Several(errors) => errors.into_iter().flat_map(Self::into_each).collect(),
            one => vec![one],
        }
    }
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
    /// `[store]`
    pub store: Store,
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
    /// The language of the mail accounts send (a BCP 47 tag: en, de, fr, es).
    #[serde(deserialize_with = "fields::language")]
    pub language: crate::wording::Language,
}

/// `[store]`: where the daemon keeps its state.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Store {
    /// Bytes of sled's page cache. Everything the store reads or writes passes through it, so
    /// the daemon's resident memory grows with the store up to about this much more than its
    /// base; what falls out of it is read from the operating system's page cache. sled's own
    /// default is 1 GiB, which a calendar server's working set (the objects being delivered
    /// to now) does not need. The footprints CalDAV queries and listings read have a cache
    /// of their own, twice this.
    pub cache_size: u64,
    /// A PostgreSQL database shared by several imipd hosts (`postgres://user@host/db`);
    /// none: sled in `server.data_dir`.
    #[serde(deserialize_with = "fields::database_url")]
    pub url: Option<crate::store::Database>,
    /// A file holding the database URL (with its password), instead of `url`.
    pub url_file: Option<PathBuf>,
    /// PEM certificates of the authorities the database's certificate is checked against
    /// with `sslmode=require` in the URL (none: the public ones).
    pub ca_file: Option<PathBuf>,
    /// Connections to the database this instance keeps at most.
    pub pool_size: usize,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            cache_size: crate::store::DEFAULT_CACHE_SIZE,
            url: None,
            url_file: None,
            ca_file: None,
            pool_size: 16,
        }
    }
}

/// Where a mail listener listens, or where mail is handed on: a TCP address or a unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `IP:port` (an IP address: a name could resolve to anything).
    Tcp(SocketAddr),
    /// `unix:/path` of a socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(address) => write!(f, "{address}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl Endpoint {
    /// `IP:port` or `unix:/absolute/path`.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            return match path.is_absolute() {
                true => Ok(Endpoint::Unix(path)),
                false => Err(format!("{text:?}: the socket's path must be absolute")),
            };
        }
        text.parse()
            .map(Endpoint::Tcp)
            .map_err(|_| format!("{text:?} is not IP:port, unix:/path, nor empty for off"))
    }
}

/// `[lmtp]`: on by default, on loopback.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Lmtp {
    /// `IP:port`, `unix:/path`, or empty for off.
    #[serde(deserialize_with = "fields::listen_address")]
    pub listen: Option<Endpoint>,
    /// Permissions of a unix socket, in octal.
    #[serde(deserialize_with = "fields::octal_mode")]
    pub socket_mode: u32,
    /// Group that owns a unix socket (name or number); empty: the daemon's.
    pub socket_group: String,
}

impl Default for Lmtp {
    fn default() -> Self {
        Lmtp {
            listen: Some(Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], 2424)))),
            socket_mode: 0o660,
            socket_group: String::new(),
        }
    }
}

/// A group's number, from itself or by its name through the system's name service (NSS:
/// /etc/group, and LDAP or sssd where the host uses them).
pub fn group_id(group: &str) -> std::io::Result<u32> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(found)) => Ok(found.gid.as_raw()),
        Ok(None) => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no group {group:?} (looked up through the system's name service)"),
        )),
        Err(errno) => Err(std::io::Error::from(errno)),
    }
}

/// `[smtp]`: off unless `listen` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listener {
    /// `IP:port`, `unix:/path`, or empty for off.
    #[serde(deserialize_with = "fields::listen_address")]
    pub listen: Option<Endpoint>,
    /// Permissions of a unix socket, in octal.
    #[serde(deserialize_with = "fields::octal_mode")]
    pub socket_mode: u32,
    /// Group that owns a unix socket (name or number); empty: the daemon's.
    pub socket_group: String,
    /// PEM certificate chain for STARTTLS; with `tls_key`, STARTTLS is offered.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The two, read.
    #[serde(skip)]
    pub tls: Option<Tls>,
}

impl Default for Listener {
    fn default() -> Self {
        Listener {
            listen: None,
            socket_mode: 0o660,
            socket_group: String::new(),
            tls_cert: None,
            tls_key: None,
            tls: None,
        }
    }
}

/// A certificate chain and its key, read when the configuration is (and again on reload).
#[derive(Clone)]
pub struct Tls(pub std::sync::Arc<rustls::ServerConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// `[http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http {
    /// `host:port`, or empty for off.
    #[serde(deserialize_with = "fields::http_address")]
    pub listen: Option<SocketAddr>,
    /// Reverse proxies (nginx) in front of the API: from these peers, `X-Forwarded-For` names
    /// the client (for the password back-off).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// PEM certificate chain; with `tls_key`, the API is served over HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The two, read.
    #[serde(skip)]
    pub tls: Option<Tls>,
    /// Bearer token with access to every account; empty for none.
    pub admin_token: String,
    /// A file holding the admin token instead (for example `%d/admin_token` with systemd's
    /// `LoadCredential=`).
    pub admin_token_file: Option<PathBuf>,
    /// How long a client may take to send a whole request (head and body) once it started.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Where people's browsers reach this listener (`https://calendar.example.com`, perhaps
    /// through a reverse proxy): invitations to outside attendees then carry one-click
    /// answers under it (`/rsvp/...`). None: no such links.
    #[serde(deserialize_with = "fields::public_url")]
    pub public_url: Option<url::Url>,
}

/// What to do with invitations for objects a user does not have yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoAdd {
    /// Add every invitation.
    #[default]
    Always,
    /// Add only when the sender's domain passed DMARC by a trusted Authentication-Results.
    Authenticated,
    /// Add only from a correspondent: an organizer the account had an object from, or someone
    /// it invited or answered. Others go to the schedule inbox only, until the user answers.
    Known,
    /// Never add: only updates to objects the user already has are applied.
    Never,
}

/// Deserializes an enum from its lower-case name; an unknown name is answered with the list.
macro_rules! named_values {
    ($type:ty, $($name:literal => $value:expr),+) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                match text.trim().to_ascii_lowercase().as_str() {
                    $($name => Ok($value),)+
                    _ => Err(serde::de::Error::custom(format!(
                        "{text:?} is none of {}",
                        [$(concat!("\"", $name, "\"")),+].join(", ")
                    ))),
                }
            }
        }
    };
}

named_values!(AutoAdd, "always" => AutoAdd::Always, "authenticated" => AutoAdd::Authenticated, "known" => AutoAdd::Known, "never" => AutoAdd::Never);
named_values!(Transport, "spool" => Transport::Spool, "smtp" => Transport::Smtp);
named_values!(Cancelled, "keep" => Cancelled::Keep, "remove" => Cancelled::Remove);

/// `[inbound]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Inbound {
    /// `always`, `authenticated` or `never`.
    pub auto_add: AutoAdd,
    /// Pass-through mode: `lmtp://host:port` of the real mailbox store. Every message is
    /// forwarded there unchanged after its calendar parts are processed, and its answer for
    /// each recipient is passed back. Empty: off. The name is resolved once, when the
    /// configuration is read.
    #[serde(deserialize_with = "fields::forward_target")]
    pub forward: Option<Endpoint>,
    /// Beside the mailbox store: the MTA delivers every message as before and gives imipd a
    /// copy, addressed `user=example.com@` this domain (Postfix `recipient_bcc_maps`, README
    /// "Deployments"). A copy is never refused: what imipd does not apply is answered 250, the
    /// original having reached the mailbox; only a temporary failure asks for it again. Empty:
    /// off.
    pub copy_domain: String,
    /// How long a delivered message is remembered: the same message delivered again within
    /// this changes nothing (an MTA that did not see the answer sends it again, within its
    /// queue lifetime). Older records are forgotten, or the store would grow for ever.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
}

impl Default for Inbound {
    fn default() -> Self {
        Inbound {
            auto_add: AutoAdd::default(),
            forward: None,
            copy_domain: String::new(),
            duplicate_window: Duration::from_secs(30 * 86400),
        }
    }
}

/// Where outbound scheduling mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// `.eml` files in `outbound.spool_dir`.
    #[default]
    Spool,
    /// Relayed through `outbound.relay` with SMTP.
    Smtp,
}

impl Transport {
    /// The transport as a queue entry records it.
    pub fn via(self) -> crate::store::Via {
        match self {
            Transport::Spool => crate::store::Via::Spool,
            Transport::Smtp => crate::store::Via::Smtp,
        }
    }
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
    /// `smtps://...` (TLS from the start); empty for none.
    #[serde(deserialize_with = "fields::relay_url")]
    pub relay: Option<Relay>,
    /// A file holding the relay's password, for a relay URL that names the user only
    /// (`smtp://imipd@smtp.example.com:587`).
    pub relay_password_file: Option<PathBuf>,
    /// First wait before retrying a temporary failure.
    #[serde(with = "humantime_serde")]
    pub min_backoff: Duration,
    /// Longest wait between retries.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long a message may stay queued before it fails for good (status 5.1).
    #[serde(with = "humantime_serde")]
    pub max_queue_lifetime: Duration,
    /// Tell the other attendees when an answer changes a local organizer's object
    /// (RFC 6638 section 4.2).
    pub notify_attendees: bool,
    /// How long answers are collected before the other attendees are told, so that several
    /// answers make one update per attendee.
    #[serde(with = "humantime_serde")]
    pub notify_delay: Duration,
    /// How long one relay attempt may take, connection to the answer after the final dot.
    #[serde(with = "humantime_serde")]
    pub relay_timeout: Duration,
    /// Deliveries in progress at once; a relay that stalls holds one of them.
    pub concurrency: usize,
    /// With a store shared by several hosts: how long a queued message stays claimed by the
    /// instance delivering it. Another instance takes it over only after this, so it must be
    /// longer than a delivery attempt (`relay_timeout`).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How long after the relay took a message a bounce for it still becomes its
    /// SCHEDULE-STATUS (5.x); the record kept for matching it is forgotten then. Relays keep
    /// trying for days (Postfix: 5) before they bounce.
    #[serde(with = "humantime_serde")]
    pub bounce_window: Duration,
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
    /// Parses `smtp://user:password@host:port` or `smtps://host:465` (percent-encoded
    /// credentials). A user without a password leaves the password empty, for
    /// `outbound.relay_password_file` to fill. The port is required: 587 and 465 are both in
    /// use, and a wrong guess fails only at the first delivery.
    pub fn parse(text: &str) -> Result<Relay, String> {
        let url = url::Url::parse(text.trim()).map_err(|e| {
            format!("{text:?}: expected smtp://host:port or smtps://host:port ({e})")
        })?;
        let implicit_tls = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => return Err(format!("unknown scheme {other:?}: use smtp:// or smtps://")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("no host")?
            .trim_matches(['[', ']'])
            .to_string();
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .map(|p| p.into_owned())
                .map_err(|_| "credentials are not UTF-8".to_string())
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) => Some((decode(user)?, decode(password)?)),
            (user, None) => Some((decode(user)?, String::new())),
        };
        let port = url.port().ok_or(if implicit_tls {
            "names no port: smtps://host:465 for TLS from the start"
        } else {
            "names no port: smtp://host:587 for submission with STARTTLS (25 for plain relay)"
        })?;
        Ok(Relay {
            host,
            port,
            implicit_tls,
            credentials,
        })
    }
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
    /// Recurrence instances one request (a CalDAV query, a free/busy request) may expand,
    /// across all the objects it reads.
    pub max_expansion: usize,
    /// How long one request may spend expanding recurrences.
    #[serde(with = "humantime_serde")]
    pub expansion_timeout: Duration,
    /// Objects one account may hold, in all its calendars (client writes included).
    pub max_objects: usize,
    /// Bytes of objects one account may hold (RFC 4331 quota).
    pub max_account_size: u64,
    /// Answers from people nobody invited, kept per object (one per address).
    pub max_uninvited: usize,
    /// Calendars one account may have besides its default one.
    pub max_calendars: usize,
    /// Items one account's schedule inbox keeps; the oldest go first.
    pub max_inbox_items: usize,
    /// Bytes one account's schedule inbox keeps; the oldest items go first.
    pub max_inbox_size: usize,
    /// New objects one outside sender may put into one account's calendars per hour.
    pub max_new_per_sender: usize,
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
    /// `[templates.language.de]` and so on: templates for the mail written in one language,
    /// over the ones above.
    #[serde(deserialize_with = "fields::by_language")]
    pub language: std::collections::BTreeMap<crate::wording::Language, LanguageTemplates>,
}

/// `[templates.language."TAG"]`: what mail in that language says instead of the language's
/// own words (or of `[templates]`, where the operator wrote it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanguageTemplates {
    pub invite_subject: Option<String>,
    pub update_subject: Option<String>,
    pub cancel_subject: Option<String>,
    pub reply_subject: Option<String>,
    pub footer: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
}

/// The HTML part: a card, its styles inline (mail clients drop style sheets) and its layout
/// without tables, so that it still reads where the styles are stripped too.
const HTML_BODY: &str = "<!DOCTYPE html>
<html lang=\"{lang}\">
<head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{subject}</title></head>
<body style=\"margin:0;padding:16px;background:#f4f5f7;color:#1f2328;font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;font-size:15px;line-height:1.5\">
<div style=\"max-width:600px;margin:0 auto;background:#ffffff;border:1px solid #d0d7de;border-radius:8px;padding:20px 24px\">
<h1 style=\"font-size:20px;line-height:1.3;margin:0 0 16px\">{headline}</h1>
{details}
{answers}
{description}
<p style=\"margin:20px 0 0;font-size:12px;color:#656d76\">{footer}</p>
</div>
</body>
</html>
";

impl Default for Templates {
    fn default() -> Self {
        Templates {
            invite_subject: "Invitation: {title} @ {when}".into(),
            update_subject: "Updated invitation: {title} @ {when}".into(),
            cancel_subject: "Cancelled event: {title} @ {when}".into(),
            reply_subject: "{who} {answer}: {title}".into(),
            footer: "Sent by imipd on behalf of the sender's calendar.".into(),
            text_body: "{headline}\n\n{details}\n{answers}{description}-- \n{footer}\n".into(),
            html_body: HTML_BODY.into(),
            attach_ics: true,
            language: Default::default(),
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
    /// This account's `inbound.auto_add`; none: the server's.
    pub auto_add: Option<AutoAdd>,
    /// The calendar (one of the account's further calendars, by name) that new invitations
    /// arriving by mail go into; none, or a calendar the account does not have: the default.
    pub invitations_calendar: Option<String>,
    /// What a cancellation by its organizer leaves of an event.
    pub cancelled: Cancelled,
    /// The language of the mail this account sends; none: `server.language`.
    #[serde(deserialize_with = "fields::some_language")]
    pub language: Option<crate::wording::Language>,
}

/// What a cancellation leaves in the calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cancelled {
    /// The event stays, marked STATUS:CANCELLED (what calendar clients show struck through).
    #[default]
    Keep,
    /// The event is removed.
    Remove,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            data_dir: PathBuf::from("data"),
            hostname: "localhost".into(),
            prodid: "-//imipd//imipd//EN".into(),
            language: Default::default(),
        }
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            admin_token: String::new(),
            admin_token_file: None,
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls: None,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            public_url: None,
        }
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            transport: Transport::Spool,
            spool_dir: PathBuf::from("spool"),
            relay: None,
            relay_password_file: None,
            min_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(3600),
            max_queue_lifetime: Duration::from_secs(2 * 86400),
            notify_attendees: true,
            notify_delay: Duration::from_secs(60),
            relay_timeout: Duration::from_secs(120),
            concurrency: 4,
            lease: Duration::from_secs(300),
            bounce_window: Duration::from_secs(10 * 86400),
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
            max_expansion: 500_000,
            expansion_timeout: Duration::from_secs(3),
            max_objects: 20_000,
            max_account_size: 256 * 1024 * 1024,
            max_uninvited: 20,
            max_calendars: 50,
            max_inbox_items: 200,
            max_inbox_size: 8 * 1024 * 1024,
            max_new_per_sender: 50,
        }
    }
}

impl Limits {
    /// Checks an object of `text_len` bytes against the size, instance and attendee limits;
    /// the refusal names the key.
    pub fn check(&self, text_len: usize, cal: &crate::itip::Calendar) -> Result<(), String> {
        // A UID is a store key: PostgreSQL's indexes refuse keys over about 2.7 KB, and what
        // the store refuses would be answered as a failure to retry, not a refusal.
        if text_len > self.max_object_size {
            return Err(format!(
                "object of {text_len} bytes is over limits.max_object_size ({})",
                self.max_object_size
            ));
        }
        let components = cal.scheduling().count();
        if components > self.max_instances {
            return Err(format!(
                "{components} components are over limits.max_instances ({})",
                self.max_instances
            ));
        }
        if let Some(uid) = crate::itip::uid_of(cal)
            && uid.len() > MAX_UID
        {
            return Err(format!(
                "a UID of {} bytes is over {MAX_UID} (real ones are a few dozen)",
                uid.len()
            ));
        }
        if let Some(most) = cal.scheduling().map(|c| c.attendees().count()).max()
            && most > self.max_attendees
        {
            return Err(format!(
                "{most} attendees are over limits.max_attendees ({})",
                self.max_attendees
            ));
        }
        Ok(())
    }
}

/// The longest UID taken.
pub const MAX_UID: usize = 1024;

impl Default for Log {
    fn default() -> Self {
        Log {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

impl Config {
    /// Takes from the configuration in force the keys that only a restart changes (the
    /// listeners, the data folder, the store, the outbound workers, the HTTP timeouts, the
    /// connection limit, the PRODID), so that a reload changes the rest; returns those that
    /// differ.
    pub fn keep_fixed(&mut self, running: &Config) -> Vec<&'static str> {
        let mut waiting = Vec::new();
        macro_rules! keep {
            ($($section:ident . $key:ident),+ $(,)?) => {$(
                if self.$section.$key != running.$section.$key {
                    waiting.push(concat!(stringify!($section), ".", stringify!($key)));
                    self.$section.$key = running.$section.$key.clone();
                }
            )+};
        }
        keep!(
            server.data_dir,
            server.prodid,
            lmtp.listen,
            smtp.listen,
            http.listen,
            http.request_timeout,
            http.idle_timeout,
            http.trusted_proxies,
            log.format,
            store.cache_size,
            store.url,
            store.pool_size,
            limits.max_connections,
            outbound.concurrency,
        );
        waiting
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
    use super::load::keyed;
    use super::*;

    fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(keyed)?;
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
            "[server]\ndata_dir = \"from-file\"\nhostname = \"file.example\"\n\
             [limits]\nmax_parts = 3\n[inbound]\nforward = \"lmtp://127.0.0.1:24\"\n",
        )
        .unwrap();
        // SAFETY: no other test reads or writes these variables.
        unsafe {
            std::env::set_var("IMIPD_SERVER__DATA_DIR", "/var/lib/imipd");
            std::env::set_var("IMIPD_LIMITS__MAX_ATTENDEES", "7");
            // Empty: the key is cleared, its default applies whatever the file says.
            std::env::set_var("IMIPD_LIMITS__MAX_PARTS", "");
            std::env::set_var("IMIPD_INBOUND__FORWARD", "");
        }
        let config = Config::load(Some(&file));
        unsafe {
            std::env::remove_var("IMIPD_SERVER__DATA_DIR");
            std::env::remove_var("IMIPD_LIMITS__MAX_ATTENDEES");
            std::env::remove_var("IMIPD_LIMITS__MAX_PARTS");
            std::env::remove_var("IMIPD_INBOUND__FORWARD");
        }
        let config = config.unwrap();
        assert_eq!(config.server.data_dir, PathBuf::from("/var/lib/imipd"));
        assert_eq!(config.server.hostname, "file.example");
        assert_eq!(config.limits.max_attendees, 7);
        assert_eq!(config.limits.max_parts, Limits::default().max_parts);
        assert_eq!(config.inbound.forward, None);
        assert_eq!(
            config.lmtp.listen,
            Some(Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], 2424))))
        );
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
        assert_eq!(
            Relay::parse("smtps://mail.example.com:465").unwrap().port,
            465
        );
        let err = Relay::parse("smtp://mail.example.com").unwrap_err();
        assert!(err.contains("no port"), "{err}");
        let user_only = Relay::parse("smtp://imipd@mail.example.com:587").unwrap();
        assert_eq!(user_only.credentials, Some(("imipd".into(), String::new())));
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
        assert_eq!(config.outbound.min_backoff, Duration::from_secs(2));
        let config =
            from_toml("[inbound]\nforward = \"lmtp://127.0.0.1:24\"\n[smtp]\nlisten = \"\"\n")
                .unwrap();
        assert_eq!(
            config.inbound.forward,
            Some(Endpoint::Tcp(SocketAddr::from(([127, 0, 0, 1], 24))))
        );
        let config = from_toml(
            "[inbound]\nforward = \"lmtp+unix:/run/dovecot/lmtp\"\n[lmtp]\nlisten = \"unix:/tmp/imipd-lmtp\"\nsocket_mode = \"0600\"\n",
        )
        .unwrap();
        assert_eq!(
            config.inbound.forward,
            Some(Endpoint::Unix("/run/dovecot/lmtp".into()))
        );
        assert_eq!(
            config.lmtp.listen,
            Some(Endpoint::Unix("/tmp/imipd-lmtp".into()))
        );
        assert_eq!(config.lmtp.socket_mode, 0o600);
        for bad in [
            "[lmtp]\nlisten = \"unix:relative.sock\"\n",
            "[lmtp]\nsocket_mode = \"rw\"\n",
            "[lmtp]\nsocket_mode = \"1777\"\n",
        ] {
            let err = from_toml(bad).unwrap_err().to_string();
            assert!(err.starts_with("lmtp."), "{err}");
        }
        assert_eq!(config.smtp.listen, None);
        let err = from_toml("[inbound]\nforward = \"lmtp://127.0.0.1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("inbound.forward:"), "{err}");
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
