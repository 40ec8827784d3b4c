//! Older formats of the sled store brought to this build's, one step at a time.

use super::keys::{
    Head, InboxHeld, change_key, inbox_held_key, inbox_value, inline_of, inline_value,
    seen_time_key, sent_value, usage_value,
};
use super::packed::{is_packed, pack};
use super::{FORMAT, TEXTS, unavailable};
use crate::store::{StoreError, StoredObject, Usage};
use std::collections::BTreeMap;

/// The steps from each older format to the next, applied in order when a store of an older
/// format is opened (`UPGRADES[0]` takes format 1 to 2, and so on). Format 1 is the first.
const UPGRADES: &[Upgrade] = &[
    log_existing_objects,
    date_delivered_and_sent,
    count_usage,
    count_inboxes,
    move_texts,
    pack_texts,
    packed_against_the_dictionary,
];

/// Format 8 may hold texts packed against `packed`'s dictionary, which a build of format 7
/// cannot read: the format is what keeps such a build from opening the store. Texts stored
/// already keep their packing, and are packed against the dictionary when next written or
/// when `imipd compact` copies them.
fn packed_against_the_dictionary(_: &sled::Db) -> Result<(), StoreError> {
    Ok(())
}

/// Format 7 keeps texts compressed (`packed`). A text packed already (an upgrade cut short)
/// is left as it is.
fn pack_texts(db: &sled::Db) -> Result<(), StoreError> {
    let texts = db.open_tree(TEXTS).map_err(unavailable)?;
    for item in texts.iter() {
        let (key, value) = item.map_err(unavailable)?;
        if !is_packed(&value) {
            texts.insert(key, pack(&value)).map_err(unavailable)?;
        }
    }
    Ok(())
}

