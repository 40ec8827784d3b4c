//! Applying an admitted message to one account's calendar: each part through the engine
//! against the account's copy (later parts see what earlier ones did), what that sends
//! (limited by the loop rules), and one durable commit of it all; and the same decision with
//! nothing committed, for `imipd explain`.

use super::guard::{self, Admitted, Part, Unusable};
use super::verdict::Verdict;
use crate::config::AutoAdd;
use crate::escape::escaped;
use crate::gateway::{Decision, Gateway};
use crate::itip::{self, Calendar, ErrorClass, ItipMessage, Method, Received};
use crate::mailbox::Mailbox;
use crate::mime::InboundMail;
use crate::outbound::{notices, queue};
use crate::store::{Change, Expect, Tag};
use std::collections::BTreeMap;

/// A recipient's copy of one object while a message is applied to it.
struct Draft {
    expect: Expect,
    original: Option<String>,
    calendar: Option<Calendar>,
    matches: Option<String>,
    /// An organizer's message changed it (else only answers did): a new Schedule-Tag.
    rescheduled: bool,
}

/// What one calendar part would do to one account's calendar.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartReport {
    /// Its place among the message's calendar parts, from 1.
    pub index: usize,
    /// METHOD.
    pub method: String,
    /// UID.
    pub uid: String,
    /// The stored copy it matches: its ETag and title, or none.
    pub matches: Option<String>,
    /// What became of it.
    pub outcome: Outcome,
    /// The guard's and the engine's decision, with the reason.
    pub verdict: String,
    /// What would change in the store.
    pub change: String,
    /// Messages it would send, as "METHOD to ADDRESS".
    pub sends: Vec<String>,
}

/// What became of one calendar part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The engine applied it.
    Applied,
    /// Kept for the organizer to decide on: a COUNTER, or the answer of someone the
    /// invitation was forwarded to.
    Kept,
    /// Valid, but stale, pointless or not this user's business: dropped.
    Ignored,
    /// No scheduling message the engine can use: dropped.
    Unusable,
    /// Not added: `inbound.auto_add` and the user has no copy.
    NotAdded,
    /// Its sender may not say what it says.
    Refused,
}

impl PartReport {
    /// The part as the reply names it: place, method, UID and what became of it.
    fn note(&self) -> String {
        let uid = if self.uid.is_empty() {
            "(no UID)"
        } else {
            &self.uid
        };
        format!(
            "part {} {} {uid}: {}",
            self.index, self.method, self.verdict
        )
    }
}

/// The answer for a message whose parts came to `reports`: accepted when any part was applied
/// or none was refused, each part named; refused (550 5.7.1) when nothing was applied and a
/// part's sender may not say what it says.
fn verdict_of(reports: &[PartReport]) -> Verdict {
    let notes = reports
        .iter()
        .map(PartReport::note)
        .collect::<Vec<_>>()
        .join("; ");
    let outcome = |o: Outcome| reports.iter().any(|r| r.outcome == o);
    if !outcome(Outcome::Applied) && !outcome(Outcome::Kept) && outcome(Outcome::Refused) {
        Verdict::refused(notes)
    } else if notes.is_empty() {
        Verdict::Accepted("delivered".into())
    } else {
        Verdict::Accepted(notes)
    }
}

/// The decision for one recipient, before anything is committed.
struct Plan {
    changes: Vec<Change>,
    reports: Vec<PartReport>,
    duplicate: bool,
}

/// What is returned once a plan is committed.
struct Planned {
    reports: Vec<PartReport>,
    duplicate: bool,
}

impl Plan {
    fn decision(self) -> Decision<Planned> {
        Decision::new(
            self.changes,
            Planned {
                reports: self.reports,
                duplicate: self.duplicate,
            },
        )
    }
}

/// Whether a plan looks up the delivery record first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duplicates {
    /// Yes: a duplicate is found before anything is decided.
    LookUp,
    /// No: the record is unique in the store, so a duplicate fails the commit, and the plan
    /// made again looks it up. Saves a read of the store per message (duplicates are rare).
    AtCommit,
}

