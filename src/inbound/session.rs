//! LMTP (RFC 2033) and SMTP (RFC 5321) sessions. LMTP answers once per recipient after
//! DATA; SMTP once per message. Commands are framed into lines here and parsed by smtp-proto;
//! pipelined commands are answered in order, with one write per batch of input. Every client
//! has a deadline: for each command (`limits.command_timeout`) and for DATA as a whole
//! (`limits.data_timeout`).

use super::Intake;
use super::spool::Incoming;
use super::verdict::Verdict;
use crate::escape::{escaped, printable};
use crate::mailbox::Mailbox;
use crate::mime;
use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{Error as ProtoError, MailFrom, Request};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 2033.
    Lmtp,
    /// RFC 5321.
    Smtp,
}

impl Protocol {
    /// Its name, for logs.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Lmtp => "lmtp",
            Protocol::Smtp => "smtp",
        }
    }
}

/// RFC 5321 4.5.3.1.4 allows 512 octets; extensions make lines longer, smtp-proto takes 4096.
const MAX_LINE: usize = 4096;

/// MAIL parameters this server offers (8BITMIME, SIZE); any other is refused.
const OFFERED_BODY: u64 = smtp_proto::MAIL_BODY_7BIT | smtp_proto::MAIL_BODY_8BITMIME;

/// What a recipient is to this server, decided once, at RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A calendar user: the account's name.
    Account(String),
    /// A bounce address of imipd's own mail (valid or not: RCPT treats them alike).
    Bounce,
    /// Neither: only the pass-through target (the mailbox store) knows it.
    ForwardOnly,
    /// A copy of mail the MTA delivers itself (`inbound.copy_domain`): for this account, or
    /// for someone without a calendar here.
    Copy(Option<String>),
}

/// One recipient of a transaction.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The address as given.
    pub mailbox: Mailbox,
    /// What it is here.
    pub route: Route,
}

/// The sender and recipients of the message under way. Each recipient is kept once; `lines`
/// maps every accepted RCPT to it, for LMTP's one reply per RCPT.
pub struct Envelope {
    /// The reverse path; `None` for `<>` (delivery status notifications).
    pub from: Option<Mailbox>,
    /// Distinct recipients, in the order first given.
    pub recipients: Vec<Recipient>,
    lines: Vec<usize>,
}

/// What the session waits for.
enum Phase {
    Command,
    Data {
        receiver: DataReceiver,
        /// A CR the receiver may take back when the final dot follows.
        held: Vec<u8>,
        incoming: Box<Incoming>,
    },
}

/// What a command asks the loop to do besides answering.
enum Next {
    Continue,
    Data,
    StartTls,
    Quit,
}

/// The state of one connection between commands.
struct Session {
    intake: Arc<Intake>,
    protocol: Protocol,
    /// STARTTLS is offered: a certificate is configured and TLS not yet started.
    tls_offered: bool,
    /// TLS is on.
    secured: bool,
    greeted: bool,
    envelope: Option<Envelope>,
}

/// Serves one connection until QUIT, EOF, a deadline or shutdown; with `tls`, STARTTLS is
/// offered (RFC 3207).
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    intake: Arc<Intake>,
    stream: S,
    peer: String,
    protocol: Protocol,
    tls: Option<crate::config::Tls>,
    shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("session", peer = %escaped(&peer), protocol = protocol.name());
    run(intake, stream, protocol, tls, shutdown)
        .instrument(span)
        .await
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    intake: Arc<Intake>,
    stream: S,
    protocol: Protocol,
    tls: Option<crate::config::Tls>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = Conn::new(intake.clone(), stream, protocol, true);
    conn.session.tls_offered = tls.is_some();
    let (Flow::StartTls, Some(tls)) = (drive(&mut conn, &mut shutdown).await, tls) else {
        return;
    };
    // Only the 220 went out after STARTTLS; what the client sent with it is dropped unread
    // (RFC 3207 section 4.2: nothing from before the handshake may count after it).
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.0);
    let timeout = intake.gateway.config().limits.command_timeout;
    let secured = match tokio::time::timeout(timeout, acceptor.accept(conn.stream)).await {
        Ok(Ok(secured)) => secured,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::info!("TLS handshake not finished within limits.command_timeout");
            return;
        }
    };
    tracing::info!("TLS started");
    // A new session: the client says hello again and knows nothing from before.
    let mut conn = Conn::new(intake, secured, protocol, false);
    conn.session.secured = true;
    drive(&mut conn, &mut shutdown).await;
}

