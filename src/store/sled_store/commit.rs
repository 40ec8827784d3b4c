//! A commit of the sled store: what needs no decision (ids, scans) is done first, then each
//! change is applied with the function of its kind to a `Staging` of the trees, which is
//! written whole (`staged`), one commit at a time.

use super::keys::{
    Head, InboxHeld, NAME_OF, NAMED, change_key, count_of, count_value, inbox_held_key, inbox_of,
    inbox_value, member_key, name_key, notice_value, object_key, seen_time_key, sent_value,
    tally_key, usage_of, usage_value,
};
use super::staged::{Staged, Staging};
use super::{Trees, unavailable};
use crate::store::{CalendarWas, Change, Count, Expect, OutboundMessage, StoreError, Tag, Was};
use std::collections::BTreeMap;

/// A step of a commit: done, or why the commit writes nothing.
type Step = Result<(), StoreError>;

/// The COUNTER proposals and REFRESH times kept for an object, which go with it.
struct KeptFor {
    proposals: Vec<sled::IVec>,
    refreshes: Vec<sled::IVec>,
}

/// What a commit takes or scans for before it stages its changes.
struct Prepared {
    /// One id per change (a change's id is its object's revision, its inbox item's key).
    ids: Vec<u64>,
    /// The oldest inbox items that make room for the new ones: account and id.
    trimmed: Vec<(String, u64)>,
    /// What is kept for the object of each removal, by the removal's index.
    kept_for: BTreeMap<usize, KeptFor>,
}

impl Trees {
    pub(super) fn commit(&self, changes: &[Change]) -> Result<Vec<u64>, StoreError> {
        crate::store::check_sizes(changes, super::MAX_VALUE)?;
        // One commit at a time: what it decides on stays what it read until it is written.
        let _alone = self.committing.lock().unwrap_or_else(|e| e.into_inner());
        let (staging, ids) = self.stage(changes)?;
        // A commit's first id is its own: the journal record's key.
        let id = ids.first().copied().unwrap_or_default();
        staging.write(&self.journal, &self.texts, id)?;
        Ok(ids)
    }

    /// A commit's writes, decided and staged, and the ids it took.
    fn stage(&self, changes: &[Change]) -> Result<(Staging<'_>, Vec<u64>), StoreError> {
        let prepared = self.prepare(changes)?;
        let staging = Staging::new(self.committed().to_vec());
        let views = Views::of(&staging);
        for (account, id) in &prepared.trimmed {
            views.inbox_item(account, *id, None)?;
        }
        for (at, (change, id)) in changes.iter().zip(&prepared.ids).enumerate() {
            views.apply(change, *id, prepared.kept_for.get(&at))?;
        }
        for change in changes {
            if let Change::Within {
                account,
                objects,
                bytes,
            } = change
            {
                views.within(account, *objects, *bytes)?;
            }
        }
        Ok((staging, prepared.ids))
    }

    /// A commit cut short by a crash right after its journal record was written.
    #[cfg(test)]
    pub(super) fn commit_cut_short(&self, changes: &[Change]) {
        let (staging, ids) = self.stage(changes).unwrap();
        staging.record_only(&self.journal, &self.texts, ids[0]);
    }

    fn prepare(&self, changes: &[Change]) -> Result<Prepared, StoreError> {
        let ids: Vec<u64> = changes
            .iter()
            .map(|_| self.fresh_id())
            .collect::<Result<_, _>>()?;
        Ok(Prepared {
            trimmed: self.trimmed_for(changes)?,
            kept_for: self.kept_for_removed(changes, &ids)?,
            ids,
        })
    }

    /// The inbox items (account, id) that must go so that the new ones fit each account's room.
    fn trimmed_for(&self, changes: &[Change]) -> Result<Vec<(String, u64)>, StoreError> {
        let mut added: BTreeMap<&str, Room> = Default::default();
        for change in changes {
            if let Change::Inbox {
                account,
                text,
                keep,
                keep_bytes,
            } = change
            {
                let room = added.entry(account).or_insert(Room {
                    items: 0,
                    bytes: 0,
                    keep: *keep,
                    keep_bytes: *keep_bytes,
                });
                room.items += 1;
                room.bytes += text.len();
                room.keep = room.keep.min(*keep);
                room.keep_bytes = room.keep_bytes.min(*keep_bytes);
            }
        }
        let mut trimmed = Vec::new();
        for (account, room) in added {
            let held = self
                .usage
                .get(inbox_held_key(account))
                .map_err(unavailable)?;
            let prefix = object_key(account, "");
            // Oldest first, and read only as far as the items that go.
            let oldest = self.inbox.scan_prefix(&prefix).map(|item| {
                let (key, value) = item.map_err(unavailable)?;
                let id = key[prefix.len()..].try_into().map_or(0, u64::from_be_bytes);
                Ok((id, inbox_of(&value).map_or(0, |(_, size)| size)))
            });
            for id in room.oldest_to_drop(InboxHeld::of(held.as_deref()), oldest)? {
                trimmed.push((account.to_owned(), id));
            }
        }
        Ok(trimmed)
    }