/// Decides what every part does to one account's calendar, without committing anything.
fn plan(
    gateway: &Gateway,
    trace: &str,
    admitted: &Admitted,
    message_id: Option<&str>,
    account: &str,
    duplicates: Duplicates,
) -> Result<Plan, Verdict> {
    let addresses = gateway.addresses(account);
    let seen_key = message_id.map(|id| delivery_key(id, account, &admitted.parts));
    if let Some(key) = &seen_key
        && duplicates == Duplicates::LookUp
        && gateway
            .store
            .seen(key)
            .map_err(|e| Verdict::store_unavailable(&e))?
    {
        return Ok(Plan {
            changes: Vec::new(),
            reports: Vec::new(),
            duplicate: true,
        });
    }
    let ctx = gateway.context(&addresses);
    // Later parts see what earlier parts of the same message did.
    let mut copies: BTreeMap<String, Draft> = BTreeMap::new();
    let mut changes = Vec::new();
    let mut reports = Vec::new();
    reports.extend(admitted.unusable.iter().map(unusable_report));
    for part in &admitted.parts {
        let copy = copy_of(gateway, &mut copies, account, &part.uid)?;
        let mut report = PartReport {
            index: part.index,
            method: part.method.as_str().to_string(),
            uid: part.uid.clone(),
            matches: copy.matches.clone(),
            outcome: Outcome::Applied,
            verdict: "applied".into(),
            change: "none".into(),
            sends: Vec::new(),
        };
        if let Some(refusal) = not_added(gateway, admitted, part, copy) {
            report.outcome = Outcome::NotAdded;
            report.verdict = refusal;
            reports.push(report);
            continue;
        }
        match itip::receive(
            &ctx,
            &admitted.author.address,
            copy.calendar.as_ref(),
            &part.calendar,
        ) {
            Ok(received) => {
                let step = Step {
                    gateway,
                    trace,
                    account,
                    admitted,
                    part,
                };
                step.apply(copy, received, &mut changes, &mut report)?;
                // What was applied or kept shows in the schedule inbox too, for clients.
                if matches!(report.outcome, Outcome::Applied | Outcome::Kept) {
                    changes.push(gateway.to_inbox(account, &part.text));
                }
            }
            Err(e) => {
                report.outcome = match e.class() {
                    ErrorClass::Ignored | ErrorClass::NotConcerned => Outcome::Ignored,
                    ErrorClass::Malformed => Outcome::Unusable,
                    ErrorClass::Forbidden => Outcome::Refused,
                };
                report.verdict = match report.outcome {
                    Outcome::Refused => format!("refused, {e}: {}", e.explain()),
                    _ => format!("ignored, {e}: {}", e.explain()),
                };
            }
        }
        reports.push(report);
    }
    reports.sort_by_key(|r| r.index);
    changes.extend(puts(account, &copies));
    if let Some(key) = seen_key {
        changes.push(Change::Seen(key, gateway.now()));
    }
    Ok(Plan {
        changes,
        reports,
        duplicate: false,
    })
}

/// The report of a part the guard found unusable.
fn unusable_report(part: &Unusable) -> PartReport {
    PartReport {
        index: part.index,
        method: part.method.clone().unwrap_or_else(|| "(no METHOD)".into()),
        uid: part.uid.clone().unwrap_or_default(),
        matches: None,
        outcome: Outcome::Unusable,
        verdict: format!("ignored, {}: {}", part.error, part.error.explain()),
        change: "none".into(),
        sends: Vec::new(),
    }
}

/// The recipient's copy of an object, read once per message.
fn copy_of<'a>(
    gateway: &Gateway,
    copies: &'a mut BTreeMap<String, Draft>,
    account: &str,
    uid: &str,
) -> Result<&'a mut Draft, Verdict> {
    if !copies.contains_key(uid) {
        let current = gateway
            .store
            .get(account, uid)
            .map_err(|e| Verdict::store_unavailable(&e))?;
        let calendar = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
        let matches = current.as_ref().map(|c| {
            let title = calendar
                .as_ref()
                .and_then(|cal| itip::title_and_start(cal).0)
                .unwrap_or_default();
            format!("{uid} ETag {} {title:?}", c.etag())
        });
        copies.insert(
            uid.to_string(),
            Draft {
                expect: current
                    .as_ref()
                    .map(|c| Expect::Revision(c.revision))
                    .unwrap_or(Expect::Absent),
                original: current.map(|c| c.text),
                calendar,
                matches,
                rescheduled: false,
            },
        );
    }
    Ok(copies.get_mut(uid).expect("inserted above"))
}