/// Runs a connection until it ends, or until the client asks for TLS.
async fn drive<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Conn<S>,
    shutdown: &mut watch::Receiver<bool>,
) -> Flow {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if !conn.flush().await {
            return Flow::Quit;
        }
        let Some(n) = conn.read(&mut chunk, shutdown).await else {
            return Flow::Quit;
        };
        match conn.take(&chunk[..n]).await {
            Flow::Go => {}
            Flow::StartTls => {
                return match conn.flush().await {
                    true => Flow::StartTls,
                    false => Flow::Quit,
                };
            }
            Flow::Quit => {
                conn.flush().await;
                return Flow::Quit;
            }
        }
    }
}

/// Whether the connection goes on.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Go,
    StartTls,
    Quit,
}

/// One connection: the protocol state (`Session`), where the input stands, what is to be
/// written, and the deadline of what is awaited.
struct Conn<S> {
    stream: S,
    session: Session,
    phase: Phase,
    line: Vec<u8>,
    discarding: bool,
    out: Vec<u8>,
    deadline: Instant,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(intake: Arc<Intake>, stream: S, protocol: Protocol, greet: bool) -> Self {
        let config = intake.gateway.config();
        let name = if protocol == Protocol::Lmtp {
            "LMTP"
        } else {
            "ESMTP"
        };
        let greeting = format!("220 {} imipd {name} ready\r\n", config.server.hostname);
        let deadline = Instant::now() + config.limits.command_timeout;
        Conn {
            stream,
            session: Session {
                intake,
                protocol,
                tls_offered: false,
                secured: false,
                greeted: false,
                envelope: None,
            },
            phase: Phase::Command,
            line: Vec::new(),
            discarding: false,
            out: if greet {
                greeting.into_bytes()
            } else {
                Vec::new()
            },
            deadline,
        }
    }

    fn config(&self) -> std::sync::Arc<crate::gateway::Settings> {
        self.session.intake.gateway.config()
    }

    /// Writes what is to be written; false when the client is gone.
    async fn flush(&mut self) -> bool {
        if !self.out.is_empty() {
            if self.stream.write_all(&self.out).await.is_err() {
                return false;
            }
            self.out.clear();
        }
        true
    }

