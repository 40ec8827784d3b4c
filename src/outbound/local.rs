//! Delivery to a recipient with an account here: the message goes through the engine and the
//! recipient's quotas, as received mail would, with no mail at all.

use super::notices;
use super::queue::{self, Outcome};
use crate::allowance::{Allowance, Origin};
use crate::gateway::{Decision, Gateway};
use crate::itip::{self, CalAddress, Calendar, ErrorClass, ItipError, Received, ScheduleStatus};
use crate::quota::OverQuota;
use crate::store::{Ahead, Change, Expect, OutboundMessage, StoreError, Tag};

/// Applies a message to `account`'s calendar in one durable commit. A queue entry (`entry`)
/// leaves the queue in that commit, and the sender's copy takes the recipient's 1.2 there too
/// (`Outcome::Settled`): settled in a commit of its own, a crash between the two delivered
/// it again (a second schedule inbox item, its answers counted twice).
pub async fn apply(
    gateway: &Gateway,
    entry: Option<u64>,
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
    // The sender's copy in the same account would be written twice in one commit.
    let settles = entry.filter(|_| message.account != account);
    let delivered = gateway
        .transact(|| {
            let mut decision = decide(gateway, account, message, &sender, &calendar)?;
            if let Some(id) = settles {
                decision.changes.extend(settled(gateway, id, message)?);
            }
            Ok::<_, Outcome>(decision)
        })
        .await;
    match delivered {
        Ok(_) => {
            tracing::info!(
                trace = message.trace.as_str(),
                id = entry.unwrap_or_default(),
                account,
                "delivered locally"
            );
            match settles {
                Some(_) => Outcome::Settled(ScheduleStatus::Delivered),
                None => Outcome::Delivered(ScheduleStatus::Delivered),
            }
        }
        Err(outcome) => outcome,
    }
}

/// What settles queue entry `id` as delivered: off the queue, 1.2 in the sender's copy.
fn settled(
    gateway: &Gateway,
    id: u64,
    message: &OutboundMessage,
) -> Result<Vec<Change>, StoreError> {
    let status = queue::status_change(gateway, message, ScheduleStatus::Delivered)?;
    Ok(std::iter::once(Change::Dequeue(id)).chain(status).collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Account, Config};
    use crate::store::{SledStore, Store};
    use crate::writes::{self, Place, Precondition};
    use std::sync::Arc;

    const ALICE: &str = "alice@example.com";
    const BOB: &str = "bob@example.com";

    /// Alice's meeting with Bob, written by her client: the REQUEST to Bob queued.
    async fn queued_invitation(gateway: &Gateway) -> (u64, OutboundMessage) {
        let meeting = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t\r\nBEGIN:VEVENT\r\n\
            UID:meet-1\r\nDTSTAMP:20270101T000000Z\r\nDTSTART:20270110T100000Z\r\n\
            DTEND:20270110T110000Z\r\nSUMMARY:Review\r\nORGANIZER:mailto:alice@example.com\r\n\
            ATTENDEE;RSVP=TRUE:mailto:bob@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let (pre, place) = (Precondition::None, Place::Keep);
        writes::write(gateway, "t", ALICE, None, meeting, &pre, &place)
            .await
            .unwrap();
        let mut queued = gateway.store.outbox().unwrap();
        assert_eq!(queued.len(), 1);
        queued.remove(0)
    }

    /// A delivery to an account here leaves the queue and writes 1.2 into the sender's copy
    /// in its own commit: nothing is left for a second commit that a crash could miss, which
    /// delivered the message again on restart.
    #[tokio::test(flavor = "multi_thread")]
    async fn a_local_delivery_settles_its_queue_entry_in_its_own_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let mut config = Config::default();
        config.accounts.insert(ALICE.into(), Account::default());
        config.accounts.insert(BOB.into(), Account::default());
        let gateway = Gateway::new(config, store);
        let (id, message) = queued_invitation(&gateway).await;

        let outcome = apply(&gateway, Some(id), BOB, &message).await;
        assert_eq!(outcome, Outcome::Settled(ScheduleStatus::Delivered));
        assert!(gateway.store.get(BOB, "meet-1").unwrap().is_some());
        assert!(gateway.store.outbox().unwrap().is_empty(), "still queued");
        let alices = gateway.store.get(ALICE, "meet-1").unwrap().unwrap().text;
        assert!(alices.contains("SCHEDULE-STATUS=1.2"), "{alices}");

        // An answer from a link is queued nowhere: nothing to settle.
        let again = apply(&gateway, None, BOB, &message).await;
        assert_eq!(again, Outcome::Delivered(ScheduleStatus::Delivered));
    }
}
