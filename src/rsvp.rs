//! One-click answers: the links an invitation to an outside attendee carries, and what they
//! name. A link's token names the organizer's account, the object, the attendee and the
//! SEQUENCE it was sent with, with the day it stops working, sealed with a key made from the
//! store's secret: nobody without the secret makes one, and one names nothing else.

use blake2::{Blake2s256, Digest};
use subtle::ConstantTimeEq;

/// How long a link works after its invitation was sent.
pub const LIFETIME: i64 = 90 * 24 * 3600;

/// Bytes of the seal: 128 bits, beyond guessing.
const SEAL: usize = 16;

/// What a link answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The organizer's account.
    pub account: String,
    /// The object's UID.
    pub uid: String,
    /// The attendee's address (`mailto:` URI).
    pub attendee: String,
    /// The SEQUENCE of the invitation it came with.
    pub sequence: u32,
    /// When it stops working, seconds since the epoch.
    pub until: i64,
}

/// Why a token opens nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not one this store made (or changed since).
    #[error("this link was not made by this calendar server, or it was changed")]
    Forged,
    /// Made, but past its time.
    #[error("this link has expired")]
    Expired,
}

/// The answers a link may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    Tentative,
    Declined,
}

impl Answer {
    /// Every answer, in the order links show them.
    pub const ALL: [Answer; 3] = [Answer::Accepted, Answer::Tentative, Answer::Declined];

    /// The PARTSTAT.
    pub fn partstat(self) -> &'static str {
        match self {
            Answer::Accepted => "ACCEPTED",
            Answer::Tentative => "TENTATIVE",
            Answer::Declined => "DECLINED",
        }
    }

    /// The PARTSTAT, as the engine takes it.
    pub fn status(self) -> calcard::icalendar::ICalendarParticipationStatus {
        use calcard::icalendar::ICalendarParticipationStatus as Status;
        match self {
            Answer::Accepted => Status::Accepted,
            Answer::Tentative => Status::Tentative,
            Answer::Declined => Status::Declined,
        }
    }

    /// Its button, in the words of a language.
    pub fn button(self, words: &crate::wording::Words) -> &'static str {
        let [accept, tentative, decline] = words.buttons;
        match self {
            Answer::Accepted => accept,
            Answer::Tentative => tentative,
            Answer::Declined => decline,
        }
    }

    /// The answer a PARTSTAT names.
    pub fn parse(text: &str) -> Option<Answer> {
        Answer::ALL
            .into_iter()
            .find(|a| a.partstat().eq_ignore_ascii_case(text.trim()))
    }
}

/// The key links of one store are sealed with.
#[derive(Clone)]
pub struct Links {
    key: [u8; 32],
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Links(..)")
    }
}

impl Links {
    /// The links of a store with this secret.
    pub fn new(secret: &[u8; 32]) -> Links {
        let mut hasher = Blake2s256::new();
        hasher.update(b"imipd rsvp\0");
        hasher.update(secret);
        Links {
            key: hasher.finalize().into(),
        }
    }

    /// The token of a ticket: its fields and their seal, base64url.
    pub fn token(&self, ticket: &Ticket) -> String {
        let mut bytes = fields(ticket);
        let seal = self.seal(&bytes);
        bytes.extend_from_slice(&seal);
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    }

    /// The ticket a token names, if this store sealed it and it still works at `now`.
    pub fn open(&self, token: &str, now: i64) -> Result<Ticket, Refused> {
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bytes = base64::Engine::decode(engine, token).map_err(|_| Refused::Forged)?;
        let (body, seal) = bytes
            .split_at_checked(bytes.len().saturating_sub(SEAL))
            .ok_or(Refused::Forged)?;
        if seal.len() != SEAL || !bool::from(self.seal(body).ct_eq(seal)) {
            return Err(Refused::Forged);
        }
        let ticket = parse(body).ok_or(Refused::Forged)?;
        if ticket.until < now {
            return Err(Refused::Expired);
        }
        Ok(ticket)
    }

    fn seal(&self, body: &[u8]) -> [u8; SEAL] {
        let mut hasher = Blake2s256::new();
        hasher.update(self.key);
        hasher.update(body);
        let digest = hasher.finalize();
        let mut seal = [0; SEAL];
        seal.copy_from_slice(&digest[..SEAL]);
        seal
    }
}

