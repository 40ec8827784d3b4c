//! The guard: what a message from outside may say before the engine applies it. Mail is
//! written by strangers, so the guard decides whom a message speaks for: the one address of its
//! From header (never widened by Sender), authenticated by a trusted DMARC pass for that
//! address's domain where the operator asks for it, and never a calendar user of this server
//! (local users reach each other inside imipd).

use super::verdict::Verdict;
use crate::gateway::Gateway;
use crate::itip::{self, CalAddress, Calendar, ItipError, Method};
use crate::mailbox::Mailbox;
use crate::mime::InboundMail;

/// One calendar object found in a message, parsed.
pub struct Part {
    /// Its place among the message's calendar parts, from 1.
    pub index: usize,
    /// METHOD.
    pub method: Method,
    /// UID.
    pub uid: String,
    /// The iCalendar text as received.
    pub text: String,
    /// The object.
    pub calendar: Calendar,
}

/// Who wrote a message, and what may be believed of it.
pub struct Author {
    /// The one address of the From header.
    pub mailbox: Mailbox,
    /// The same, as a calendar user address.
    pub address: CalAddress,
    /// A trusted authserv-id reported a DMARC pass for the From domain.
    pub authenticated: bool,
    /// `Auto-Submitted` other than `no`: applied, never answered (RFC 3834).
    pub auto_submitted: bool,
}

impl Author {
    /// The domain DMARC vouches the author belongs to, when it does
    /// (`itip::Context::vouched_domain`).
    pub fn vouched_domain(&self) -> Option<&str> {
        self.authenticated.then(|| self.mailbox.domain())
    }
}

/// A calendar part that is no scheduling message the engine can use: accepted and ignored,
/// so that one bad attachment never sinks the others.
pub struct Unusable {
    /// Its place among the message's calendar parts, from 1.
    pub index: usize,
    /// METHOD, when it has one.
    pub method: Option<String>,
    /// UID, when it has one.
    pub uid: Option<String>,
    /// What is wrong with it.
    pub error: ItipError,
}

/// A message the guard lets through to the engine.
pub struct Admitted {
    /// Its author.
    pub author: Author,
    /// Its calendar objects.
    pub parts: Vec<Part>,
    /// Its calendar parts that cannot be used.
    pub unusable: Vec<Unusable>,
}

/// A message's calendar parts, sorted.
struct Parts {
    usable: Vec<Part>,
    unusable: Vec<Unusable>,
}

/// Why a message reaches no calendar.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// Its calendar data cannot be read, or is over a limit.
    Unreadable(Verdict),
    /// It cannot be believed: whose it is, or whom it speaks for.
    Unbelieved(Verdict),
}

impl Refusal {
    /// The answer to the MTA.
    pub fn verdict(&self) -> &Verdict {
        match self {
            Refusal::Unreadable(v) | Refusal::Unbelieved(v) => v,
        }
    }

    /// The `result` label of the message counter.
    pub fn metric(&self) -> &'static str {
        match self {
            Refusal::Unreadable(_) => "unparsable",
            Refusal::Unbelieved(_) => "unbelieved",
        }
    }
}

/// Decides whether a message may reach any calendar: `Ok(None)` when it carries no scheduling
/// message at all (nothing to do), a refusal when it cannot be read or believed.
pub fn admit(gateway: &Gateway, mail: &InboundMail) -> Result<Option<Admitted>, Refusal> {
    let parts = parse_parts(gateway, mail).map_err(Refusal::Unreadable)?;
    if parts.usable.is_empty() && parts.unusable.is_empty() {
        return Ok(None);
    }
    believe(gateway, mail, parts)
        .map(Some)
        .map_err(Refusal::Unbelieved)
}

/// Who wrote the message, and whether it may speak for whom it names.
fn believe(gateway: &Gateway, mail: &InboundMail, parts: Parts) -> Result<Admitted, Verdict> {
    let mailbox = match mail.authors.as_slice() {
        [one] => Mailbox::parse(one)
            .map_err(|e| Verdict::refused(format!("the From address is no mailbox ({e})")))?,
        [] => return Err(Verdict::refused("the message has no From address".into())),
        _ => {
            return Err(Verdict::refused(
                "the message has more than one From address: whose is it?".into(),
            ));
        }
    };
    let authenticated = match dmarc_verdict(gateway, mail, &mailbox) {
        Some(false) => {
            return Err(Verdict::refused(format!(
                "{} did not pass DMARC at a trusted authserv-id",
                mailbox.domain()
            )));
        }
        verdict => verdict == Some(true),
    };
    let author = Author {
        address: mailbox.cal_address(),
        mailbox,
        authenticated,
        auto_submitted: mail.auto_submitted,
    };
    for part in &parts.usable {
        let voices = itip::voices(part.method, &part.calendar, &author.address);
        if let Some(local) = std::iter::once(&author.address)
            .chain(&voices)
            .find(|a| speaks_locally(gateway, a))
        {
            return Err(Verdict::refused(format!(
                "mail may not speak for {local}, a calendar user of this server"
            )));
        }
    }
    Ok(Admitted {
        author,
        parts: parts.usable,
        unusable: parts.unusable,
    })
}

/// True when the address is a local account's and its domain is not one the operator lets
/// another system send for (`security.mail_from_local_domains`).
fn speaks_locally(gateway: &Gateway, address: &CalAddress) -> bool {
    let Some(email) = address.email() else {
        return false;
    };
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    gateway.account_for(email).is_some()
        && !gateway
            .config()
            .security
            .mail_from_local_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
}

