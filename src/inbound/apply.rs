//! Applying an admitted message to one account's calendar: each part through the engine
//! against the account's copy (later parts see what earlier ones did), what that sends
//! (limited by the loop rules), and one durable commit of it all; and the same decision with
//! nothing committed, for `imipd explain`.

use super::guard::{self, Admitted, Part};
use super::verdict::Verdict;
use crate::config::AutoAdd;
use crate::escape::escaped;
use crate::gateway::{Decision, Gateway};
use crate::itip::{self, Calendar, ErrorClass, ItipMessage, Method, Received};
use crate::mailbox::Mailbox;
use crate::mime::InboundMail;
use crate::outbound::{notices, queue};
use crate::store::{Change, Expect};
use std::collections::BTreeMap;

/// A recipient's copy of one object while a message is applied to it.
struct Draft {
    expect: Expect,
    original: Option<String>,
    calendar: Option<Calendar>,
    matches: Option<String>,
}

/// What one calendar part would do to one account's calendar.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartReport {
    /// METHOD.
    pub method: String,
    /// UID.
    pub uid: String,
    /// The stored copy it matches: its ETag and title, or none.
    pub matches: Option<String>,
    /// True when the engine applied it.
    #[serde(default)]
    pub applied: bool,
    /// The guard's and the engine's decision, with the reason.
    pub verdict: String,
    /// What would change in the store.
    pub change: String,
    /// Messages it would send, as "METHOD to ADDRESS".
    pub sends: Vec<String>,
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

/// Decides what every part does to one account's calendar, without committing anything.
fn plan(
    gateway: &Gateway,
    trace: &str,
    admitted: &Admitted,
    message_id: Option<&str>,
    account: &str,
) -> Result<Plan, Verdict> {
    let addresses = gateway.addresses(account);
    let seen_key = message_id.map(|id| delivery_key(id, account, &admitted.parts));
    if let Some(key) = &seen_key
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
    for part in &admitted.parts {
        let copy = copy_of(gateway, &mut copies, account, &part.uid)?;
        let mut report = PartReport {
            method: part.method.as_str().to_string(),
            uid: part.uid.clone(),
            matches: copy.matches.clone(),
            applied: false,
            verdict: String::new(),
            change: "none".into(),
            sends: Vec::new(),
        };
        if let Some(refusal) = not_added(gateway, admitted, part, copy) {
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
                report.applied = true;
                report.verdict = "applied".into();
            }
            Err(e) if e.class() == ErrorClass::Ignored => {
                report.verdict = format!("ignored, {e}: {}", e.explain());
            }
            Err(e) => return Err(Verdict::for_error(&e)),
        }
        reports.push(report);
    }
    changes.extend(puts(account, &copies));
    if let Some(key) = seen_key {
        changes.push(Change::Seen(key));
    }
    Ok(Plan {
        changes,
        reports,
        duplicate: false,
    })
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
            },
        );
    }
    Ok(copies.get_mut(uid).expect("inserted above"))
}

/// Why an invitation for an object the user lacks is not added (`inbound.auto_add`).
fn not_added(gateway: &Gateway, admitted: &Admitted, part: &Part, copy: &Draft) -> Option<String> {
    let adds = matches!(part.method, Method::Request | Method::Publish | Method::Add);
    let policy = gateway.config.inbound.auto_add;
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
            counter,
        } = received;
        if let Some(next) = stored {
            self.gateway
                .config
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
            report.change = if copy.calendar.is_some() {
                "updates the copy"
            } else {
                "creates the copy"
            }
            .into();
            copy.calendar = Some(next);
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
        if let Some(counter) = counter {
            report.change = "keeps the proposal for the organizer; the copy is unchanged".into();
            changes.push(Change::Counter {
                account: self.account.into(),
                uid: self.part.uid.clone(),
                text: counter.to_string(),
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
        let window = self.gateway.config.outbound.notify_delay.as_secs() as i64;
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
    let planned = gateway
        .transact(|| plan(gateway, trace, admitted, message_id, account).map(Plan::decision))
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
    let notes: Vec<String> = plan
        .reports
        .iter()
        .map(|r| {
            if r.applied {
                format!("{} {}", r.method, r.uid)
            } else {
                r.verdict.clone()
            }
        })
        .collect();
    let verdict = Verdict::Accepted(if notes.is_empty() {
        "delivered".into()
    } else {
        notes.join("; ")
    });
    let applied = plan.reports.iter().any(|r| r.applied);
    (verdict, if applied { "accepted" } else { "ignored" })
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
                account,
            ) {
                Ok(plan) if plan.duplicate => explained(
                    recipient,
                    Verdict::Accepted("already delivered".into()),
                    Vec::new(),
                ),
                Ok(plan) => explained(
                    recipient,
                    Verdict::Accepted("would be delivered".into()),
                    plan.reports,
                ),
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
