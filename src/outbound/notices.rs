//! Telling the other attendees (RFC 6638 section 4.2): when an answer changes a local
//! organizer's object, a notice is kept; once due, the organizer's current object goes once to
//! every attendee, however many answers came in meanwhile.

use super::queue;
use crate::escape::escaped;
use crate::gateway::{Decision, Gateway};
use crate::itip::{self, Calendar};
use crate::store::{Change, Notice, StoreError};

/// After an answer changed an organizer's copy: tell the other attendees after
/// `outbound.notify_delay`, in one batch per object, when configured. An answer that changes no
/// PARTSTAT tells nobody, and who answered is kept so that nobody is told only of its own
/// answer.
pub fn after_answer(
    gateway: &Gateway,
    account: &str,
    uid: &str,
    before: &Calendar,
    after: &Calendar,
    changes: &mut Vec<Change>,
) {
    if !gateway.config().outbound.notify_attendees {
        return;
    }
    let repliers = itip::changed_answers(before, after);
    if repliers.is_empty() {
        return;
    }
    changes.push(Change::Notify {
        account: account.into(),
        uid: uid.into(),
        due: gateway.now() + gateway.config().outbound.notify_delay.as_secs() as i64,
        repliers: repliers.iter().map(|a| a.to_string()).collect(),
    });
}

/// Sends the notices that are due; returns when the next one is.
pub async fn send_due(gateway: &Gateway) -> Result<Option<i64>, StoreError> {
    let mut next_due = None;
    for notice in gateway.store.notices()? {
        if notice.due > gateway.now() {
            next_due = Some(next_due.map_or(notice.due, |d: i64| d.min(notice.due)));
            continue;
        }
        send(gateway, &notice).await?;
    }
    Ok(next_due)
}

/// One notice: the organizer's current object restated to each attendee, but to one whose own
/// answer is all the news.
async fn send(gateway: &Gateway, notice: &Notice) -> Result<(), StoreError> {
    let (account, uid) = (&notice.account, &notice.uid);
    let trace = crate::trace::new_id();
    let addresses = gateway.addresses(account);
    let (queued, _) = gateway
        .transact(|| {
            // Another host sharing the store may have sent it meanwhile.
            let pending = gateway.store.notices()?;
            if !pending
                .iter()
                .any(|n| n.account == *account && n.uid == *uid)
            {
                return Ok(Decision::new(Vec::new(), 0));
            }
            let mut changes = vec![Change::Notified {
                account: account.clone(),
                uid: uid.clone(),
            }];
            let copy = gateway.store.get(account, uid)?;
            let Some(copy) = copy.and_then(|c| Calendar::parse(&c.text).ok()) else {
                return Ok::<_, StoreError>(Decision::new(changes, 0));
            };
            let mut messages = itip::restate(&gateway.context(&addresses), &copy);
            let answered_by: Vec<_> = (notice.repliers.iter())
                .filter_map(|r| itip::CalAddress::parse(r))
                .collect();
            for message in &mut messages {
                message.summary.answered_by = answered_by.clone();
            }
            if !notice.repliers.is_empty() {
                for message in &mut messages {
                    message
                        .to
                        .retain(|to| notice.repliers.iter().any(|r| r != to.as_str()));
                }
            }
            let enqueued = queue::enqueue(gateway, &trace, account, &messages, &mut changes);
            Ok(Decision::new(changes, enqueued.queued))
        })
        .await?;
    tracing::info!(trace, account, uid = %escaped(uid), queued, "told the other attendees");
    Ok(())
}
