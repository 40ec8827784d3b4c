//! Delivery to a recipient with an account here: the message goes through the engine and the
//! recipient's quotas, as received mail would, with no mail at all.

use super::notices;
use super::queue::{self, Outcome};
use crate::allowance::{Allowance, Origin};
use crate::gateway::{Decision, Gateway};
use crate::itip::{self, CalAddress, Calendar, ErrorClass, ItipError, Received, ScheduleStatus};
use crate::quota::OverQuota;
use crate::store::{Ahead, Change, Expect, OutboundMessage, Tag};

/// Applies a queued message to `account`'s calendar in one durable commit.
pub async fn apply(
    gateway: &Gateway,
    id: u64,
    account: &str,
    message: &OutboundMessage,
) -> Outcome {
    let Ok(calendar) = Calendar::parse(&message.calendar) else {
        return Outcome::Failed(
            ScheduleStatus::NotDelivered,
            "the queued message does not parse".into(),
        );
    };
    let sender = message.from.cal_address();
    let delivered = gateway
        .transact(|| decide(gateway, account, message, &sender, &calendar))
        .await;
    match delivered {
        Ok(_) => {
            tracing::info!(
                trace = message.trace.as_str(),
                id,
                account,
                "delivered locally"
            );
            Outcome::Delivered(ScheduleStatus::Delivered)
        }
        Err(outcome) => outcome,
    }
}

/// What `message` does to `account`'s calendar, within the account's quotas as mail from
/// outside is: another account must not fill it past them, nor keep answers without bound.
fn decide(
    gateway: &Gateway,
    account: &str,
    message: &OutboundMessage,
    sender: &CalAddress,
    calendar: &Calendar,
) -> Result<Decision<()>, Outcome> {
    let current = gateway.store.get(account, &message.uid)?;
    let copy = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
    let addresses = gateway.addresses(account);
    let ctx = gateway.context(&addresses);
    let Received {
        stored,
        responses,
        proposal,
        ..
    } = itip::receive(&ctx, sender, copy.as_ref(), calendar).map_err(refusal)?;
    let nothing_ahead = Ahead::default();
    let mut allowance = Allowance::new(gateway, account, (sender, Origin::Account), &nothing_ahead);
    let mut changes = Vec::new();
    if let Some(proposal) = &proposal {
        changes.extend(
            allowance
                .proposal(&message.uid, proposal)?
                .map_err(deferred)?,
        );
    }
    if let Some(next) = stored {
        let text = next.to_string();
        gateway
            .config()
            .limits
            .check(text.len(), &next)
            .map_err(|why| Outcome::Failed(ScheduleStatus::NotDelivered, why))?;
        let before = current.as_ref().map(|c| c.text.len());
        allowance.copy(before, text.len())?.map_err(deferred)?;
        if let Some(before) = &copy
            && message.method == "REPLY"
            && itip::organizes(&ctx, before)
        {
            notices::after_answer(gateway, account, &message.uid, before, &next, &mut changes);
        }
        // An answer merged into the organizer's copy keeps its Schedule-Tag.
        let answer = itip::Method::parse(&message.method).is_some_and(|m| !m.is_organizers());
        changes.push(Change::Put {
            account: account.into(),
            uid: message.uid.clone(),
            text,
            expect: current
                .as_ref()
                .map(|c| Expect::Revision(c.revision))
                .unwrap_or(Expect::Absent),
            tag: if answer { Tag::Kept } else { Tag::New },
        });
    }
    queue::enqueue(gateway, &message.trace, account, &responses, &mut changes);
    changes.push(gateway.to_inbox(account, &message.calendar));
    changes.extend(allowance.changes());
    Ok(Decision::new(changes, ()))
}

/// A message over one of the recipient's quotas waits in the queue, as mail from outside is
/// deferred (452 4.2.2): it goes in once there is room, or fails when the queue gives up.
fn deferred(over: OverQuota) -> Outcome {
    Outcome::Retry(format!("over quota (4.2.2): {over}"))
}

/// What the recipient's calendar refusing a message means for its sender: stale or pointless
/// ones count as delivered.
fn refusal(error: ItipError) -> Outcome {
    match error.class() {
        ErrorClass::Ignored | ErrorClass::NotConcerned => {
            Outcome::Delivered(ScheduleStatus::Delivered)
        }
        ErrorClass::Forbidden => Outcome::Failed(ScheduleStatus::PolicyRefused, error.to_string()),
        ErrorClass::Malformed => Outcome::Failed(ScheduleStatus::NotDelivered, error.to_string()),
    }
}
