//! Handing a message to an LMTP server (mail-send's client): the pipe hook `imipd deliver` gives
//! the running daemon the message an MTA piped to it, so the daemon's commit and flush decide;
//! pass-through mode gives the mailbox store every message. Replies come back per recipient,
//! as the server gave them.

use crate::config::Endpoint;
use crate::listener::Connection;
use crate::mailbox::Mailbox;
use mail_send::SmtpClient;
use mail_send::smtp::AssertReply;
use mail_send::smtp::message::Parameters;
use smtp_proto::Response;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long one step (connecting, a command, the message) may take.
const STEP: Duration = Duration::from_secs(120);

/// sysexits(3) codes the pipe hook exits with.
pub mod exit {
    /// Delivered.
    pub const OK: u8 = 0;
    /// The command line was wrong (an argument that is no mailbox).
    pub const USAGE: u8 = 64;
    /// Malformed or refused data.
    pub const DATAERR: u8 = 65;
    /// No such user.
    pub const NOUSER: u8 = 67;
    /// Try again later.
    pub const TEMPFAIL: u8 = 75;
}

/// The reply the server gave for one recipient.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The recipient.
    pub recipient: Mailbox,
    /// The reply.
    pub reply: Response<String>,
}

impl Answer {
    /// The reply as a line: `250 2.0.0 text`.
    pub fn line(&self) -> String {
        let [class, subject, detail] = self.reply.esc;
        let text = crate::escape::printable(&self.reply.message);
        format!("{} {class}.{subject}.{detail} {text}", self.reply.code)
    }
}

/// Submits a message (`header` lines, then `message`, CRLF-terminated lines) over LMTP and
/// returns one reply per recipient: those refused at RCPT first, then those answered after
/// DATA. The addresses are mailboxes, so nothing in them can end or split a command.
pub async fn submit(
    target: &Endpoint,
    from: Option<&Mailbox>,
    recipients: &[Mailbox],
    header: &[u8],
    message: &[u8],
) -> mail_send::Result<Vec<Answer>> {
    let stream = tokio::time::timeout(STEP, Connection::connect(target))
        .await
        .map_err(|_| mail_send::Error::Timeout)?
        .map_err(mail_send::Error::Io)?;
    let mut client = SmtpClient {
        stream,
        timeout: STEP,
    };
    tokio::time::timeout(STEP, client.read())
        .await
        .map_err(|_| mail_send::Error::Timeout)??
        .assert_positive_completion()?;
    client.lhlo("imipd").await?;
    let none = Parameters::default();
    let refused = |reply: &Response<String>, to: &[Mailbox]| -> Vec<Answer> {
        to.iter()
            .map(|r| Answer {
                recipient: r.clone(),
                reply: reply.clone(),
            })
            .collect()
    };
    let sender = from.map(Mailbox::as_str).unwrap_or("");
    match client.mail_from(sender, &none).await {
        Ok(()) => {}
        Err(mail_send::Error::UnexpectedReply(reply)) => return Ok(refused(&reply, recipients)),
        Err(e) => return Err(e),
    }
    let mut outcomes = Vec::new();
    let mut accepted = Vec::new();
    for recipient in recipients {
        match client.rcpt_to(recipient.as_str(), &none).await {
            Ok(()) => accepted.push(recipient.clone()),
            Err(mail_send::Error::UnexpectedReply(reply)) => {
                outcomes.extend(refused(&reply, std::slice::from_ref(recipient)))
            }
            Err(e) => return Err(e),
        }
    }
    if accepted.is_empty() {
        return Ok(outcomes);
    }
    let go = client.cmd(b"DATA\r\n").await?;
    if go.code != 354 {
        outcomes.extend(refused(&go, &accepted));
        return Ok(outcomes);
    }
    let sent = async {
        client.stream.write_all(header).await?;
        // mail-send ends the message with CRLF "." CRLF itself.
        client
            .write_message(message.strip_suffix(b"\r\n").unwrap_or(message))
            .await?;
        client.read_many(accepted.len()).await
    };
    let replies = tokio::time::timeout(STEP, sent)
        .await
        .map_err(|_| mail_send::Error::Timeout)??;
    outcomes.extend(
        accepted
            .into_iter()
            .zip(replies)
            .map(|(recipient, reply)| Answer { recipient, reply }),
    );
    let _ = client.quit().await;
    Ok(outcomes)
}

/// Whether something at `target` answers as a mail server does (a 2xx greeting) within two
/// seconds: what `/health`, `serve` and `check-config` ask of `inbound.forward`.
pub async fn probe(target: &Endpoint) -> Result<(), String> {
    let asked = async {
        let stream = Connection::connect(target)
            .await
            .map_err(|e| e.to_string())?;
        let mut client = SmtpClient {
            stream,
            timeout: Duration::from_secs(2),
        };
        let greeting = client.read().await.map_err(|e| e.to_string())?;
        if greeting.code / 100 != 2 {
            return Err(format!(
                "it greets with {} {}",
                greeting.code, greeting.message
            ));
        }
        let _ = client.quit().await;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(2), asked).await {
        Ok(answered) => answered,
        Err(_) => Err("no greeting within 2 s".into()),
    }
}

/// The exit status for a set of replies: any temporary failure wins, then unknown users,
/// then other refusals.
pub fn exit_code(outcomes: &[Answer]) -> u8 {
    let class = |o: &Answer| o.reply.code / 100;
    if outcomes.iter().any(|o| class(o) == 4) {
        exit::TEMPFAIL
    } else if outcomes.iter().any(|o| o.reply.esc == [5, 1, 1]) {
        exit::NOUSER
    } else if outcomes.iter().any(|o| class(o) != 2) {
        exit::DATAERR
    } else {
        exit::OK
    }
}

/// CRLF line endings, as SMTP wants them: MTAs pipe messages with bare LFs.
pub fn crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32);
    let mut previous = 0u8;
    for &byte in message {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(byte);
        previous = byte;
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_and_exit_codes() {
        assert_eq!(crlf(b"a\n.b\r\n..c"), b"a\r\n.b\r\n..c\r\n");
        let o = |code: u16, esc: [u8; 3]| Answer {
            recipient: Mailbox::parse("x@example.com").unwrap(),
            reply: Response {
                code,
                esc,
                message: "text".into(),
            },
        };
        assert_eq!(exit_code(&[o(250, [2, 0, 0])]), exit::OK);
        assert_eq!(
            exit_code(&[o(250, [2, 0, 0]), o(550, [5, 1, 1])]),
            exit::NOUSER
        );
        assert_eq!(
            exit_code(&[o(554, [5, 6, 0]), o(451, [4, 3, 0])]),
            exit::TEMPFAIL
        );
        assert_eq!(exit_code(&[o(550, [5, 7, 1])]), exit::DATAERR);
        assert_eq!(o(550, [5, 7, 1]).line(), "550 5.7.1 text");
    }
}