    /// What is kept for the object of each removal among these changes, by the change's
    /// index: what the store holds, and what the commit's earlier changes add (a removal
    /// takes everything kept for its object up to it, as PostgreSQL's statements in order do).
    fn kept_for_removed(
        &self,
        changes: &[Change],
        ids: &[u64],
    ) -> Result<BTreeMap<usize, KeptFor>, StoreError> {
        let mut out = BTreeMap::new();
        for (at, change) in changes.iter().enumerate() {
            let Change::Delete { account, uid, .. } = change else {
                continue;
            };
            let prefix = member_key(account, uid, &[]);
            let keys = |tree: &sled::Tree| {
                tree.scan_prefix(&prefix)
                    .keys()
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)
            };
            let mut kept = KeptFor {
                proposals: keys(&self.counters)?,
                refreshes: keys(&self.refreshed)?,
            };
            for (earlier, id) in changes[..at].iter().zip(ids) {
                match earlier {
                    Change::Proposal {
                        account: a, uid: u, ..
                    } if a == account && u == uid => {
                        kept.proposals
                            .push(member_key(a, u, &id.to_be_bytes()).into());
                    }
                    Change::Refreshed {
                        account: a,
                        uid: u,
                        attendee,
                        ..
                    } if a == account && u == uid => {
                        kept.refreshes
                            .push(member_key(a, u, attendee.as_bytes()).into());
                    }
                    _ => {}
                }
            }
            out.insert(at, kept);
        }
        Ok(out)
    }
}

/// The commit's view of each tree, by name.
struct Views<'s, 't> {
    objects: Staged<'s, 't>,
    outbox: Staged<'s, 't>,
    seen: Staged<'s, 't>,
    seen_times: Staged<'s, 't>,
    counters: Staged<'s, 't>,
    sent: Staged<'s, 't>,
    notices: Staged<'s, 't>,
    refreshed: Staged<'s, 't>,
    changes: Staged<'s, 't>,
    latest: Staged<'s, 't>,
    inbox: Staged<'s, 't>,
    properties: Staged<'s, 't>,
    calendars: Staged<'s, 't>,
    placements: Staged<'s, 't>,
    names: Staged<'s, 't>,
    usage: Staged<'s, 't>,
    tallies: Staged<'s, 't>,
    meta: Staged<'s, 't>,
    texts: Staged<'s, 't>,
    staging: &'s Staging<'t>,
}

impl<'s, 't> Views<'s, 't> {
    /// The views of `Trees::committed`, in its order.
    fn of(staging: &'s Staging<'t>) -> Self {
        Views {
            objects: staging.tree(0),
            outbox: staging.tree(1),
            seen: staging.tree(2),
            seen_times: staging.tree(3),
            counters: staging.tree(4),
            sent: staging.tree(5),
            notices: staging.tree(6),
            refreshed: staging.tree(7),
            changes: staging.tree(8),
            latest: staging.tree(9),
            inbox: staging.tree(10),
            properties: staging.tree(11),
            calendars: staging.tree(12),
            placements: staging.tree(13),
            names: staging.tree(14),
            usage: staging.tree(15),
            tallies: staging.tree(16),
            meta: staging.tree(17),
            texts: staging.tree(18),
            staging,
        }
    }

    /// One change, under the id taken for it.
    fn apply(&self, change: &Change, id: u64, kept_for: Option<&KeptFor>) -> Step {
        match change {
            Change::Put {
                account,
                uid,
                text,
                expect,
                tag,
            } => self.put(account, uid, text, expect, *tag, id),
            Change::Delete {
                account,
                uid,
                expect,
            } => {
                self.delete(account, uid, expect, id)?;
                kept_for.map_or(Ok(()), |kept| self.forget_kept(kept))
            }
            Change::Inbox { account, text, .. } => self.inbox_item(account, id, Some(text)),
            Change::InboxRemove { account, id } => self.inbox_item(account, *id, None),
            Change::Calendar {
                account,
                name,
                exists,
            } => self.calendar(account, name, *exists),
            Change::Place {
                account,
                uid,
                calendar,
            } => set(self.placements, object_key(account, uid), calendar.as_ref()),
            Change::Property {
                account,
                calendar,
                name,
                value,
            } => set(
                self.properties,
                member_key(account, calendar, name.as_bytes()),
                value.as_ref(),
            ),
            Change::Name { account, uid, name } => self.name(account, uid, name.as_deref()),
            _ => self.apply_record(change, id),
        }
    }