    /// The next bytes, or `None` when the connection ends: the client left, the deadline passed
    /// (421 4.4.2), or the daemon stops between messages (421 4.3.2).
    async fn read(
        &mut self,
        chunk: &mut [u8],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<usize> {
        let in_data = matches!(self.phase, Phase::Data { .. });
        let host = self.config().server.hostname.clone();
        let read = tokio::select! {
            read = tokio::time::timeout_at(self.deadline, self.stream.read(chunk)) => read,
            _ = shutdown.changed(), if !in_data => {
                let bye = format!("421 4.3.2 {host} shutting down\r\n");
                let _ = self.stream.write_all(bye.as_bytes()).await;
                return None;
            }
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => None,
            Ok(Ok(n)) => Some(n),
            Err(_) => {
                let (what, key) = if in_data {
                    ("DATA", "limits.data_timeout")
                } else {
                    ("command", "limits.command_timeout")
                };
                tracing::info!(what, "client too slow; closing");
                let reply = format!("421 4.4.2 {host} {what} not received within {key}\r\n");
                let _ = self.stream.write_all(reply.as_bytes()).await;
                None
            }
        }
    }

    /// Takes what was read: message bytes in DATA, command lines otherwise.
    async fn take(&mut self, mut input: &[u8]) -> Flow {
        while !input.is_empty() {
            if matches!(self.phase, Phase::Data { .. }) {
                self.take_data(&mut input).await;
            } else {
                match self.take_line(&mut input) {
                    Flow::Go => {}
                    other => return other,
                }
            }
        }
        Flow::Go
    }

    /// Message bytes up to the final dot; then the message is processed and answered.
    async fn take_data(&mut self, input: &mut &[u8]) {
        let Phase::Data {
            receiver,
            held,
            incoming,
        } = &mut self.phase
        else {
            return;
        };
        let mut bytes = input.iter();
        let done = receiver.ingest(&mut bytes, held);
        *input = bytes.as_slice();
        // A CR the receiver may still take back (when the final dot follows) stays held.
        let keep = usize::from(!done && held.last() == Some(&b'\r'));
        let ready = held.len() - keep;
        incoming.push(&held[..ready]).await;
        held.drain(..ready);
        if !done {
            return;
        }
        let Phase::Data { incoming, .. } = std::mem::replace(&mut self.phase, Phase::Command)
        else {
            unreachable!("in DATA")
        };
        let envelope = self
            .session
            .envelope
            .take()
            .expect("DATA needs an envelope");
        let verdicts = finish(&self.session.intake, &envelope, *incoming).await;
        answer(self.session.protocol, &envelope, &verdicts, &mut self.out);
        self.deadline = Instant::now() + self.config().limits.command_timeout;
    }

    /// One command line, when a whole one is there; the rest waits for more input.
    fn take_line(&mut self, input: &mut &[u8]) -> Flow {
        let Some(end) = input.iter().position(|b| *b == b'\n') else {
            take_partial(&mut self.line, &mut self.discarding, input);
            *input = &[];
            return Flow::Go;
        };
        take_partial(&mut self.line, &mut self.discarding, &input[..=end]);
        *input = &input[end + 1..];
        if std::mem::take(&mut self.discarding) {
            self.line.clear();
            self.out.extend_from_slice(b"500 5.5.6 line too long\r\n");
            return Flow::Go;
        }
        let next = self.session.command(&self.line, &mut self.out);
        self.line.clear();
        let gateway = self.session.intake.gateway.clone();
        let limits = &gateway.config().limits;
        self.deadline = Instant::now() + limits.command_timeout;
        match next {
            Next::Continue => Flow::Go,
            Next::Data => {
                let mut receiver = DataReceiver::new();
                // The receiver looks for CRLF "." CRLF; DATA itself ended a line.
                receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
                let incoming =
                    Incoming::new(&gateway.config().server.data_dir, limits.max_message_size);
                self.deadline = Instant::now() + limits.data_timeout;
                self.phase = Phase::Data {
                    receiver,
                    held: Vec::with_capacity(64 * 1024),
                    incoming: Box::new(incoming),
                };
                Flow::Go
            }
            Next::StartTls => Flow::StartTls,
            Next::Quit => Flow::Quit,
        }
    }
}

/// Adds bytes to the command line under way; a line over [`MAX_LINE`] is dropped up to its end.
fn take_partial(line: &mut Vec<u8>, discarding: &mut bool, bytes: &[u8]) {
    if *discarding {
        return;
    }
    if line.len() + bytes.len() > MAX_LINE {
        *discarding = true;
        line.clear();
    } else {
        line.extend_from_slice(bytes);
    }
}

impl Session {
    /// Answers one command line (with its LF).
    fn command(&mut self, line: &[u8], out: &mut Vec<u8>) -> Next {
        let mut reply = |text: &str| {
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request.into_owned(),
            Err(ProtoError::UnknownCommand) => {
                reply("500 5.5.1 command not recognized");
                return Next::Continue;
            }
            Err(ProtoError::InvalidParameter { param: "SIZE" }) if declares_huge_size(line) => {
                reply(&self.size_refusal());
                return Next::Continue;
            }
            Err(e) => {
                reply(&format!("501 5.5.4 syntax error ({})", describe(&e)));
                return Next::Continue;
            }
        };
        match request {
            Request::Lhlo { host: client }
            | Request::Ehlo { host: client }
            | Request::Helo { host: client } => {
                let lhlo = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"LHLO");
                reply(&self.hello(lhlo, &client));
            }
            Request::Mail { from } if declares_huge_size(line) => {
                let _ = from;
                reply(&self.size_refusal());
            }
            Request::Mail { from } => reply(&self.mail(from)),
            Request::Rcpt { to } => reply(&self.rcpt(to)),
            Request::Data => match &self.envelope {
                Some(e) if !e.recipients.is_empty() => {
                    reply("354 end data with <CR><LF>.<CR><LF>");
                    return Next::Data;
                }
                Some(_) => reply("503 5.5.1 no valid recipients"),
                None => reply("503 5.5.1 MAIL first"),
            },
            Request::Rset => {
                self.envelope = None;
                reply("250 2.0.0 reset");
            }
            Request::Noop { .. } => reply("250 2.0.0 ok"),
            Request::Vrfy { .. } => reply("252 2.5.0 cannot verify, try RCPT"),
            Request::Help { .. } => reply("214 2.0.0 see RFC 2033 and RFC 5321"),
            Request::Quit => {
                reply("221 2.0.0 bye");
                return Next::Quit;
            }
            Request::StartTls if self.secured => reply("503 5.5.1 TLS already active"),
            Request::StartTls if !self.tls_offered => reply("502 5.5.1 TLS is not offered here"),
            Request::StartTls => {
                reply("220 2.0.0 ready to start TLS");
                return Next::StartTls;
            }
            _ => reply("502 5.5.1 command not implemented"),
        }
        Next::Continue
    }

