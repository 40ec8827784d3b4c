//! Applying an admitted message to one account's calendar: each part through the engine
//! against the account's copy (later parts see what earlier ones did), what that sends
//! (limited by the loop rules), and one durable commit of it all; and the same decision with
//! nothing committed, for `imipd explain`.

use super::guard::{self, Admitted, Part, Unusable};
use super::verdict::Verdict;
use crate::allowance::{self, Allowance, Origin};
use crate::config::{AutoAdd, Cancelled};
use crate::escape::escaped;
use crate::gateway::{Decision, Gateway, Policy};
use crate::itip::{self, Calendar, ErrorClass, ItipMessage, Method, Received};
use crate::mailbox::Mailbox;
use crate::mime::InboundMail;
use crate::outbound::{notices, queue};
use crate::store::{Ahead, Change, Expect, Read, StoreError, Tag, Tally};
use blake2::{Blake2s256, Digest};
use std::collections::BTreeMap;

/// A recipient's copy of one object while a message is applied to it.
struct Draft {
    expect: Expect,
    original: Option<String>,
    calendar: Option<Calendar>,
    /// The copy as the last part that changed it left it, written out (none: no part did).
    text: Option<String>,
    /// Bytes of the copy as it stands (none: no copy), for the account's quota.
    size: Option<usize>,
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
    /// In the schedule inbox only (`inbound.auto_add = "known"` and a stranger's object),
    /// until the user answers it.
    Held,
    /// Over a quota of the account: nothing of it stored (452 4.2.2 when nothing else of the
    /// message was applied).
    OverQuota,
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

/// What a part did when the message counts as taken.
const TAKEN: [Outcome; 3] = [Outcome::Applied, Outcome::Kept, Outcome::Held];

/// True when nothing of the message was taken and a part was over a quota: it is deferred.
fn over_quota_only(reports: &[PartReport]) -> bool {
    let outcome = |o: Outcome| reports.iter().any(|r| r.outcome == o);
    !TAKEN.into_iter().any(outcome) && outcome(Outcome::OverQuota)
}

/// The answer for a message whose parts came to `reports`: accepted when any part was applied
/// or none was refused, each part named; when nothing was applied, deferred (452 4.2.2) when a
/// part was over a quota of the account, refused (550 5.7.1) when a part's sender may not say
/// what it says.
fn verdict_of(reports: &[PartReport]) -> Verdict {
    let notes = reports
        .iter()
        .map(PartReport::note)
        .collect::<Vec<_>>()
        .join("; ");
    let outcome = |o: Outcome| reports.iter().any(|r| r.outcome == o);
    if over_quota_only(reports) {
        Verdict::over_quota(notes)
    } else if !TAKEN.into_iter().any(outcome) && outcome(Outcome::Refused) {
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
    ahead: &Ahead,
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
    let ctx = itip::Context {
        vouched_domain: admitted.author.vouched_domain(),
        ..gateway.context(&addresses)
    };
    let policy = gateway.policy(account);
    let mut allowance = Allowance::new(
        gateway,
        account,
        (&admitted.author.address, Origin::Outside),
        ahead,
    );
    // Later parts see what earlier parts of the same message did.
    let mut copies: BTreeMap<String, Draft> = BTreeMap::new();
    let mut changes = Vec::new();
    let mut reports = Vec::new();
    reports.extend(admitted.unusable.iter().map(unusable_report));
    for part in &admitted.parts {
        let copy = copy_of(gateway, ahead, &mut copies, account, &part.uid)?;
        let step = Step {
            gateway,
            trace,
            account,
            policy: &policy,
            admitted,
            part,
        };
        reports.push(step.run(&ctx, copy, &mut allowance, &mut changes)?);
    }
    reports.sort_by_key(|r| r.index);
    // A message deferred (over a quota: 452) has done nothing, and its delivery is not
    // recorded: recorded, the MTA's retry was taken for a duplicate, answered 250 and lost.
    if over_quota_only(&reports) {
        return Ok(Plan {
            changes: Vec::new(),
            reports,
            duplicate: false,
        });
    }
    changes.extend(
        placed(gateway, account, &policy, &copies).map_err(|e| Verdict::store_unavailable(&e))?,
    );
    changes.extend(puts(account, copies, &policy));
    changes.extend(allowance.changes());
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
    ahead: &Ahead,
    copies: &'a mut BTreeMap<String, Draft>,
    account: &str,
    uid: &str,
) -> Result<&'a mut Draft, Verdict> {
    if !copies.contains_key(uid) {
        let current = match ahead.object(account, uid) {
            Some(current) => current,
            None => gateway
                .store
                .get(account, uid)
                .map_err(|e| Verdict::store_unavailable(&e))?,
        };
        let calendar = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
        let matches = current.as_ref().map(|c| {
            let title = calendar
                .as_ref()
                .and_then(|cal| itip::title_and_start(cal).0)
                .unwrap_or_default();
            format!(
                "{uid} ETag {} {title:?}",
                gateway.tags.etag(account, c.revision)
            )
        });
        copies.insert(
            uid.to_string(),
            Draft {
                expect: current
                    .as_ref()
                    .map(|c| Expect::Revision(c.revision))
                    .unwrap_or(Expect::Absent),
                size: current.as_ref().map(|c| c.text.len()),
                original: current.map(|c| c.text),
                calendar,
                text: None,
                matches,
                rescheduled: false,
            },
        );
    }
    Ok(copies.get_mut(uid).expect("inserted above"))
}

/// Whether a part may make a new object in the account (`inbound.auto_add`).
enum Consent {
    /// Yes, or it makes none.
    Given,
    /// No: dropped, with why.
    Refused(String),
    /// Not without the user: the schedule inbox only, with why.
    Asked(String),
}

/// Whether an invitation for an object the user lacks may be added (`inbound.auto_add`).
fn consent(
    account_policy: &Policy,
    allowance: &mut Allowance,
    admitted: &Admitted,
    part: &Part,
    copy: &Draft,
) -> Result<Consent, crate::store::StoreError> {
    let adds = matches!(part.method, Method::Request | Method::Publish | Method::Add);
    if copy.calendar.is_some() || !adds {
        return Ok(Consent::Given);
    }
    let policy = account_policy.auto_add;
    let refused = || format!("not added: inbound.auto_add = {policy:?} and the user has no copy");
    Ok(match policy {
        AutoAdd::Always => Consent::Given,
        AutoAdd::Authenticated if admitted.author.authenticated => Consent::Given,
        AutoAdd::Authenticated | AutoAdd::Never => Consent::Refused(refused()),
        AutoAdd::Known => {
            let from = allowance::originator(&part.calendar, &admitted.author.address);
            match (allowance.knows(&from)?, part.method) {
                (true, _) => Consent::Given,
                // An ADD of a stranger's asks him for nothing.
                (false, Method::Add) => Consent::Refused(refused()),
                (false, _) => Consent::Asked(format!(
                    "in the schedule inbox only: inbound.auto_add = known and {from} is no \
                     correspondent of the account; it enters the calendar when the user answers"
                )),
            }
        }
    })
}

/// The copies a message changed, to be stored; a copy its organizer cancelled whole is removed
/// instead where the account says so (`accounts."ADDRESS".cancelled = "remove"`). A copy no
/// part changed is not written again, even where this build would write it otherwise.
fn puts(account: &str, copies: BTreeMap<String, Draft>, policy: &Policy) -> Vec<Change> {
    copies
        .into_iter()
        .filter_map(|(uid, copy)| {
            let text = copy.text?;
            if copy.original.as_deref() == Some(text.as_str()) {
                return None;
            }
            let calendar = copy.calendar.as_ref()?;
            let cancelled = calendar.scheduling().all(itip::Component::is_cancelled);
            if policy.cancelled == Cancelled::Remove && cancelled && copy.original.is_some() {
                return Some(Change::Delete {
                    account: account.into(),
                    uid,
                    expect: copy.expect,
                });
            }
            Some(Change::Put {
                account: account.into(),
                uid,
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

/// New copies into the calendar the account has new invitations go to
/// (`accounts."ADDRESS".invitations_calendar`), when it has that calendar.
fn placed(
    gateway: &Gateway,
    account: &str,
    policy: &Policy,
    copies: &BTreeMap<String, Draft>,
) -> Result<Vec<Change>, crate::store::StoreError> {
    let Some(calendar) = &policy.invitations_calendar else {
        return Ok(Vec::new());
    };
    let new: Vec<&String> = (copies.iter())
        .filter(|(_, copy)| copy.original.is_none() && copy.calendar.is_some())
        .map(|(uid, _)| uid)
        .collect();
    if new.is_empty() || !gateway.store.calendars(account)?.contains(calendar) {
        return Ok(Vec::new());
    }
    Ok(new
        .into_iter()
        .map(|uid| Change::Place {
            account: account.into(),
            uid: uid.clone(),
            calendar: Some(calendar.clone()),
        })
        .collect())
}

/// One part applied to one account's copy.
struct Step<'a> {
    gateway: &'a Gateway,
    trace: &'a str,
    account: &'a str,
    policy: &'a Policy,
    admitted: &'a Admitted,
    part: &'a Part,
}

impl Step<'_> {
    /// The part past consent, through the engine against the account's copy, and what that
    /// comes to.
    fn run(
        &self,
        ctx: &itip::Context,
        copy: &mut Draft,
        allowance: &mut Allowance,
        changes: &mut Vec<Change>,
    ) -> Result<PartReport, Verdict> {
        let part = self.part;
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
        let consented = consent(self.policy, allowance, self.admitted, part, copy)
            .map_err(|e| Verdict::store_unavailable(&e))?;
        match consented {
            Consent::Given => {}
            Consent::Refused(why) => {
                report.outcome = Outcome::NotAdded;
                report.verdict = why;
                return Ok(report);
            }
            Consent::Asked(why) => {
                report.outcome = Outcome::Held;
                report.verdict = why;
                report.change = "puts it in the schedule inbox only".into();
                changes.push(self.gateway.to_inbox(self.account, &part.text));
                return Ok(report);
            }
        }
        let sender = &self.admitted.author.address;
        match itip::receive(ctx, sender, copy.calendar.as_ref(), &part.calendar) {
            Ok(received) => {
                self.apply(copy, received, allowance, changes, &mut report)?;
                // What was applied or kept shows in the schedule inbox too, for clients.
                if matches!(report.outcome, Outcome::Applied | Outcome::Kept) {
                    changes.push(self.gateway.to_inbox(self.account, &part.text));
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
        Ok(report)
    }

    /// Records what the engine decided: the new copy, the answers it sends, a proposal kept;
    /// nothing of it when it is over a quota.
    fn apply(
        &self,
        copy: &mut Draft,
        received: Received,
        allowance: &mut Allowance,
        changes: &mut Vec<Change>,
        report: &mut PartReport,
    ) -> Result<(), Verdict> {
        let unavailable = |e: crate::store::StoreError| Verdict::store_unavailable(&e);
        let Received {
            stored,
            responses,
            proposal,
            forwarded_by,
        } = received;
        let kept = match &proposal {
            Some(proposal) => match allowance.proposal(&self.part.uid, proposal) {
                Ok(Ok(kept)) => kept,
                Ok(Err(over)) => {
                    over_quota(report, &over);
                    return Ok(());
                }
                Err(e) => return Err(unavailable(e)),
            },
            None => Vec::new(),
        };
        // Written out once: its size counts against the quotas, and it is what is stored.
        let mut written = None;
        if let Some(next) = &stored {
            let text = next.to_string();
            let size = text.len();
            self.gateway
                .config()
                .limits
                .check(size, next)
                .map_err(Verdict::too_large)?;
            if let Err(over) = allowance.copy(copy.size, size).map_err(unavailable)? {
                over_quota(report, &over);
                return Ok(());
            }
            copy.size = Some(size);
            written = Some(text);
            if copy.calendar.is_none() {
                let from = allowance::originator(next, &self.admitted.author.address);
                allowance.make_known(&from).map_err(unavailable)?;
            }
        }
        if let Some(next) = stored {
            // Also for Auto-Submitted answers (Cyrus's, imipd's): RFC 3834 forbids answering
            // their sender, not telling the other attendees (RFC 6638 4.2).
            if let Some(before) = &copy.calendar
                && self.part.method == Method::Reply
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
            copy.text = written;
            copy.rescheduled |= self.part.method.is_organizers();
        }
        let answers = self.answers(responses, allowance, changes)?;
        report.sends = answers
            .iter()
            .flat_map(|m| {
                m.to.iter()
                    .map(move |to| format!("{} to {to}", m.method.as_str()))
            })
            .collect();
        queue::enqueue(self.gateway, self.trace, self.account, &answers, changes);
        if proposal.is_some() {
            report.outcome = Outcome::Kept;
            report.verdict = "kept for the organizer to decide on".into();
            report.change = "keeps it for the organizer to decide on; the copy is unchanged".into();
            changes.extend(kept);
        }
        Ok(())
    }

    /// The engine's answers that may go out: none to Auto-Submitted mail (RFC 3834), at most
    /// one automatic message per outside address and account per `outbound.notify_delay`
    /// (a forged sender must not make imipd mail its victim over and over), and one REFRESH
    /// answer per attendee and object per `outbound.notify_delay`, so that two automatons
    /// cannot keep each other busy.
    fn answers(
        &self,
        responses: Vec<ItipMessage>,
        allowance: &mut Allowance,
        changes: &mut Vec<Change>,
    ) -> Result<Vec<ItipMessage>, Verdict> {
        if self.admitted.author.auto_submitted {
            if !responses.is_empty() {
                tracing::info!(trace = self.trace, uid = %escaped(&self.part.uid), "Auto-Submitted message: applied, nothing sent in answer");
            }
            return Ok(Vec::new());
        }
        let responses = match self.part.method {
            Method::Refresh => self.unanswered_refreshes(responses, changes)?,
            _ => responses,
        };
        self.within_echo(responses, allowance)
    }

    /// The answers to a REFRESH that go out: one per attendee and object per
    /// `outbound.notify_delay`.
    fn unanswered_refreshes(
        &self,
        responses: Vec<ItipMessage>,
        changes: &mut Vec<Change>,
    ) -> Result<Vec<ItipMessage>, Verdict> {
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

    /// The messages with only the recipients an automatic message may go to now.
    fn within_echo(
        &self,
        mut responses: Vec<ItipMessage>,
        allowance: &mut Allowance,
    ) -> Result<Vec<ItipMessage>, Verdict> {
        for response in &mut responses {
            let mut allowed = Vec::new();
            for to in response.to.drain(..) {
                match allowance.echo(&to) {
                    Ok(true) => allowed.push(to),
                    Ok(false) => {
                        tracing::info!(trace = self.trace, uid = %escaped(&self.part.uid), to = %escaped(to.as_str()), "an automatic message went to this address within outbound.notify_delay: not another")
                    }
                    Err(e) => return Err(Verdict::store_unavailable(&e)),
                }
            }
            response.to = allowed;
        }
        responses.retain(|r| !r.to.is_empty());
        Ok(responses)
    }
}

/// A part over a quota of the account: reported so, nothing of it kept.
fn over_quota(report: &mut PartReport, over: &crate::quota::OverQuota) {
    report.outcome = Outcome::OverQuota;
    report.verdict = format!("not stored, over quota (452 4.2.2): {over}");
    report.change = "none: over quota".into();
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
    let mut ahead = match read_ahead(gateway, admitted, account).await {
        Ok(ahead) => Some(ahead),
        Err(e) => return (Verdict::store_unavailable(&e), "deferred"),
    };
    let planned = gateway
        .transact(|| {
            // A decision made again after a conflict reads afresh.
            let ahead = ahead.take().unwrap_or_default();
            let planned = plan(
                gateway, trace, admitted, message_id, account, duplicates, &ahead,
            );
            if ahead.missed() > 0 && gateway.store.reads_ahead() {
                tracing::debug!(trace, missed = ahead.missed(), "reads not made ahead");
            }
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

/// What the decision on a message for one account reads: its copies of the parts' objects,
/// what the account holds and the tallies a new object meets (its sender's allowance, whether
/// its originator is a correspondent). Asked for together where the store gains by it (a
/// database: one round trip instead of three), not at all where it does not.
async fn read_ahead(
    gateway: &Gateway,
    admitted: &Admitted,
    account: &str,
) -> Result<Ahead, StoreError> {
    if !gateway.store.reads_ahead() {
        return Ok(Ahead::default());
    }
    gateway.store.read_ahead(reads_for(admitted, account)).await
}

fn reads_for(admitted: &Admitted, account: &str) -> Vec<Read> {
    let sender = &admitted.author.address;
    let tally = |tally: Tally, address: &itip::CalAddress| Read::Tally {
        account: account.into(),
        tally,
        address: address.as_str().into(),
    };
    let mut reads = vec![
        Read::Usage {
            account: account.into(),
        },
        tally(Tally::NewFrom, sender),
    ];
    let mut originators = std::collections::BTreeSet::new();
    for part in &admitted.parts {
        let object = Read::Object {
            account: account.into(),
            uid: part.uid.clone(),
        };
        if !reads.contains(&object) {
            reads.push(object);
        }
        originators.insert(allowance::originator(&part.calendar, sender));
    }
    reads.extend(originators.iter().map(|o| tally(Tally::Known, o)));
    reads
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
                &Ahead::default(),
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

/// Message-ID, recipient and calendar content: the same message delivered again. Kept as a
/// digest of 16 bytes: the delivery record is kept twice (by key, and by time for expiry), and
/// with the Message-ID in it took 190 bytes a delivery; and a stranger who picks a
/// Message-ID cannot make a message whose key is another's (which the 64-bit FNV hash of the
/// parts it replaced did not rule out).
fn delivery_key(message_id: &str, account: &str, parts: &[Part]) -> Vec<u8> {
    let mut hasher = Blake2s256::new();
    let fields = [message_id, account]
        .into_iter()
        .chain(parts.iter().map(|p| p.text.as_str()));
    for field in fields {
        // Each field's length first: ("ab", "c") and ("a", "bc") differ.
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.finalize()[..16].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Account, Config};
    use crate::store::{Count, Found, SledStore, Store, Usage};
    use std::sync::Arc;

    const BOB: &str = "bob@example.com";

    fn mail(from: &str, method: &str, message_id: &str, event: &str) -> InboundMail {
        let raw = format!(
            "From: {from}\r\nTo: {BOB}\r\nSubject: s\r\nMessage-ID: <{message_id}>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/calendar; method={method}; charset=utf-8\r\n\r\n\
BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nMETHOD:{method}\r\nBEGIN:VEVENT\r\n\
DTSTAMP:20270101T000000Z\r\nDTSTART:20270110T100000Z\r\nDTEND:20270110T110000Z\r\n{event}\
END:VEVENT\r\nEND:VCALENDAR\r\n"
        );
        crate::mime::extract(raw.as_bytes())
    }

    fn olgas(sequence: u32) -> String {
        format!(
            "UID:olga-1\r\nSEQUENCE:{sequence}\r\nSUMMARY:Review\r\n\
ORGANIZER:mailto:olga@partner.example\r\nATTENDEE;RSVP=TRUE:mailto:{BOB}\r\n"
        )
    }

    fn gateway(policy: AutoAdd) -> (tempfile::TempDir, Gateway) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut config = Config::default();
        config.accounts.insert(BOB.into(), Account::default());
        config.inbound.auto_add = policy;
        (dir, Gateway::new(config, store))
    }

    /// The message as the guard admits it to Bob's account.
    fn admitted(gateway: &Gateway, mail: &InboundMail) -> (Admitted, String) {
        let admitted = guard::admit(gateway, mail).ok().flatten();
        let account = gateway.account_for(BOB).unwrap();
        (admitted.expect("admitted"), account)
    }

    /// The plan a delivery makes with these reads ahead.
    fn decide(gateway: &Gateway, admitted: &Admitted, account: &str, ahead: &Ahead) -> Plan {
        let plan = plan(
            gateway,
            "t",
            admitted,
            None,
            account,
            Duplicates::AtCommit,
            ahead,
        );
        plan.unwrap_or_else(|v| panic!("{}", v.reply()))
    }

    /// Reads what a delivery reads ahead, decides on it and commits the decision; returns
    /// how many reads the decision had to make itself.
    async fn delivered(gateway: &Gateway, mail: &InboundMail) -> usize {
        let (admitted, account) = admitted(gateway, mail);
        let reads = reads_for(&admitted, &account);
        let ahead = gateway.store.read_ahead(reads).await.unwrap();
        let plan = decide(gateway, &admitted, &account, &ahead);
        assert!(!plan.changes.is_empty(), "{:?}", plan.reports);
        gateway.store.commit(&plan.changes).unwrap();
        ahead.missed()
    }

    fn part(text: &str) -> Part {
        Part {
            index: 1,
            method: Method::Request,
            uid: "u".into(),
            text: text.into(),
            calendar: Calendar::parse(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t\r\nBEGIN:VEVENT\r\n\
                 UID:u\r\nDTSTAMP:20270101T000000Z\r\nDTSTART:20270101T100000Z\r\n\
                 END:VEVENT\r\nEND:VCALENDAR\r\n",
            )
            .unwrap(),
        }
    }

    /// A delivery is recorded under 16 bytes, whatever the Message-ID's length, and each
    /// field counts apart: moving bytes from one to the next makes another key.
    #[test]
    fn a_delivery_key_is_a_digest_of_its_fields() {
        let long = "x".repeat(900);
        let key = delivery_key(&long, BOB, &[part("BEGIN:VCALENDAR")]);
        assert_eq!(key.len(), 16);
        assert_eq!(key, delivery_key(&long, BOB, &[part("BEGIN:VCALENDAR")]));
        let keys = [
            delivery_key("ab", "c", &[part("d")]),
            delivery_key("a", "bc", &[part("d")]),
            delivery_key("a", "b", &[part("cd")]),
            delivery_key("a", "b", &[part("c"), part("d")]),
            delivery_key("ab", "c", &[part("e")]),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    /// A stranger's invitation, its update and an answer to the account's own meeting are
    /// decided on what was read ahead: on PostgreSQL one round trip before the commit, where
    /// the decision meeting each read alone took three (issue 24).
    #[tokio::test]
    async fn a_delivery_decides_on_what_it_read_ahead() {
        for policy in [AutoAdd::Always, AutoAdd::Known] {
            let (_dir, gateway) = gateway(policy);
            let olga = "Olga <olga@partner.example>";
            let invitation = mail(olga, "REQUEST", "1@partner.example", &olgas(0));
            assert_eq!(delivered(&gateway, &invitation).await, 0, "{policy:?}");
            let update = mail(olga, "REQUEST", "2@partner.example", &olgas(1));
            assert_eq!(delivered(&gateway, &update).await, 0, "{policy:?}");
        }
        let (_dir, gateway) = gateway(AutoAdd::Always);
        let own = "UID:own-1\r\nSEQUENCE:0\r\nSUMMARY:Plan\r\nORGANIZER:mailto:bob@example.com\r\n\
ATTENDEE;RSVP=TRUE:mailto:carol@partner.example\r\n";
        let created = gateway.store.commit(&[Change::Put {
            account: gateway.account_for(BOB).unwrap(),
            uid: "own-1".into(),
            text: format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n\
DTSTAMP:20270101T000000Z\r\nDTSTART:20270110T100000Z\r\nDTEND:20270110T110000Z\r\n{own}\
END:VEVENT\r\nEND:VCALENDAR\r\n"
            ),
            expect: Expect::Absent,
            tag: Tag::New,
        }]);
        created.unwrap();
        let answer = own.replace("RSVP=TRUE", "PARTSTAT=ACCEPTED");
        let reply = mail(
            "carol@partner.example",
            "REPLY",
            "3@partner.example",
            &answer,
        );
        assert_eq!(delivered(&gateway, &reply).await, 0);
    }

    /// The decision on what the reads ahead found, not on the store.
    fn decided_on(gateway: &Gateway, mail: &InboundMail, found: Vec<(Read, Found)>) -> Plan {
        let (admitted, account) = admitted(gateway, mail);
        let (reads, found) = found.into_iter().unzip();
        decide(gateway, &admitted, &account, &Ahead::of(reads, found))
    }

    /// What was read ahead is what the decision goes by: an account at its quota, a sender
    /// past his allowance, a correspondent, a copy already there.
    #[tokio::test]
    async fn the_decision_goes_by_what_was_read_ahead() {
        let (_dir, gateway) = gateway(AutoAdd::Always);
        let (_other, asking) = self::gateway(AutoAdd::Known);
        let account = gateway.account_for(BOB).unwrap();
        let limits = gateway.config().limits.clone();
        let olga = crate::itip::CalAddress::from_email("olga@partner.example").unwrap();
        let usage = |objects: usize| {
            let usage = Usage {
                objects: objects as u64,
                bytes: 0,
            };
            let read = Read::Usage {
                account: account.clone(),
            };
            (read, Found::Usage(usage))
        };
        let tally = |tally: Tally, count: Option<usize>| {
            let read = Read::Tally {
                account: account.clone(),
                tally,
                address: olga.as_str().into(),
            };
            let count = count.map(|count| Count {
                since: gateway.now(),
                count: count as u32,
            });
            (read, Found::Tally(count))
        };
        let outcome = |plan: &Plan| plan.reports[0].outcome;
        let invitation = mail("olga@partner.example", "REQUEST", "1@p", &olgas(0));

        let full = decided_on(&gateway, &invitation, vec![usage(limits.max_objects)]);
        assert_eq!(outcome(&full), Outcome::OverQuota);
        let past = tally(Tally::NewFrom, Some(limits.max_new_per_sender));
        let allowance = decided_on(&gateway, &invitation, vec![usage(0), past]);
        assert_eq!(outcome(&allowance), Outcome::OverQuota);
        let stranger = decided_on(&asking, &invitation, vec![tally(Tally::Known, None)]);
        assert_eq!(outcome(&stranger), Outcome::Held);
        let known = decided_on(&asking, &invitation, vec![tally(Tally::Known, Some(1))]);
        assert_eq!(outcome(&known), Outcome::Applied);

        let copy = crate::store::StoredObject {
            revision: 7,
            schedule_tag: 7,
            text: Calendar::parse(&invitation.parts[0].text)
                .unwrap()
                .to_string(),
        };
        let read = Read::Object {
            account: account.clone(),
            uid: "olga-1".into(),
        };
        let update = mail("olga@partner.example", "REQUEST", "2@p", &olgas(1));
        let updated = decided_on(&gateway, &update, vec![(read, Found::Object(Some(copy)))]);
        let expects: Vec<_> = updated
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Put { expect, .. } => Some(*expect),
                _ => None,
            })
            .collect();
        assert_eq!(expects, [Expect::Revision(7)]);
    }
}