    /// A change to the queue or to what the store records besides calendars.
    fn apply_record(&self, change: &Change, id: u64) -> Step {
        match change {
            Change::Enqueue(message) => self.queue(id, Some(message)),
            Change::Dequeue(queued) => self.queue(*queued, None),
            Change::Requeue(queued, message) => self.queue(*queued, Some(message)),
            Change::Sent(queued, message, at) => {
                let json = serde_json::to_vec(message).expect("a message serializes");
                set(
                    self.sent,
                    queued.to_be_bytes(),
                    Some(sent_value(*at, &json)),
                )
            }
            Change::ForgetSent(queued) => set(self.sent, queued.to_be_bytes(), None::<&[u8]>),
            Change::Notify {
                account,
                uid,
                due,
                repliers,
            } => self.notify(account, uid, *due, repliers),
            Change::Notified { account, uid } => self.notified(account, uid),
            Change::Refreshed {
                account,
                uid,
                attendee,
                at,
            } => set(
                self.refreshed,
                member_key(account, uid, attendee.as_bytes()),
                Some(at.to_be_bytes()),
            ),
            Change::Seen(key, at) => self.seen(key, *at, id),
            Change::Tally {
                account,
                tally,
                address,
                count,
                was,
            } => self.tally(tally_key(account, *tally, address), *count, *was),
            // Judged once every write of the commit is staged (`stage`).
            Change::Within { .. } => Ok(()),
            Change::ProposalsKept {
                account,
                uid,
                count,
            } => self.proposals_kept(account, uid, *count),
            Change::CalendarAsFound { account, name, was } => {
                self.calendar_as_found(account, name, *was)
            }
            Change::Mark(marker) => set(self.meta, marker.key(), Some([1])),
            Change::Proposal { account, uid, text } => set(
                self.counters,
                member_key(account, uid, &id.to_be_bytes()),
                Some(text),
            ),
            Change::DropProposal { account, uid, id } => set(
                self.counters,
                member_key(account, uid, &id.to_be_bytes()),
                None::<&[u8]>,
            ),
            Change::Put { .. }
            | Change::Delete { .. }
            | Change::Inbox { .. }
            | Change::InboxRemove { .. }
            | Change::Calendar { .. }
            | Change::Place { .. }
            | Change::Property { .. }
            | Change::Name { .. } => unreachable!("applied by `apply`"),
        }
    }

    fn put(
        &self,
        account: &str,
        uid: &str,
        text: &str,
        expect: &Expect,
        tag: Tag,
        id: u64,
    ) -> Step {
        let key = object_key(account, uid);
        let current = self.head(&key)?;
        check(expect, current)?;
        let schedule_tag = match (tag, current) {
            (Tag::Kept, Some(head)) => head.schedule_tag,
            _ => id,
        };
        // The text goes under the change's id, new to `texts`; the head points to it.
        self.staging.put_text(id, text.as_bytes());
        let head = Head {
            revision: id,
            schedule_tag,
            text: id,
            length: text.len() as u64,
        };
        self.objects.insert(key, head.value())?;
        self.forget_text(current)?;
        self.log_change(account, uid, id, false)?;
        self.count(
            account,
            current.map(|h| h.length as usize),
            Some(text.len()),
        )
    }

    fn delete(&self, account: &str, uid: &str, expect: &Expect, id: u64) -> Step {
        let key = object_key(account, uid);
        let current = self.head(&key)?;
        check(expect, current)?;
        self.objects.remove(key)?;
        self.forget_text(current)?;
        self.log_change(account, uid, id, true)?;
        self.count(account, current.map(|h| h.length as usize), None)
    }

    /// What an object's value says of it (its text stays in `texts`).
    fn head(&self, key: &[u8]) -> Result<Option<Head>, StoreError> {
        let value = self.objects.get(key)?;
        Ok(value.as_deref().and_then(Head::of))
    }

    /// The text of an object's replaced or removed version goes.
    fn forget_text(&self, replaced: Option<Head>) -> Step {
        match replaced {
            Some(head) => self.texts.remove(head.text.to_be_bytes()),
            None => Ok(()),
        }
    }