/// Format 6 keeps objects' and inbox items' texts in `texts`, each under an id of its own,
/// and a head pointing there in their place. A value already moved (an upgrade cut short) is
/// left as it is: a head is 32 bytes and an item's pointer 16, shorter than any iCalendar
/// text (`BEGIN:VCALENDAR` and its line end are 17).
fn move_texts(db: &sled::Db) -> Result<(), StoreError> {
    let texts = db.open_tree(TEXTS).map_err(unavailable)?;
    let objects = db.open_tree("objects").map_err(unavailable)?;
    for item in objects.iter() {
        let (key, value) = item.map_err(unavailable)?;
        let Some(object) = (value.len() != 32).then(|| inline_of(&value)).flatten() else {
            continue;
        };
        let id = db.generate_id().map_err(unavailable)?;
        texts
            .insert(id.to_be_bytes(), object.text.as_bytes())
            .map_err(unavailable)?;
        let head = Head {
            revision: object.revision,
            schedule_tag: object.schedule_tag,
            text: id,
            length: object.text.len() as u64,
        };
        objects.insert(key, head.value()).map_err(unavailable)?;
    }
    let inbox = db.open_tree("inbox").map_err(unavailable)?;
    for item in inbox.iter() {
        let (key, text) = item.map_err(unavailable)?;
        if text.len() == 16 {
            continue;
        }
        let id = db.generate_id().map_err(unavailable)?;
        texts.insert(id.to_be_bytes(), &text).map_err(unavailable)?;
        inbox
            .insert(key, inbox_value(id, text.len()))
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Format 5 counts what each account's schedule inbox holds (items, bytes), so that keeping it
/// bounded does not read it whole on every delivery: a store of format 4 counts its inboxes.
fn count_inboxes(db: &sled::Db) -> Result<(), StoreError> {
    let inbox = db.open_tree("inbox").map_err(unavailable)?;
    let usage = db.open_tree("usage").map_err(unavailable)?;
    let mut counted: BTreeMap<String, InboxHeld> = BTreeMap::new();
    for item in inbox.iter() {
        let (key, value) = item.map_err(unavailable)?;
        let account = key.split(|b| *b == 0).next().unwrap_or_default();
        let held = counted
            .entry(String::from_utf8_lossy(account).into_owned())
            .or_default();
        *held = held.with(value.len());
    }
    for (account, held) in counted {
        usage
            .insert(inbox_held_key(&account), held.value())
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Format 4 keeps what each account holds (objects, bytes) for its quotas: a store of format
/// 3 counts its objects.
fn count_usage(db: &sled::Db) -> Result<(), StoreError> {
    let objects = db.open_tree("objects").map_err(unavailable)?;
    let usage = db.open_tree("usage").map_err(unavailable)?;
    let mut counted: BTreeMap<Vec<u8>, Usage> = BTreeMap::new();
    for item in objects.iter() {
        let (key, value) = item.map_err(unavailable)?;
        let account = key.split(|b| *b == 0).next().unwrap_or_default().to_vec();
        let held = counted.entry(account).or_default();
        held.objects += 1;
        held.bytes += value.len().saturating_sub(16) as u64;
    }
    for (account, held) in counted {
        usage
            .insert(account, usage_value(held))
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Format 3 records when each message was delivered and each sent message relayed, so that
/// they can be forgotten after a while: a store of format 2 dates what it holds to the upgrade.
fn date_delivered_and_sent(db: &sled::Db) -> Result<(), StoreError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let seen = db.open_tree("seen").map_err(unavailable)?;
    let seen_times = db.open_tree("seen_times").map_err(unavailable)?;
    for item in seen.iter() {
        let (key, _) = item.map_err(unavailable)?;
        seen_times
            .insert(seen_time_key(now, &key), &[])
            .map_err(unavailable)?;
    }
    let sent = db.open_tree("sent").map_err(unavailable)?;
    for item in sent.iter() {
        let (key, value) = item.map_err(unavailable)?;
        sent.insert(key, sent_value(now, &value))
            .map_err(unavailable)?;
    }
    Ok(())
}

/// Format 2 keeps a log of each account's changes (for calendar clients' sync) and each
/// object's Schedule-Tag: a store of format 1 starts the log with every object it holds, as
/// written at its revision, and gives each the revision as its tag.
fn log_existing_objects(db: &sled::Db) -> Result<(), StoreError> {
    let objects = db.open_tree("objects").map_err(unavailable)?;
    let changes = db.open_tree("changes").map_err(unavailable)?;
    let latest = db.open_tree("latest").map_err(unavailable)?;
    for item in objects.iter() {
        let (key, value) = item.map_err(unavailable)?;
        // Format 1's value: the revision, then the text.
        let Some((revision, text)) = value.split_at_checked(8) else {
            continue;
        };
        let Ok(text) = std::str::from_utf8(text) else {
            continue;
        };
        let revision = u64::from_be_bytes(revision.try_into().unwrap_or_default());
        objects
            .insert(&key, inline_value(revision, revision, text))
            .map_err(unavailable)?;
        let object = StoredObject {
            revision,
            schedule_tag: revision,
            text: String::new(),
        };
        let mut halves = key.splitn(2, |b| *b == 0);
        let account = String::from_utf8_lossy(halves.next().unwrap_or_default()).into_owned();
        let uid = halves.next().unwrap_or_default();
        let id = object.revision.to_be_bytes();
        latest.insert(&key, &id).map_err(unavailable)?;
        let mut entry = vec![0];
        entry.extend_from_slice(uid);
        changes
            .insert(change_key(&account, &id), entry)
            .map_err(unavailable)?;
    }
    Ok(())
}

/// One step from a format to the next.
type Upgrade = fn(&sled::Db) -> Result<(), StoreError>;

/// The format a store records.
pub(super) fn recorded_format(text: &[u8]) -> Option<u32> {
    std::str::from_utf8(text)
        .ok()?
        .strip_prefix("imipd-")?
        .parse()
        .ok()
}

/// Brings a store of format `found` to this build's, or says why it cannot.
pub(super) fn upgrade(db: &sled::Db, meta: &sled::Tree, found: u32) -> Result<(), StoreError> {
    let refuse = |why: &str| StoreError::Format {
        found: format!("imipd-{found}"),
        expected: format!("imipd-{FORMAT} ({why})"),
    };
    if found > FORMAT {
        return Err(refuse(
            "written by a newer imipd: run that one, or move the data with its export and this one's import",
        ));
    }
    let first = FORMAT - UPGRADES.len() as u32;
    if found < first {
        return Err(refuse("older than any format this imipd can upgrade"));
    }
    for (step, next) in UPGRADES[(found - first) as usize..].iter().zip(found + 1..) {
        step(db)?;
        meta.insert("format", format!("imipd-{next}").as_str())
            .map_err(unavailable)?;
        db.flush().map_err(unavailable)?;
        tracing::warn!(format = next, "store upgraded");
    }
    Ok(())
}