    fn hello(&mut self, lhlo: bool, client: &str) -> String {
        let lmtp = self.protocol == Protocol::Lmtp;
        if lhlo != lmtp {
            let (name, expected) = if lmtp {
                ("LMTP", "LHLO")
            } else {
                ("ESMTP", "EHLO or HELO")
            };
            return format!("500 5.5.1 this is {name}: say {expected}");
        }
        self.greeted = true;
        self.envelope = None;
        let config = self.intake.gateway.config();
        let starttls = if self.tls_offered {
            "250-STARTTLS\r\n"
        } else {
            ""
        };
        format!(
            "250-{} hello {}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n{starttls}250 SIZE {}",
            config.server.hostname,
            printable(client),
            config.limits.max_message_size
        )
    }

    fn size_refusal(&self) -> String {
        format!(
            "552 5.3.4 message size exceeds {}",
            self.intake.gateway.config().limits.max_message_size
        )
    }

    fn mail(&mut self, from: MailFrom<String>) -> String {
        if !self.greeted {
            return "503 5.5.1 say hello first".into();
        }
        if self.envelope.is_some() {
            return "503 5.5.1 nested MAIL command".into();
        }
        if let Some(param) = unoffered_mail_parameter(&from) {
            return format!("555 5.5.4 {param} is not offered here");
        }
        if from.size > self.intake.gateway.config().limits.max_message_size {
            return self.size_refusal();
        }
        let sender = match from.address.as_str() {
            "" => None,
            address => match Mailbox::parse(address) {
                Ok(mailbox) => Some(mailbox),
                Err(why) => return format!("501 5.1.7 bad sender address ({why})"),
            },
        };
        self.envelope = Some(Envelope {
            from: sender,
            recipients: Vec::new(),
            lines: Vec::new(),
        });
        "250 2.1.0 sender ok".into()
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<String>) -> String {
        let gateway = &self.intake.gateway;
        let Some(envelope) = self.envelope.as_mut() else {
            return "503 5.5.1 MAIL first".into();
        };
        if to.flags != 0 || to.orcpt.is_some() {
            return "555 5.5.4 RCPT parameters are not offered here".into();
        }
        let recipient = match Mailbox::parse(&to.address) {
            Ok(mailbox) => mailbox,
            Err(why) => return format!("501 5.1.3 bad recipient address ({why})"),
        };
        if let Some(known) = envelope
            .recipients
            .iter()
            .position(|r| r.mailbox == recipient)
        {
            // Delivered once; LMTP still owes this RCPT its own reply after DATA.
            envelope.lines.push(known);
            return "250 2.1.5 recipient ok (duplicate, delivered once)".into();
        }
        if envelope.recipients.len() >= gateway.config().limits.max_recipients {
            return "452 4.5.3 too many recipients".into();
        }
        let route =
            if let Some(original) = copy_of(&gateway.config().inbound.copy_domain, &recipient) {
                Route::Copy(original.and_then(|o| gateway.account_for(o.as_str())))
            } else if let Some(account) = gateway.account_for(recipient.as_str()) {
                Route::Account(account)
            } else if crate::outbound::dsn::is_bounce_address(gateway, &recipient) {
                Route::Bounce
            } else if gateway.config().inbound.forward.is_some() {
                // In pass-through mode every other recipient is the mailbox store's to judge.
                Route::ForwardOnly
            } else {
                return Verdict::unknown_user(&recipient).reply();
            };
        envelope.lines.push(envelope.recipients.len());
        envelope.recipients.push(Recipient {
            mailbox: recipient,
            route,
        });
        "250 2.1.5 recipient ok".into()
    }
}