/// Version, times, then each text with its length.
fn fields(ticket: &Ticket) -> Vec<u8> {
    let mut bytes = vec![1];
    bytes.extend_from_slice(&ticket.until.to_be_bytes());
    bytes.extend_from_slice(&ticket.sequence.to_be_bytes());
    for text in [&ticket.account, &ticket.uid, &ticket.attendee] {
        let length = u16::try_from(text.len()).unwrap_or(u16::MAX);
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(&text.as_bytes()[..usize::from(length)]);
    }
    bytes
}

fn parse(body: &[u8]) -> Option<Ticket> {
    let (&version, rest) = body.split_first()?;
    if version != 1 {
        return None;
    }
    let (until, rest) = rest.split_at_checked(8)?;
    let (sequence, mut rest) = rest.split_at_checked(4)?;
    let mut texts = Vec::with_capacity(3);
    for _ in 0..3 {
        let (length, after) = rest.split_at_checked(2)?;
        let length = usize::from(u16::from_be_bytes(length.try_into().ok()?));
        let (text, after) = after.split_at_checked(length)?;
        texts.push(String::from_utf8(text.to_vec()).ok()?);
        rest = after;
    }
    let [account, uid, attendee] = <[String; 3]>::try_from(texts).ok()?;
    let sequence = u32::from_be_bytes(sequence.try_into().ok()?);
    let until = i64::from_be_bytes(until.try_into().ok()?);
    rest.is_empty().then_some(Ticket {
        account,
        uid,
        attendee,
        sequence,
        until,
    })
}

/// The answer links a queued message carries: only a REQUEST to one outside attendee, sent by
/// its organizer, and only when `http.public_url` says where browsers reach the listener.
pub fn links_for(
    gateway: &crate::gateway::Gateway,
    message: &crate::store::OutboundMessage,
) -> Vec<(Answer, String)> {
    let config = gateway.config();
    let (Some(base), [to]) = (&config.http.public_url, message.to.as_slice()) else {
        return Vec::new();
    };
    if message.method != "REQUEST" || gateway.account_for(to.as_str()).is_some() {
        return Vec::new();
    }
    let Ok(calendar) = crate::itip::Calendar::parse(&message.calendar) else {
        return Vec::new();
    };
    let Some(first) = calendar.master().or_else(|| calendar.scheduling().next()) else {
        return Vec::new();
    };
    if first.organizer() != Some(message.from.cal_address()) {
        return Vec::new();
    }
    let ticket = Ticket {
        account: message.account.clone(),
        uid: message.uid.clone(),
        attendee: to.cal_address().as_str().to_string(),
        sequence: u32::try_from(first.sequence()).unwrap_or(0),
        until: message.queued_at + LIFETIME,
    };
    let token = gateway.links.token(&ticket);
    let base = base.as_str().trim_end_matches('/');
    Answer::ALL
        .into_iter()
        .map(|a| (a, format!("{base}/rsvp/{token}?partstat={}", a.partstat())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            account: "alice@example.com".into(),
            uid: "team-sync@example.com".into(),
            attendee: "mailto:bob@partner.example".into(),
            sequence: 2,
            until: 2_000,
        }
    }

    #[test]
    fn a_token_opens_to_its_ticket_until_it_expires() {
        let links = Links::new(&[7; 32]);
        let token = links.token(&ticket());
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        );
        assert_eq!(links.open(&token, 1_000), Ok(ticket()));
        assert_eq!(links.open(&token, 2_001), Err(Refused::Expired));
    }

    /// Another store's token, one changed in any byte, cut short or lengthened: forged.
    #[test]
    fn a_token_changed_or_from_elsewhere_opens_nothing() {
        let links = Links::new(&[7; 32]);
        let token = links.token(&ticket());
        assert_eq!(Links::new(&[8; 32]).open(&token, 0), Err(Refused::Forged));
        let engine = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let bytes = base64::Engine::decode(engine, &token).unwrap();
        for at in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[at] ^= 0x20;
            let changed = base64::Engine::encode(engine, changed);
            assert_eq!(links.open(&changed, 0), Err(Refused::Forged), "byte {at}");
        }
        assert_eq!(
            links.open(&token[..token.len() - 2], 0),
            Err(Refused::Forged)
        );
        assert_eq!(links.open(&format!("{token}AA"), 0), Err(Refused::Forged));
        assert_eq!(links.open("", 0), Err(Refused::Forged));
        assert_eq!(links.open("not base64!", 0), Err(Refused::Forged));
    }
}
