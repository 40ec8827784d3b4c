//! LMTP (RFC 2033) and SMTP (RFC 5321) sessions. LMTP answers once per recipient after
//! DATA; SMTP once per message. Commands are parsed by smtp-proto; pipelined commands are
//! answered in order, with one write per batch of input.

use crate::gateway::{Gateway, Verdict, printable, trace_id};
use crate::mime;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{Error as ProtoError, Request};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tracing::Instrument;

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 2033.
    Lmtp,
    /// RFC 5321.
    Smtp,
}

/// How long a client may stay silent.
const IDLE: Duration = Duration::from_secs(300);

struct Transaction {
    from: String,
    recipients: Vec<String>,
}

struct Data {
    receiver: DataReceiver,
    bytes: Vec<u8>,
    size: usize,
}

/// Serves one connection until QUIT, EOF, idle timeout or shutdown.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    gateway: Arc<Gateway>,
    mut stream: S,
    peer: String,
    protocol: Protocol,
    mut shutdown: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("session", peer = %peer, protocol = ?protocol);
    async move {
        let host = gateway.config.server.hostname.clone();
        let name = if protocol == Protocol::Lmtp { "LMTP" } else { "ESMTP" };
        let mut out = format!("220 {host} imipd {name} ready\r\n").into_bytes();
        let mut requests = RequestReceiver::default();
        let mut greeted = false;
        let mut transaction: Option<Transaction> = None;
        let mut data: Option<Data> = None;
        let mut chunk = vec![0u8; 64 * 1024];
        let max = gateway.config.limits.max_message_size;
        loop {
            if !out.is_empty() {
                if stream.write_all(&out).await.is_err() {
                    return;
                }
                out.clear();
            }
            let read = tokio::select! {
                read = tokio::time::timeout(IDLE, stream.read(&mut chunk)) => read,
                _ = shutdown.changed(), if data.is_none() => {
                    let _ = stream.write_all(format!("421 4.3.2 {host} shutting down\r\n").as_bytes()).await;
                    return;
                }
            };
            let n = match read {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => n,
                Err(_) => {
                    let _ = stream.write_all(b"421 4.4.2 idle for too long\r\n").await;
                    return;
                }
            };
            let mut bytes = chunk[..n].iter();
            loop {
                if let Some(current) = data.as_mut() {
                    let before = bytes.len();
                    let done = current.receiver.ingest(&mut bytes, &mut current.bytes);
                    current.size += before - bytes.len();
                    if current.size > max {
                        // Keep reading to the end of DATA, but keep nothing.
                        current.bytes.clear();
                    }
                    if !done {
                        break;
                    }
                    let finished = data.take().expect("in DATA");
                    let tx = transaction.take().expect("DATA needs a transaction");
                    let verdicts = if finished.size > max {
                        tx.recipients.iter().map(|_| Verdict::too_large(format!("message is over {max} bytes"))).collect()
                    } else {
                        receive(&gateway, &tx, &finished.bytes).await
                    };
                    answer(protocol, &verdicts, &mut out);
                    continue;
                }
                if bytes.len() == 0 {
                    break;
                }
                let request = match requests.ingest(&mut bytes) {
                    Ok(request) => request.into_owned(),
                    Err(ProtoError::NeedsMoreData { .. }) => break,
                    Err(ProtoError::UnknownCommand) => {
                        out.extend_from_slice(b"500 5.5.1 command not recognized\r\n");
                        continue;
                    }
                    Err(ProtoError::ResponseTooLong) => {
                        out.extend_from_slice(b"500 5.5.6 line too long\r\n");
                        continue;
                    }
                    Err(e) => {
                        out.extend_from_slice(format!("501 5.5.4 syntax error ({})\r\n", describe(&e)).as_bytes());
                        continue;
                    }
                };
                match request {
                    Request::Lhlo { .. } | Request::Ehlo { .. } | Request::Helo { .. }
                        if matches!(request, Request::Lhlo { .. }) != (protocol == Protocol::Lmtp) =>
                    {
                        let expected = if protocol == Protocol::Lmtp { "LHLO" } else { "EHLO or HELO" };
                        out.extend_from_slice(format!("500 5.5.1 this is {name}: say {expected}\r\n").as_bytes());
                    }
                    Request::Lhlo { host: client } | Request::Ehlo { host: client } | Request::Helo { host: client } => {
                        greeted = true;
                        transaction = None;
                        let client = printable(&client);
                        out.extend_from_slice(
                            format!(
                                "250-{host} hello {client}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SIZE {max}\r\n"
                            )
                            .as_bytes(),
                        );
                    }
                    Request::Mail { from } => {
                        if !greeted {
                            out.extend_from_slice(b"503 5.5.1 say hello first\r\n");
                        } else if transaction.is_some() {
                            out.extend_from_slice(b"503 5.5.1 nested MAIL command\r\n");
                        } else if from.size > max {
                            out.extend_from_slice(format!("552 5.3.4 message size exceeds {max}\r\n").as_bytes());
                        } else {
                            transaction = Some(Transaction { from: from.address, recipients: Vec::new() });
                            out.extend_from_slice(b"250 2.1.0 sender ok\r\n");
                        }
                    }
                    Request::Rcpt { to } => match transaction.as_mut() {
                        None => out.extend_from_slice(b"503 5.5.1 MAIL first\r\n"),
                        Some(tx) if tx.recipients.len() >= gateway.config.limits.max_recipients => {
                            out.extend_from_slice(b"452 4.5.3 too many recipients\r\n");
                        }
                        // In pass-through mode every recipient is the mailbox store's to judge.
                        Some(tx) => match gateway
                            .account_for(&to.address)
                            .or_else(|| crate::outbound::dsn::queue_id(&gateway, &to.address).map(|_| "bounce"))
                            .or_else(|| (!gateway.config.inbound.forward.trim().is_empty()).then_some("forwarded"))
                        {
                            None => out.extend_from_slice(format!("{}\r\n", Verdict::unknown_user(&to.address).reply()).as_bytes()),
                            Some(_) => {
                                tx.recipients.push(to.address);
                                out.extend_from_slice(b"250 2.1.5 recipient ok\r\n");
                            }
                        },
                    },
                    Request::Data => match transaction.as_ref() {
                        Some(tx) if !tx.recipients.is_empty() => {
                            let mut receiver = DataReceiver::new();
                            // The receiver looks for CRLF "." CRLF; DATA itself ended a line.
                            receiver.ingest(&mut b"\r\n".iter(), &mut Vec::new());
                            data = Some(Data { receiver, bytes: Vec::with_capacity(16 * 1024), size: 0 });
                            out.extend_from_slice(b"354 end data with <CR><LF>.<CR><LF>\r\n");
                        }
                        Some(_) => out.extend_from_slice(b"503 5.5.1 no valid recipients\r\n"),
                        None => out.extend_from_slice(b"503 5.5.1 MAIL first\r\n"),
                    },
                    Request::Rset => {
                        transaction = None;
                        out.extend_from_slice(b"250 2.0.0 reset\r\n");
                    }
                    Request::Noop { .. } => out.extend_from_slice(b"250 2.0.0 ok\r\n"),
                    Request::Vrfy { .. } => out.extend_from_slice(b"252 2.5.0 cannot verify, try RCPT\r\n"),
                    Request::Help { .. } => out.extend_from_slice(b"214 2.0.0 see RFC 2033 and RFC 5321\r\n"),
                    Request::Quit => {
                        out.extend_from_slice(b"221 2.0.0 bye\r\n");
                        let _ = stream.write_all(&out).await;
                        return;
                    }
                    _ => out.extend_from_slice(b"502 5.5.1 command not implemented\r\n"),
                }
            }
        }
    }
    .instrument(span)
    .await
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

async fn receive(gateway: &Gateway, tx: &Transaction, raw: &[u8]) -> Vec<Verdict> {
    let trace = trace_id();
    let span = tracing::info_span!("message", trace = %trace, from = %tx.from, size = raw.len());
    async {
        let mail = mime::extract(raw);
        tracing::info!(
            message_id = mail.message_id.as_deref().unwrap_or(""),
            parts = mail.parts.len(),
            "received"
        );
        let verdicts = super::deliver(gateway, &trace, &mail, raw, &tx.recipients).await;
        match gateway.config.forward() {
            Ok(Some(target)) => {
                super::forward(&trace, target, &tx.from, &tx.recipients, raw, verdicts).await
            }
            _ => verdicts,
        }
    }
    .instrument(span)
    .await
}

/// LMTP: one reply per recipient. SMTP: one reply, the most severe.
fn answer(protocol: Protocol, verdicts: &[Verdict], out: &mut Vec<u8>) {
    match protocol {
        Protocol::Lmtp => {
            for verdict in verdicts {
                out.extend_from_slice(format!("{}\r\n", verdict.reply()).as_bytes());
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
