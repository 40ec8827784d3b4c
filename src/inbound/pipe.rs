//! `imipd deliver`: the pipe hook for MTAs. It hands the message to the running daemon over
//! LMTP, so the daemon's commit and flush decide, and turns the replies into sysexits.

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
    /// Try again later.
    pub const TEMPFAIL: u8 = 75;
}

/// The reply the daemon gave for one recipient.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The recipient.
    pub recipient: String,
    /// The reply line.
    pub reply: String,
}

/// Submits a message over LMTP and returns one reply per recipient: those refused at RCPT
/// first, then those answered after DATA.
pub async fn submit(
    target: SocketAddr,
    from: &str,
    recipients: &[String],
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
            write.write_all(&dot_stuff(message)).await?;
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

/// CRLF line endings, leading dots doubled, a final line end.
fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    let mut previous = 0u8;
    for &byte in message {
        if byte == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        if at_line_start && byte == b'.' {
            out.push(b'.');
        }
        out.push(byte);
        at_line_start = byte == b'\n';
        previous = byte;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing_and_exit_codes() {
        assert_eq!(dot_stuff(b"a\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n");
        let o = |r: &str| Outcome {
            recipient: "x".into(),
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
