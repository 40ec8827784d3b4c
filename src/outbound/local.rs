//! Delivery to a recipient with an account here: the message goes through the engine, as
//! received mail would, with no mail at all.

use super::notices;
use super::queue::{self, Outcome};
use crate::gateway::{Decision, Gateway};
use crate::itip::{self, Calendar, ErrorClass, ItipError, Received, ScheduleStatus};
use crate::store::{Change, Expect, OutboundMessage, Tag};

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
    let addresses = gateway.addresses(account);
    let delivered = gateway
        .transact(|| {
            let current = gateway.store.get(account, &message.uid)?;
            let copy = current.as_ref().and_then(|c| Calendar::parse(&c.text).ok());
            let ctx = gateway.context(&addresses);
            let Received {
                stored,
                responses,
                proposal,
                ..
            } = itip::receive(&ctx, &sender, copy.as_ref(), &calendar).map_err(refusal)?;
            let mut changes = Vec::new();
            if let (Some(before), Some(after)) = (&copy, &stored)
                && message.method == "REPLY"
                && itip::organizes(&ctx, before)
            {
                notices::after_answer(gateway, account, &message.uid, before, after, &mut changes);
            }
            if let Some(next) = stored {
                // An answer merged into the organizer's copy keeps its Schedule-Tag.
                let answer =
                    itip::Method::parse(&message.method).is_some_and(|m| !m.is_organizers());
                changes.push(Change::Put {
                    account: account.into(),
                    uid: message.uid.clone(),
                    text: next.to_string(),
                    expect: current
                        .as_ref()
                        .map(|c| Expect::Revision(c.revision))
                        .unwrap_or(Expect::Absent),
                    tag: if answer { Tag::Kept } else { Tag::New },
                });
            }
            queue::enqueue(gateway, &message.trace, account, &responses, &mut changes);
            changes.push(gateway.to_inbox(account, &message.calendar));
            if let Some(proposal) = proposal {
                changes.push(Change::Proposal {
                    account: account.into(),
                    uid: message.uid.clone(),
                    text: proposal.to_string(),
                });
            }
            Ok::<_, Outcome>(Decision::new(changes, ()))
        })
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