/// For an address of the copy domain, the recipient it is a copy for: `bob=example.com@copies`
/// is bob@example.com (the last `=` separates the domain, which cannot hold one). `None` inside
/// when the address does not decode: a copy still, for nobody.
fn copy_of(copy_domain: &str, recipient: &Mailbox) -> Option<Option<Mailbox>> {
    let (local, domain) = recipient.as_str().rsplit_once('@')?;
    if copy_domain.is_empty() || !domain.eq_ignore_ascii_case(copy_domain.trim()) {
        return None;
    }
    let original = local
        .rsplit_once('=')
        .and_then(|(user, domain)| Mailbox::parse(&format!("{user}@{domain}")).ok());
    Some(original)
}

/// True when MAIL carries a SIZE too large for any integer: smtp-proto then reads a wrong
/// (small) number, so the digits are checked here.
fn declares_huge_size(line: &[u8]) -> bool {
    let text = String::from_utf8_lossy(line).to_ascii_uppercase();
    text.starts_with("MAIL")
        && text.split_whitespace().any(|word| {
            word.strip_prefix("SIZE=").is_some_and(|digits| {
                !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && digits.parse::<u64>().is_err()
            })
        })
}

/// The first MAIL parameter given that this server did not advertise (RFC 5321 4.1.1.11:
/// 555), such as SMTPUTF8 or the DSN extension's.
fn unoffered_mail_parameter(from: &MailFrom<String>) -> Option<&'static str> {
    if from.flags & smtp_proto::MAIL_SMTPUTF8 != 0 {
        Some("SMTPUTF8")
    } else if from.flags & !OFFERED_BODY != 0 {
        Some("that parameter")
    } else if from.env_id.is_some() || from.mtrk.is_some() {
        Some("DSN")
    } else if from.auth.is_some() {
        Some("AUTH")
    } else if from.trans_id.is_some()
        || from.solicit.is_some()
        || from.by != 0
        || from.hold_for != 0
        || from.hold_until != 0
        || from.mt_priority != 0
    {
        Some("that parameter")
    } else {
        None
    }
}

