//! Whom an account corresponds with, for `inbound.auto_add = "known"`: the organizers it had
//! objects from and the people it invited or answered. Recorded as the account writes and
//! receives objects (tallies of the store), and gathered once from what a store held before
//! it recorded them, so that turning `known` on does not make every old acquaintance a
//! stranger.

use crate::gateway::{Decision, Gateway};
use crate::itip::{CalAddress, Calendar, Context};
use crate::store::{Change, Count, Marker, StoreError, Tally, Was};
use std::collections::BTreeSet;

/// The changes that record `addresses` as correspondents of `account`, for those not recorded
/// yet.
pub fn newly_known<'a>(
    gateway: &Gateway,
    account: &str,
    addresses: impl IntoIterator<Item = &'a CalAddress>,
) -> Result<Vec<Change>, StoreError> {
    let mut changes = Vec::new();
    let unique: BTreeSet<&CalAddress> = addresses.into_iter().collect();
    for address in unique {
        if gateway
            .store
            .tally(account, Tally::Known, address.as_str())?
            .is_none()
        {
            changes.push(known(account, address, gateway.now()));
        }
    }
    Ok(changes)
}

/// The change that records one correspondent.
fn known(account: &str, address: &CalAddress, now: i64) -> Change {
    Change::Tally {
        account: account.into(),
        tally: Tally::Known,
        address: address.as_str().into(),
        count: Count {
            since: now,
            count: 1,
        },
        // Known once is known: the first of two writes at once may stand.
        was: Was::Anything,
    }
}

/// The correspondents one of an account's objects shows: its organizer when that is someone
/// else, its attendees when the account organizes it.
pub fn of_object(ctx: &Context, calendar: &Calendar) -> BTreeSet<CalAddress> {
    let mut found = BTreeSet::new();
    for component in calendar.scheduling() {
        match component.organizer() {
            Some(organizer) if ctx.is_mine(&organizer) => {
                found.extend(component.attendees().map(|(a, _)| a));
            }
            Some(organizer) => {
                found.insert(organizer);
            }
            None => {}
        }
    }
    found.retain(|a| !ctx.is_mine(a));
    found
}

/// Gathers every account's correspondents from the objects the store holds, once per store
/// (a marker says it was done); how many it recorded. Blocking: the daemon runs it on the
/// blocking pool at start.
pub fn gather(gateway: &Gateway) -> Result<usize, StoreError> {
    if gateway.store.marked(Marker::CorrespondentsGathered)? {
        return Ok(0);
    }
    let mut recorded = 0;
    let mut by_account: std::collections::BTreeMap<String, BTreeSet<CalAddress>> =
        Default::default();
    for (account, _, object) in gateway.store.all()? {
        let Ok(calendar) = Calendar::parse(&object.text) else {
            continue;
        };
        let addresses = gateway.addresses(&account);
        let ctx = gateway.context(&addresses);
        by_account
            .entry(account)
            .or_default()
            .extend(of_object(&ctx, &calendar));
    }
    let runtime = tokio::runtime::Handle::current();
    for (account, addresses) in by_account {
        let changes = newly_known(gateway, &account, &addresses)?;
        recorded += changes.len();
        for batch in changes.chunks(500) {
            let batch = batch.to_vec();
            runtime.block_on(
                gateway.transact(|| Ok::<_, StoreError>(Decision::new(batch.clone(), ()))),
            )?;
        }
    }
    let mark = vec![Change::Mark(Marker::CorrespondentsGathered)];
    runtime.block_on(gateway.transact(|| Ok::<_, StoreError>(Decision::new(mark.clone(), ()))))?;
    Ok(recorded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Account, Config};
    use crate::store::{Expect, SledStore, Store, Tag};
    use std::sync::Arc;

    fn object(uid: &str, lines: &str) -> Change {
        Change::Put {
            account: "alice@example.com".into(),
            uid: uid.into(),
            text: format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
DTSTAMP:20260101T000000Z\r\nDTSTART:20260110T100000Z\r\n{lines}END:VEVENT\r\nEND:VCALENDAR\r\n"
            ),
            expect: Expect::Absent,
            tag: Tag::New,
        }
    }

    /// A store written before correspondents were recorded: gathering finds the organizers
    /// of the account's copies and the attendees of its own meetings, once.
    #[test]
    fn correspondents_are_gathered_once_from_the_objects_held() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        store
            .commit(&[
                object(
                    "theirs",
                    "ORGANIZER:mailto:olga@partner.example\r\nATTENDEE:mailto:alice@example.com\r\n\
ATTENDEE:mailto:eve@partner.example\r\n",
                ),
                object(
                    "mine",
                    "ORGANIZER:mailto:alice@example.com\r\nATTENDEE:mailto:dave@partner.example\r\n",
                ),
            ])
            .unwrap();
        let mut config = Config::default();
        config
            .accounts
            .insert("alice@example.com".into(), Account::default());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let gateway = runtime.block_on(async { Arc::new(Gateway::new(config, store.clone())) });
        let gather_now = || {
            let gateway = gateway.clone();
            let gathering =
                async move { tokio::task::spawn_blocking(move || gather(&gateway)).await };
            runtime.block_on(gathering).unwrap().unwrap()
        };
        assert_eq!(gather_now(), 2);
        assert_eq!(gather_now(), 0, "once per store");
        let known = |a: &str| {
            store
                .tally("alice@example.com", Tally::Known, a)
                .unwrap()
                .is_some()
        };
        assert!(known("olga@partner.example") && known("dave@partner.example"));
        assert!(
            !known("eve@partner.example"),
            "another attendee of someone's meeting"
        );
        assert!(store.marked(Marker::CorrespondentsGathered).unwrap());
    }
}