/// Why an invitation for an object the user lacks is not added (`inbound.auto_add`).
fn not_added(gateway: &Gateway, admitted: &Admitted, part: &Part, copy: &Draft) -> Option<String> {
    let adds = matches!(part.method, Method::Request | Method::Publish | Method::Add);
    let policy = gateway.config().inbound.auto_add;
    let allowed = match policy {
        AutoAdd::Always => true,
        AutoAdd::Authenticated => admitted.author.authenticated,
        AutoAdd::Never => false,
    };
    (copy.calendar.is_none() && adds && !allowed)
        .then(|| format!("not added: inbound.auto_add = {policy:?} and the user has no copy"))
}

/// The copies a message changed, to be stored.
fn puts(account: &str, copies: &BTreeMap<String, Draft>) -> Vec<Change> {
    copies
        .iter()
        .filter_map(|(uid, copy)| {
            let text = copy.calendar.as_ref()?.to_string();
            (copy.original.as_deref() != Some(text.as_str())).then(|| Change::Put {
                account: account.into(),
                uid: uid.clone(),
                text,
                expect: copy.expect,
                tag: if copy.rescheduled {
                    Tag::New
                } else {
                    Tag::Kept
                },
            })
        })
        .collect()
}

/// One part applied to one account's copy.
struct Step<'a> {
    gateway: &'a Gateway,
    trace: &'a str,
    account: &'a str,
    admitted: &'a Admitted,
    part: &'a Part,
}

impl Step<'_> {
    /// Records what the engine decided: the new copy, the answers it sends, a proposal kept.
    fn apply(
        &self,
        copy: &mut Draft,
        received: Received,
        changes: &mut Vec<Change>,
        report: &mut PartReport,
    ) -> Result<(), Verdict> {
        let Received {
            stored,
            responses,
            proposal,
            forwarded_by,
        } = received;
        if let Some(next) = stored {
            self.gateway
                .config()
                .limits
                .check(next.to_string().len(), &next)
                .map_err(Verdict::too_large)?;
            if let Some(before) = &copy.calendar
                && self.part.method == Method::Reply
                && !self.admitted.author.auto_submitted
            {
                let addresses = self.gateway.addresses(self.account);
                if itip::organizes(&self.gateway.context(&addresses), before) {
                    notices::after_answer(
                        self.gateway,
                        self.account,
                        &self.part.uid,
                        before,
                        &next,
                        changes,
                    );
                }
            }
            report.change = match (&copy.calendar, &forwarded_by) {
                (Some(_), _) => "updates the copy".into(),
                (None, Some(by)) => format!("creates the copy, an invitation forwarded by {by}"),
                (None, None) => "creates the copy".into(),
            };
            copy.calendar = Some(next);
            copy.rescheduled |= self.part.method.is_organizers();
        }
        let answers = self.answers(responses, changes)?;
        report.sends = answers
            .iter()
            .flat_map(|m| {
                m.to.iter()
                    .map(move |to| format!("{} to {to}", m.method.as_str()))
            })
            .collect();
        queue::enqueue(self.gateway, self.trace, self.account, &answers, changes);
        if let Some(proposal) = proposal {
            report.outcome = Outcome::Kept;
            report.verdict = "kept for the organizer to decide on".into();
            report.change = "keeps it for the organizer to decide on; the copy is unchanged".into();
            changes.push(Change::Proposal {
                account: self.account.into(),
                uid: self.part.uid.clone(),
                text: proposal.to_string(),
            });
        }
        Ok(())
    }

    /// The engine's answers that may go out: none to Auto-Submitted mail (RFC 3834), and one
    /// REFRESH answer per attendee and object per `outbound.notify_delay`, so that two
    /// automatons cannot keep each other busy.
    fn answers(
        &self,
        responses: Vec<ItipMessage>,
        changes: &mut Vec<Change>,
    ) -> Result<Vec<ItipMessage>, Verdict> {
        if self.admitted.author.auto_submitted {
            if !responses.is_empty() {
                tracing::info!(trace = self.trace, uid = %escaped(&self.part.uid), "Auto-Submitted message: applied, nothing sent in answer");
            }
            return Ok(Vec::new());
        }
        if self.part.method != Method::Refresh {
            return Ok(responses);
        }
        let window = self.gateway.config().outbound.notify_delay.as_secs() as i64;
        let now = self.gateway.now();
        let mut allowed = Vec::new();
        for response in responses {
            let mut recent = false;
            for to in &response.to {
                let last = self
                    .gateway
                    .store
                    .refreshed(self.account, &self.part.uid, to.as_str())
                    .map_err(|e| Verdict::store_unavailable(&e))?;
                recent |= last.is_some_and(|at| now - at < window);
            }
            if recent {
                tracing::info!(trace = self.trace, uid = %escaped(&self.part.uid), "REFRESH answered within outbound.notify_delay; not again");
                continue;
            }
            changes.extend(response.to.iter().map(|to| Change::Refreshed {
                account: self.account.into(),
                uid: self.part.uid.clone(),
                attendee: to.to_string(),
                at: now,
            }));
            allowed.push(response);
        }
        Ok(allowed)
    }
}