    /// What was kept for a removed object goes with it.
    fn forget_kept(&self, kept: &KeptFor) -> Step {
        for key in &kept.proposals {
            self.counters.remove(key)?;
        }
        for key in &kept.refreshes {
            self.refreshed.remove(key)?;
        }
        Ok(())
    }

    /// Records the latest change of an object, and forgets its previous one.
    fn log_change(&self, account: &str, uid: &str, id: u64, removed: bool) -> Step {
        let object = object_key(account, uid);
        if let Some(previous) = self.latest.get(&object)? {
            self.changes.remove(change_key(account, &previous))?;
        }
        self.latest.insert(object, id.to_be_bytes())?;
        let mut value = vec![u8::from(removed)];
        value.extend_from_slice(uid.as_bytes());
        self.changes
            .insert(change_key(account, &id.to_be_bytes()), value)?;
        Ok(())
    }

    /// Puts (`Some`) or removes the item `id` of an account's schedule inbox (its text under
    /// the same id in `texts`), and counts what the inbox holds: a removal counts only an item
    /// that was there (a client may remove one that a delivery's trimming removed).
    fn inbox_item(&self, account: &str, id: u64, text: Option<&str>) -> Step {
        let key = change_key(account, &id.to_be_bytes());
        let counted = inbox_held_key(account);
        let mut held = InboxHeld::of(self.usage.get(&counted)?.as_deref());
        match text {
            Some(text) => {
                self.staging.put_text(id, text.as_bytes());
                self.inbox.insert(key, inbox_value(id, text.len()))?;
                held = held.with(text.len());
            }
            None => {
                let Some((text, length)) =
                    self.inbox.swap(key, None)?.as_deref().and_then(inbox_of)
                else {
                    return Ok(());
                };
                self.texts.remove(text.to_be_bytes())?;
                held = held.without(length);
            }
        }
        self.usage.insert(counted, held.value())
    }

    /// Adjusts an account's usage for an object that held `before` bytes (none: absent) and
    /// holds `after` (none: removed).
    fn count(&self, account: &str, before: Option<usize>, after: Option<usize>) -> Step {
        let mut held = usage_of(self.usage.get(account.as_bytes())?.as_deref());
        held.objects =
            (held.objects + u64::from(after.is_some())).saturating_sub(u64::from(before.is_some()));
        held.bytes =
            (held.bytes + after.unwrap_or(0) as u64).saturating_sub(before.unwrap_or(0) as u64);
        self.usage.insert(account.as_bytes(), usage_value(held))?;
        Ok(())
    }

    /// A resource name for an object, both ways; the name leaves the object it stood for
    /// before, and the object its previous name.
    fn name(&self, account: &str, uid: &str, name: Option<&str>) -> Step {
        let by_uid = name_key(account, NAME_OF, uid);
        if let Some(old) = self.names.swap(&by_uid, None)? {
            let old = String::from_utf8_lossy(&old);
            self.names.remove(name_key(account, NAMED, &old))?;
        }
        if let Some(name) = name {
            let by_name = name_key(account, NAMED, name);
            if let Some(other) = self.names.swap(by_name, Some(uid.as_bytes()))? {
                let other = String::from_utf8_lossy(&other);
                self.names.remove(name_key(account, NAME_OF, &other))?;
            }
            self.names.insert(by_uid, name.as_bytes())?;
        }
        Ok(())
    }

    /// A queue entry written (new or requeued) or removed.
    fn queue(&self, id: u64, message: Option<&OutboundMessage>) -> Step {
        let value = message.map(|m| serde_json::to_vec(m).expect("a message serializes"));
        set(self.outbox, id.to_be_bytes(), value)
    }

    /// A notice due, with the attendees whose answers it is about (merged with those already
    /// waiting, whose due time stays).
    fn notify(&self, account: &str, uid: &str, due: i64, repliers: &[String]) -> Step {
        let key = object_key(account, uid);
        let (due, mut all) = match self.notices.get(&key)? {
            Some(value) => notice_value(&value).unwrap_or((due, Vec::new())),
            None => (due, Vec::new()),
        };
        for replier in repliers {
            if !all.contains(replier) {
                all.push(replier.clone());
            }
        }
        let mut value = due.to_be_bytes().to_vec();
        value.extend(serde_json::to_vec(&all).expect("strings serialize"));
        self.notices.insert(key, value)?;
        Ok(())
    }

