//! What a delivered message comes to for one recipient, as an SMTP/LMTP reply: the one place
//! where refusals (the engine's error classes, the store's failures, the guard's and the
//! limits' refusals) become reply codes.

use crate::escape::printable;
use crate::itip::{ErrorClass, ItipError};
use crate::mailbox::Mailbox;
use crate::store::StoreError;
use std::fmt;

/// An enhanced status code (RFC 3463): class, subject, detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub [u8; 3]);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0[0], self.0[1], self.0[2])
    }
}

/// A reply in a word, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 2xx.
    Accepted,
    /// 5xx: never going to work.
    Refused,
    /// 4xx: may work later.
    Deferred,
}

impl Class {
    /// The word.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Accepted => "accepted",
            Class::Refused => "refused",
            Class::Deferred => "deferred",
        }
    }
}

/// What happens to a delivered message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done (or nothing to do): 250.
    Accepted(String),
    /// Never going to work: 5xx.
    Rejected {
        /// Reply code.
        code: u16,
        /// Enhanced status code.
        status: Status,
        /// Human text.
        text: String,
    },
    /// May work later: 4xx.
    Deferred {
        /// Reply code.
        code: u16,
        /// Enhanced status code.
        status: Status,
        /// Human text.
        text: String,
    },
}

impl From<StoreError> for Verdict {
    fn from(error: StoreError) -> Self {
        Verdict::store_unavailable(&error)
    }
}

impl Verdict {
    /// The reply line, without CRLF.
    pub fn reply(&self) -> String {
        match self {
            Verdict::Accepted(text) => format!("250 2.0.0 {}", printable(text)),
            Verdict::Rejected { code, status, text } | Verdict::Deferred { code, status, text } => {
                format!("{code} {status} {}", printable(text))
            }
        }
    }

    /// The mailbox store's reply in pass-through mode, its codes kept.
    pub fn downstream(code: u16, status: Status, text: &str) -> Self {
        match code {
            200..=299 => Verdict::Accepted(format!("forwarded: {text}")),
            400..=499 => Verdict::Deferred {
                code,
                status,
                text: format!("mailbox store: {text}"),
            },
            _ => Verdict::Rejected {
                code,
                status,
                text: format!("mailbox store: {text}"),
            },
        }
    }

    /// Unknown recipient.
    pub fn unknown_user(address: &Mailbox) -> Self {
        Verdict::Rejected {
            code: 550,
            status: Status([5, 1, 1]),
            text: format!("<{address}> is not a calendar user here"),
        }
    }

    /// The store cannot commit.
    pub fn store_unavailable(error: &StoreError) -> Self {
        Verdict::Deferred {
            code: 451,
            status: Status([4, 3, 0]),
            text: format!("temporary failure: {error}"),
        }
    }

    /// A large message cannot be kept while it arrives.
    pub fn no_room() -> Self {
        Verdict::Deferred {
            code: 452,
            status: Status([4, 3, 1]),
            text: "insufficient system storage, try again later".into(),
        }
    }

    /// The mailbox store cannot be reached (pass-through mode).
    pub fn downstream_unreachable(text: String) -> Self {
        Verdict::Deferred {
            code: 451,
            status: Status([4, 4, 1]),
            text,
        }
    }

    /// Over a quota of the account (RFC 3463 X.2.2, mailbox full): may fit later.
    pub fn over_quota(text: String) -> Self {
        Verdict::Deferred {
            code: 452,
            status: Status([4, 2, 2]),
            text,
        }
    }

    /// Over a size, attendee, instance or part limit.
    pub fn too_large(text: String) -> Self {
        Verdict::Rejected {
            code: 552,
            status: Status([5, 3, 4]),
            text,
        }
    }

    /// A message the guard refuses.
    pub fn refused(text: String) -> Self {
        Verdict::Rejected {
            code: 550,
            status: Status([5, 7, 1]),
            text,
        }
    }

    /// The answer to an engine error on a received message, by its class: malformed data is
    /// refused for good, a sender that may not say this by policy, and what is stale or
    /// pointless is accepted and dropped (bouncing it helps nobody).
    pub fn for_error(error: &ItipError) -> Self {
        let text = format!("{error}: {}", error.explain());
        match error.class() {
            ErrorClass::Malformed => Verdict::Rejected {
                code: 554,
                status: Status([5, 6, 0]),
                text,
            },
            ErrorClass::Forbidden => Verdict::refused(text),
            ErrorClass::Ignored | ErrorClass::NotConcerned => {
                Verdict::Accepted(format!("ignored, {text}"))
            }
        }
    }

    /// True for 2xx.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted(_))
    }

    /// True for 4xx.
    pub fn is_deferred(&self) -> bool {
        matches!(self, Verdict::Deferred { .. })
    }

    /// What the reply tells the MTA, in a word.
    pub fn class(&self) -> Class {
        match self {
            Verdict::Accepted(_) => Class::Accepted,
            Verdict::Rejected { .. } => Class::Refused,
            Verdict::Deferred { .. } => Class::Deferred,
        }
    }

    /// The enhanced status code (2.0.0 for an acceptance).
    pub fn status(&self) -> Status {
        match self {
            Verdict::Accepted(_) => Status([2, 0, 0]),
            Verdict::Rejected { status, .. } | Verdict::Deferred { status, .. } => *status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_one_printable_ascii_line() {
        let v = Verdict::Accepted("REQUEST a\0b\r\nRSET é".into());
        assert_eq!(v.reply(), "250 2.0.0 REQUEST a?b??RSET ?");
        let long = Verdict::refused("x".repeat(5000)).reply();
        assert!(long.len() < 420 && long.ends_with("..."), "{}", long.len());
    }

    #[test]
    fn each_class_has_its_reply() {
        let reply = |e: ItipError| Verdict::for_error(&e).reply();
        assert!(reply(ItipError::MissingUid).starts_with("554 5.6.0 MissingUid"));
        assert!(reply(ItipError::NotOrganizer).starts_with("550 5.7.1 NotOrganizer"));
        assert!(reply(ItipError::OutOfSequence).starts_with("250 2.0.0 ignored, OutOfSequence"));
        let kept = Verdict::downstream(452, Status([4, 2, 2]), "mailbox full");
        assert_eq!(kept.reply(), "452 4.2.2 mailbox store: mailbox full");
    }
}