/// Applies every part to one account's calendar in one atomic, durable commit. Returns the
/// verdict and what it came to for the metrics.
pub async fn to_calendar(
    gateway: &Gateway,
    trace: &str,
    admitted: &Admitted,
    message_id: Option<&str>,
    account: &str,
) -> (Verdict, &'static str) {
    let mut duplicates = Duplicates::AtCommit;
    let planned = gateway
        .transact(|| {
            let planned = plan(gateway, trace, admitted, message_id, account, duplicates);
            duplicates = Duplicates::LookUp;
            planned.map(Plan::decision)
        })
        .await;
    let plan = match planned {
        Ok((plan, _)) => plan,
        Err(verdict) => {
            let result = if verdict.is_deferred() {
                "deferred"
            } else {
                "rejected"
            };
            return (verdict, result);
        }
    };
    if plan.duplicate {
        return (Verdict::Accepted("already delivered".into()), "duplicate");
    }
    let verdict = verdict_of(&plan.reports);
    let result = if plan
        .reports
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Applied | Outcome::Kept))
    {
        "accepted"
    } else if verdict.is_accepted() {
        "ignored"
    } else {
        "rejected"
    };
    (verdict, result)
}

/// What a message would do for each recipient, decided exactly as a delivery would be,
/// with nothing committed (`imipd explain`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Explanation {
    /// The recipient.
    pub recipient: String,
    /// The address the guard judged: the header From (Sender is never believed).
    pub author: Option<String>,
    /// The reply a delivery would get now.
    pub reply: String,
    /// One report per calendar part.
    pub parts: Vec<PartReport>,
}

/// Explains a message for each recipient without changing anything.
pub fn explain(gateway: &Gateway, mail: &InboundMail, recipients: &[Mailbox]) -> Vec<Explanation> {
    let explained = |recipient: &Mailbox, verdict: Verdict, parts: Vec<PartReport>| Explanation {
        recipient: recipient.to_string(),
        author: mail.authors.first().cloned(),
        reply: verdict.reply(),
        parts,
    };
    let admission = guard::admit(gateway, mail);
    recipients
        .iter()
        .map(|recipient| {
            let Some(account) = gateway.account_for(recipient.as_str()) else {
                return explained(recipient, Verdict::unknown_user(recipient), Vec::new());
            };
            let admitted = match &admission {
                Err(refusal) => {
                    return explained(recipient, refusal.verdict().clone(), Vec::new());
                }
                Ok(None) => {
                    let verdict = Verdict::Accepted("no scheduling message, nothing to do".into());
                    return explained(recipient, verdict, Vec::new());
                }
                Ok(Some(admitted)) => admitted,
            };
            match plan(
                gateway,
                "explain",
                admitted,
                mail.message_id.as_deref(),
                &account,
                Duplicates::LookUp,
            ) {
                Ok(plan) if plan.duplicate => explained(
                    recipient,
                    Verdict::Accepted("already delivered".into()),
                    Vec::new(),
                ),
                Ok(plan) => explained(recipient, verdict_of(&plan.reports), plan.reports),
                Err(verdict) => explained(recipient, verdict, Vec::new()),
            }
        })
        .collect()
}

/// Message-ID, recipient and calendar content: the same message delivered again.
fn delivery_key(message_id: &str, account: &str, parts: &[Part]) -> Vec<u8> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.text.bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{message_id}\0{account}\0{hash:016x}").into_bytes()
}