    /// A notice sent; gone meanwhile (sent by another commit), the decision is stale.
    fn notified(&self, account: &str, uid: &str) -> Step {
        match self.notices.swap(object_key(account, uid), None)? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict),
        }
    }

    /// A tally's new state, over the one the decision counted from.
    fn tally(&self, key: Vec<u8>, count: Count, was: Was) -> Step {
        if let Was::Read(read) = was {
            let now = self.tallies.get(&key)?;
            if now.as_deref().and_then(count_of) != read {
                return Err(StoreError::Conflict);
            }
        }
        set(self.tallies, key, Some(count_value(count)))
    }

    /// Whether the account's usage, with the commit's writes, stays within `objects` and
    /// `bytes` (none: not asked).
    fn within(&self, account: &str, objects: Option<u64>, bytes: Option<u64>) -> Step {
        let held = usage_of(self.usage.get(account.as_bytes())?.as_deref());
        let over = |held: u64, most: Option<u64>| most.is_some_and(|most| held > most);
        if over(held.objects, objects) || over(held.bytes, bytes) {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    /// Whether the object holds the `count` proposals its decision counted. The committed
    /// trees are read: commits go one at a time, and this one's own are staged, not there yet.
    fn proposals_kept(&self, account: &str, uid: &str, count: u64) -> Step {
        let kept = self
            .counters
            .committed_prefix_len(&member_key(account, uid, &[]))?;
        if kept != count {
            return Err(StoreError::Conflict);
        }
        Ok(())
    }

    /// Makes or removes a further calendar; a removed one's properties go with it.
    fn calendar(&self, account: &str, name: &str, exists: bool) -> Step {
        if !exists {
            self.properties
                .remove_prefix(&member_key(account, name, &[]))?;
        }
        set(
            self.calendars,
            object_key(account, name),
            exists.then_some(b""),
        )
    }

    /// Whether the account's further calendar `name` is, as committed, what the request
    /// found.
    fn calendar_as_found(&self, account: &str, name: &str, was: CalendarWas) -> Step {
        let there = self
            .calendars
            .committed_contains(&object_key(account, name))?;
        let holds = match was {
            CalendarWas::AbsentBelow(most) => {
                !there
                    && self
                        .calendars
                        .committed_prefix_len(&object_key(account, ""))?
                        < most
            }
            CalendarWas::There => there,
            CalendarWas::Empty => there && !self.holds_objects(account, name)?,
        };
        match holds {
            true => Ok(()),
            false => Err(StoreError::Conflict),
        }
    }

    /// Whether an object of the account is placed in its further calendar `name`, as
    /// committed (a placement outlives its object; a placement's key is its object's).
    fn holds_objects(&self, account: &str, name: &str) -> Result<bool, StoreError> {
        for (key, calendar) in self.placements.committed_prefix(&object_key(account, ""))? {
            if calendar.as_ref() == name.as_bytes() && self.objects.committed_contains(&key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A delivery recorded; recorded meanwhile, the decision runs again and finds it.
    fn seen(&self, key: &[u8], at: i64, id: u64) -> Step {
        if self.seen.swap(key, Some(&id.to_be_bytes()))?.is_some() {
            return Err(StoreError::Conflict);
        }
        self.seen_times.insert(seen_time_key(at, key), [])?;
        Ok(())
    }
}

/// Writes a value under a key, or removes the key.
fn set(tree: Staged, key: impl AsRef<[u8]>, value: Option<impl AsRef<[u8]>>) -> Step {
    match value {
        Some(value) => tree.insert(key, value)?,
        None => tree.remove(key)?,
    };
    Ok(())
}

/// Aborts a commit whose expectation of an object's revision fails.
fn check(expect: &Expect, current: Option<Head>) -> Step {
    let ok = match (expect, current) {
        (Expect::Any, _) => true,
        (Expect::Absent, found) => found.is_none(),
        (Expect::Revision(rev), Some(found)) => found.revision == *rev,
        (Expect::Revision(_), None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict)
    }
}

/// The room a commit's new inbox items of one account need.
struct Room {
    items: usize,
    bytes: usize,
    keep: usize,
    keep_bytes: usize,
}

impl Room {
    /// The ids of the oldest items (`oldest`: id and size, oldest first) that must go so
    /// that what is `held` and the new fit; reads `oldest` no further than that.
    fn oldest_to_drop(
        &self,
        held: InboxHeld,
        oldest: impl Iterator<Item = Result<(u64, usize), StoreError>>,
    ) -> Result<Vec<u64>, StoreError> {
        let mut items = held.items as usize + self.items;
        let mut bytes = held.bytes as usize + self.bytes;
        let mut dropped = Vec::new();
        for item in oldest {
            if items <= self.keep && bytes <= self.keep_bytes {
                break;
            }
            let (id, size) = item?;
            items = items.saturating_sub(1);
            bytes = bytes.saturating_sub(size);
            dropped.push(id);
        }
        Ok(dropped)
    }
}
