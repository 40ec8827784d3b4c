//! The SMTP relay transport (mail-send): STARTTLS when the relay offers it, TLS from the
//! start for `smtps://`, AUTH when credentials are given.

use super::queue::Outcome;
use crate::config::Relay;
use crate::itip::ScheduleStatus;
use crate::mailbox::Mailbox;
use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::Message;
use std::time::Duration;

/// Sends one message to one recipient and classifies the answer.
pub async fn send(
    relay: &Relay,
    hostname: &str,
    envelope_from: &Mailbox,
    recipient: &Mailbox,
    raw: &[u8],
    timeout: Duration,
) -> Outcome {
    let mut builder = SmtpClientBuilder::new(relay.host.clone(), relay.port)
        .implicit_tls(relay.implicit_tls)
        .helo_host(hostname)
        .timeout(timeout);
    if let Some((user, password)) = &relay.credentials {
        builder = builder.credentials((user.clone(), password.clone()));
    }
    // Mailboxes hold nothing that could end or split a command: the relay sees no raw text.
    let message = Message::new(envelope_from.as_str(), [recipient.as_str()], raw);
    // mail-send applies its timeout to each step; the whole attempt is bounded too, so a relay
    // that answers every step slowly cannot hold a delivery slot for longer than `timeout`.
    let attempt = async {
        match builder.connect().await {
            Ok(mut client) => client.send(message).await,
            // STARTTLS is used when offered; a relay on a private network may not offer it.
            Err(mail_send::Error::MissingStartTls) if !relay.implicit_tls => {
                match builder.connect_plain().await {
                    Ok(mut client) => client.send(message).await,
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    };
    let outcome = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Outcome::Delivered(ScheduleStatus::Sent),
        // Whichever of the two timeouts fires first, the operator reads the same reason.
        Ok(Err(mail_send::Error::Timeout)) | Err(_) => Outcome::Retry(format!(
            "the relay took longer than outbound.relay_timeout ({})",
            humantime::format_duration(timeout)
        )),
        Ok(Err(e)) => classify(e),
    };
    // Which relay said it: the operator reads it in the log and in `imipd queue list`.
    let at = |why: String| format!("relay {}:{}: {why}", relay.host, relay.port);
    match outcome {
        Outcome::Retry(why) => Outcome::Retry(at(why)),
        Outcome::Failed(status, why) => Outcome::Failed(status, at(why)),
        delivered => delivered,
    }
}

/// 4xx and transport trouble are temporary; 5.1.x means the address is refused (5.2),
/// 5.7.x a policy refusal (5.3); other 5xx do not get delivered (5.1).
fn classify(error: mail_send::Error) -> Outcome {
    match &error {
        mail_send::Error::UnexpectedReply(reply)
        | mail_send::Error::AuthenticationFailed(reply) => {
            let text = format!(
                "{} {}.{}.{} {}",
                reply.code, reply.esc[0], reply.esc[1], reply.esc[2], reply.message
            );
            match (reply.code / 100, reply.esc[1]) {
                (5, 1) => Outcome::Failed(ScheduleStatus::AddressRefused, text),
                (5, 7) => Outcome::Failed(ScheduleStatus::PolicyRefused, text),
                (5, _) => Outcome::Failed(ScheduleStatus::NotDelivered, text),
                _ => Outcome::Retry(text),
            }
        }
        _ => Outcome::Retry(error.to_string()),
    }
}