/// What was wrong, in words safe for a reply line (the parameter comes from the client).
fn describe(error: &ProtoError) -> String {
    printable(&match error {
        ProtoError::InvalidSenderAddress => "invalid sender address".into(),
        ProtoError::InvalidRecipientAddress => "invalid recipient address".into(),
        ProtoError::SyntaxError { syntax } => format!("expected {syntax}"),
        ProtoError::InvalidParameter { param } => format!("invalid parameter {param}"),
        ProtoError::UnsupportedParameter { param } => format!("unsupported parameter {param}"),
        other => format!("{other:?}"),
    })
}

/// The verdicts for a finished DATA, one per distinct recipient.
async fn finish(intake: &Intake, envelope: &Envelope, incoming: Incoming) -> Vec<Verdict> {
    let max = intake.gateway.config().limits.max_message_size;
    if incoming.too_large() {
        let verdict = Verdict::too_large(format!("message is over {max} bytes"));
        return envelope
            .recipients
            .iter()
            .map(|_| verdict.clone())
            .collect();
    }
    let size = incoming.size();
    match incoming.into_bytes(&intake.memory).await {
        Ok((raw, _room)) => process(intake, envelope, &raw).await,
        Err(error) => {
            tracing::error!(%error, size, "cannot keep the message while it arrives");
            let verdict = Verdict::no_room();
            envelope
                .recipients
                .iter()
                .map(|_| verdict.clone())
                .collect()
        }
    }
}

async fn process(intake: &Intake, envelope: &Envelope, raw: &[u8]) -> Vec<Verdict> {
    let trace = crate::trace::new_id();
    let from = envelope.from.as_ref().map(Mailbox::as_str).unwrap_or("");
    let span = tracing::info_span!("message", trace = %trace, from = %from, size = raw.len());
    async {
        let mail = mime::extract(raw);
        tracing::info!(
            message_id = %escaped(mail.message_id.as_deref().unwrap_or("")),
            parts = mail.parts.len(),
            "received"
        );
        let gateway = &intake.gateway;
        let verdicts = super::receive(intake, &trace, &mail, raw, envelope).await;
        let replies = match &gateway.config().inbound.forward {
            Some(target) => {
                let calendar = verdicts.clone();
                super::forward(gateway, &trace, target, envelope, raw, calendar).await
            }
            None => verdicts.clone(),
        };
        super::answered(gateway, &trace, envelope, &verdicts, &replies);
        replies
    }
    .instrument(span)
    .await
}