/// Parses every calendar part and sorts out those that are no usable scheduling message. The
/// message is refused only when none of its calendar parts can be parsed at all, or when it is
/// over a limit (one part more than `limits.max_parts` stops parsing at once).
fn parse_parts(gateway: &Gateway, mail: &InboundMail) -> Result<Parts, Verdict> {
    let limit = gateway.config().limits.max_parts;
    let mut sorted = Parts {
        usable: Vec::new(),
        unusable: Vec::new(),
    };
    let mut parse_error = None;
    for (index, part) in mail.parts.iter().enumerate().map(|(i, p)| (i + 1, p)) {
        if index > limit {
            return Err(Verdict::too_large(format!(
                "more than limits.max_parts ({limit}) calendar objects"
            )));
        }
        let calendar = match Calendar::parse(&part.text) {
            Ok(calendar) => calendar,
            Err(e) => {
                sorted.unusable.push(Unusable {
                    index,
                    method: None,
                    uid: None,
                    error: e.clone(),
                });
                let count = parse_error.map_or(0, |(n, _)| n) + 1;
                parse_error = Some((count, e));
                continue;
            }
        };
        gateway
            .config()
            .limits
            .check(part.text.len(), &calendar)
            .map_err(Verdict::too_large)?;
        let uid = itip::uid_of(&calendar).map(str::to_string);
        let method = match (calendar.method(), &uid) {
            (Some(m), Some(uid)) => match Method::parse(&m) {
                Some(method) => Ok((method, uid.clone())),
                None => Err((Some(m.clone()), ItipError::UnsupportedMethod(m))),
            },
            (Some(m), None) => Err((Some(m), ItipError::MissingUid)),
            // An .ics without METHOD is a calendar, not a scheduling message; one that the MIME
            // type announces as iMIP is broken (RFC 6047 section 2.4).
            (None, _) if part.mime_method.is_some() => Err((None, ItipError::MissingMethod)),
            (None, _) => continue,
        };
        let (method, uid) = match method {
            Ok(found) => found,
            Err((method, error)) => {
                sorted.unusable.push(Unusable {
                    index,
                    method,
                    uid,
                    error,
                });
                continue;
            }
        };
        if sorted
            .usable
            .iter()
            .any(|p| p.method == method && p.uid == uid && same_version(&p.calendar, &calendar))
        {
            continue;
        }
        sorted.usable.push(Part {
            index,
            method,
            uid,
            text: part.text.clone(),
            calendar,
        });
    }
    match parse_error {
        Some((count, error)) if count == mail.parts.len() => Err(Verdict::for_error(&error)),
        _ => Ok(sorted),
    }
}

fn same_version(a: &Calendar, b: &Calendar) -> bool {
    let stamp = |c: &Calendar| {
        c.scheduling()
            .map(|x| (x.sequence(), x.dtstamp()))
            .collect::<Vec<_>>()
    };
    stamp(a) == stamp(b)
}

/// `None` when no authserv-id is trusted; else whether a trusted one reports a DMARC pass for
/// the author's domain (RFC 8601, RFC 7489).
fn dmarc_verdict(gateway: &Gateway, mail: &InboundMail, author: &Mailbox) -> Option<bool> {
    let trusted = &gateway.config().security.trusted_authserv_ids;
    if trusted.is_empty() {
        return None;
    }
    let domain = author.domain().to_ascii_lowercase();
    Some(
        mail.auth_results
            .iter()
            .any(|header| dmarc_passes(header, trusted, &domain)),
    )
}

/// True when an Authentication-Results header comes from a trusted authserv-id and reports
/// `dmarc=pass` for exactly this From domain (`header.from`, which a DMARC result carries).
fn dmarc_passes(header: &str, trusted: &[String], domain: &str) -> bool {
    let mut clauses = header.split(';');
    let authserv = clauses
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("");
    if !trusted.iter().any(|t| t.eq_ignore_ascii_case(authserv)) {
        return false;
    }
    clauses.any(|clause| {
        let mut words = clause.split_whitespace();
        words
            .next()
            .is_some_and(|result| result.eq_ignore_ascii_case("dmarc=pass"))
            && clause.split_whitespace().any(|w| {
                w.to_ascii_lowercase()
                    .strip_prefix("header.from=")
                    .is_some_and(|d| d.trim_end_matches([')', ';']) == domain)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::dmarc_passes;

    #[test]
    fn dmarc_from_trusted_authserv_for_the_author_domain_only() {
        let trusted = vec!["mx.example.com".to_string()];
        let good = "mx.example.com; spf=pass smtp.mailfrom=partner.example; dmarc=pass (p=none) header.from=partner.example";
        assert!(dmarc_passes(good, &trusted, "partner.example"));
        assert!(!dmarc_passes(good, &trusted, "other.example"));
        assert!(!dmarc_passes(
            &good.replace("mx.example.com", "evil.example"),
            &trusted,
            "partner.example"
        ));
        assert!(!dmarc_passes(
            &good.replace("dmarc=pass", "dmarc=fail"),
            &trusted,
            "partner.example"
        ));
        // A pass that names no domain says nothing about this one.
        assert!(!dmarc_passes(
            "mx.example.com; dmarc=pass",
            &trusted,
            "partner.example"
        ));
    }
}
