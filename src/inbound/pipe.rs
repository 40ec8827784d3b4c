//! `imipd deliver`: the pipe hook for MTAs. It hands the message to the running daemon over
//! LMTP, so the daemon's commit and flush decide, and turns the replies into sysexits.

use crate::mailbox::Mailbox;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// sysexits(3) codes the pipe hook exits with.
pub mod exit {
    /// Delivered.
    pub const OK: u8 = 0;
    /// Malformed or refused data.
    pub const DATAERR: u8 = 65;
    /// No such user.
    pub const NOUSER: u8 = 67;
    /// The command line was wrong (an argument that is no mailbox).
    pub const USAGE: u8 = 64;
    /// Try again later.
    pub const TEMPFAIL: u8 = 75;
}

/// The reply the daemon gave for one recipient.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The recipient.
    pub recipient: Mailbox,
    /// The reply line.
    pub reply: String,
}

/// Submits a message (`header` lines, then `message`) over LMTP and returns one reply per
/// recipient: those refused at RCPT first, then those answered after DATA. The addresses are
/// mailboxes, so nothing in them can end or split a command.
pub async fn submit(
    target: SocketAddr,
    from: Option<&Mailbox>,
    recipients: &[Mailbox],
    header: &[u8],
    message: &[u8],
) -> std::io::Result<Vec<Outcome>> {
    let stream = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(target))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let greeting = read_reply(&mut lines).await?;
    if !greeting.starts_with('2') {
        return Err(std::io::Error::other(greeting));
    }
    write.write_all(b"LHLO imipd-deliver\r\n").await?;
    let hello = read_reply(&mut lines).await?;
    if !hello.starts_with('2') {
        return Err(std::io::Error::other(hello));
    }
    let from = from.map(Mailbox::as_str).unwrap_or("");
    write
        .write_all(format!("MAIL FROM:<{from}>\r\n").as_bytes())
        .await?;
    let mail = read_reply(&mut lines).await?;
    if !mail.starts_with('2') {
        return Ok(recipients
            .iter()
            .map(|r| Outcome {
                recipient: r.clone(),
                reply: mail.clone(),
            })
            .collect());
    }
    let mut outcomes = Vec::new();
    let mut accepted = Vec::new();
    for recipient in recipients {
        write
            .write_all(format!("RCPT TO:<{recipient}>\r\n").as_bytes())
            .await?;
        let line = read_reply(&mut lines).await?;
        if line.starts_with('2') {
            accepted.push(recipient.clone());
        } else {
            outcomes.push(Outcome {
                recipient: recipient.clone(),
                reply: line,
            });
        }
    }
    if !accepted.is_empty() {
        write.write_all(b"DATA\r\n").await?;
        let go = read_reply(&mut lines).await?;
        if !go.starts_with('3') {
            outcomes.extend(accepted.iter().map(|r| Outcome {
                recipient: r.clone(),
                reply: go.clone(),
            }));
        } else {
            let mut stuffer = DotStuffer::default();
            for piece in header.chunks(64 * 1024).chain(message.chunks(64 * 1024)) {
                write.write_all(&stuffer.feed(piece)).await?;
            }
            write.write_all(&stuffer.finish()).await?;
            write.write_all(b".\r\n").await?;
            for recipient in accepted {
                outcomes.push(Outcome {
                    recipient,
                    reply: read_reply(&mut lines).await?,
                });
            }
        }
    }
    let _ = write.write_all(b"QUIT\r\n").await;
    Ok(outcomes)
}

/// Reads one (possibly multi-line) reply and returns its last line.
async fn read_reply(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    loop {
        let mut line = String::new();
        if lines.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.trim_end().to_string());
        }
    }
}

/// The exit status for a set of replies: any temporary failure wins, then unknown users,
/// then other refusals.
pub fn exit_code(outcomes: &[Outcome]) -> u8 {
    if outcomes.iter().any(|o| o.reply.starts_with('4')) {
        exit::TEMPFAIL
    } else if outcomes.iter().any(|o| o.reply.starts_with("550 5.1.1")) {
        exit::NOUSER
    } else if outcomes.iter().any(|o| !o.reply.starts_with('2')) {
        exit::DATAERR
    } else {
        exit::OK
    }
}

/// CRLF line endings, leading dots doubled, a final line end: piece by piece, so a large
/// message is never copied whole.
#[derive(Debug)]
struct DotStuffer {
    at_line_start: bool,
    previous: u8,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            previous: 0,
        }
    }
}

impl DotStuffer {
    fn feed(&mut self, piece: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(piece.len() + 64);
        for &byte in piece {
            if byte == b'\n' && self.previous != b'\r' {
                out.push(b'\r');
            }
            if self.at_line_start && byte == b'.' {
                out.push(b'.');
            }
            out.push(byte);
            self.at_line_start = byte == b'\n';
            self.previous = byte;
        }
        out
    }

    fn finish(self) -> Vec<u8> {
        if self.at_line_start {
            Vec::new()
        } else {
            b"\r\n".to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_and_exit_codes() {
        let mut stuffer = DotStuffer::default();
        let mut out = stuffer.feed(b"a\n");
        out.extend(stuffer.feed(b".b\r"));
        out.extend(stuffer.feed(b"\n..c"));
        out.extend(stuffer.finish());
        assert_eq!(out, b"a\r\n..b\r\n...c\r\n");
        let o = |r: &str| Outcome {
            recipient: Mailbox::parse("x@example.com").unwrap(),
            reply: r.into(),
        };
        assert_eq!(exit_code(&[o("250 2.0.0 ok")]), exit::OK);
        assert_eq!(
            exit_code(&[o("250 2.0.0 ok"), o("550 5.1.1 no")]),
            exit::NOUSER
        );
        assert_eq!(
            exit_code(&[o("554 5.6.0 bad"), o("451 4.3.0 later")]),
            exit::TEMPFAIL
        );
        assert_eq!(exit_code(&[o("550 5.7.1 forged")]), exit::DATAERR);
    }
}