/// LMTP: one reply per accepted RCPT. SMTP: one reply, the most severe.
fn answer(protocol: Protocol, envelope: &Envelope, verdicts: &[Verdict], out: &mut Vec<u8>) {
    match protocol {
        Protocol::Lmtp => {
            for &index in &envelope.lines {
                out.extend_from_slice(format!("{}\r\n", verdicts[index].reply()).as_bytes());
            }
        }
        Protocol::Smtp => {
            let worst = verdicts
                .iter()
                .find(|v| matches!(v, Verdict::Deferred { .. }))
                .or_else(|| {
                    verdicts
                        .iter()
                        .find(|v| matches!(v, Verdict::Rejected { .. }))
                })
                .or(verdicts.first());
            if let Some(verdict) = worst {
                out.extend_from_slice(format!("{}\r\n", verdict.reply()).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_any_integer_are_seen() {
        assert!(declares_huge_size(
            b"MAIL FROM:<a@b.example> SIZE=99999999999999999999999\r\n"
        ));
        assert!(declares_huge_size(
            b"mail from:<a@b.example> body=8bitmime size=18446744073709551616\r\n"
        ));
        assert!(!declares_huge_size(
            b"MAIL FROM:<a@b.example> SIZE=18446744073709551615\r\n"
        ));
        assert!(!declares_huge_size(
            b"MAIL FROM:<a@b.example> SIZE=1000\r\n"
        ));
        assert!(!declares_huge_size(
            b"RCPT TO:<SIZE=99999999999999999999999@b>\r\n"
        ));
    }

    /// A session's protocol state alone, as the I/O loop drives it: one command line in, the
    /// reply out.
    fn session(protocol: Protocol) -> (tokio::runtime::Runtime, Session) {
        let dir =
            std::env::temp_dir().join(format!("imipd-session-{}-{protocol:?}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config: crate::config::Config = toml_config(&format!(
            "[server]\ndata_dir = {:?}\nhostname = \"mx.example.com\"\n[accounts.\"bob@example.com\"]\n",
            dir.join("data")
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let intake = runtime.block_on(async {
            let store = crate::store::SledStore::open(&config.server.data_dir).unwrap();
            let gateway = crate::gateway::Gateway::new(config, Arc::new(store));
            Arc::new(Intake::new(Arc::new(gateway)))
        });
        let session = Session {
            intake,
            protocol,
            tls_offered: false,
            secured: false,
            greeted: false,
            envelope: None,
        };
        (runtime, session)
    }

    fn toml_config(text: &str) -> crate::config::Config {
        let config: crate::config::Config = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .unwrap();
        config.validate().unwrap();
        config
    }

    fn say(session: &mut Session, line: &str) -> (String, bool) {
        let mut out = Vec::new();
        let next = session.command(format!("{line}\r\n").as_bytes(), &mut out);
        let reply = String::from_utf8(out).unwrap();
        (
            reply.lines().last().unwrap_or("").to_string(),
            matches!(next, Next::Data),
        )
    }

    #[test]
    fn commands_are_answered_in_protocol_order() {
        let (_runtime, mut lmtp) = session(Protocol::Lmtp);
        assert!(
            say(&mut lmtp, "MAIL FROM:<a@b.example>")
                .0
                .starts_with("503 5.5.1")
        );
        assert!(
            say(&mut lmtp, "EHLO x")
                .0
                .starts_with("500 5.5.1 this is LMTP")
        );
        assert!(say(&mut lmtp, "LHLO x").0.starts_with("250 SIZE"));
        assert!(
            say(&mut lmtp, "RCPT TO:<bob@example.com>")
                .0
                .starts_with("503 5.5.1 MAIL")
        );
        assert!(say(&mut lmtp, "MAIL FROM:<>").0.starts_with("250 2.1.0"));
        assert!(say(&mut lmtp, "DATA").0.starts_with("503 5.5.1 no valid"));
        assert!(
            say(&mut lmtp, "RCPT TO:<nobody@example.com>")
                .0
                .starts_with("550 5.1.1")
        );
        assert!(
            say(&mut lmtp, "RCPT TO:<Bob@Example.com>")
                .0
                .starts_with("250 2.1.5")
        );
        assert!(
            say(&mut lmtp, "RCPT TO:<bob@example.com>")
                .0
                .contains("duplicate")
        );
        let envelope = lmtp.envelope.as_ref().unwrap();
        assert_eq!(envelope.recipients.len(), 1);
        assert_eq!(
            envelope.lines,
            [0, 0],
            "two RCPTs, one delivery, two replies"
        );
        assert_eq!(
            envelope.recipients[0].route,
            Route::Account("bob@example.com".into())
        );
        assert_eq!(
            say(&mut lmtp, "DATA"),
            ("354 end data with <CR><LF>.<CR><LF>".into(), true)
        );
    }

    #[test]
    fn long_lines_are_dropped_to_their_end() {
        let (mut line, mut discarding) = (Vec::new(), false);
        take_partial(&mut line, &mut discarding, &[b'x'; 4000]);
        take_partial(&mut line, &mut discarding, &[b'x'; 200]);
        assert!(discarding && line.is_empty());
        take_partial(&mut line, &mut discarding, b"tail\r\n");
        assert!(line.is_empty());
    }
}
