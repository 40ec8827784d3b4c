//! The keys and values of the sled trees: each built in one place.

use crate::store::{Count, Listed, StoredObject, Tally, Usage};

/// `usage`'s value: objects, then bytes.
pub(super) fn usage_value(usage: Usage) -> Vec<u8> {
    let mut value = usage.objects.to_be_bytes().to_vec();
    value.extend_from_slice(&usage.bytes.to_be_bytes());
    value
}

pub(super) fn usage_of(value: Option<&[u8]>) -> Usage {
    let number = |range: std::ops::Range<usize>| {
        value
            .and_then(|v| v.get(range))
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_be_bytes)
    };
    Usage {
        objects: number(0..8),
        bytes: number(8..16),
    }
}

/// `usage`'s key for what an account's schedule inbox holds: the account, then `\0inbox`
/// (an account name holds no NUL, so it meets no account's own key).
pub(super) fn inbox_held_key(account: &str) -> Vec<u8> {
    let mut key = object_key(account, "");
    key.extend_from_slice(b"inbox");
    key
}

/// What an account's schedule inbox holds, counted in the commits that change it, so that
/// keeping it bounded reads only the items that go.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct InboxHeld {
    pub items: u64,
    pub bytes: u64,
}

impl InboxHeld {
    pub fn value(self) -> Vec<u8> {
        usage_value(Usage {
            objects: self.items,
            bytes: self.bytes,
        })
    }

    pub fn of(value: Option<&[u8]>) -> Self {
        let Usage { objects, bytes } = usage_of(value);
        InboxHeld {
            items: objects,
            bytes,
        }
    }

    /// After an item of `bytes` came in.
    pub fn with(self, bytes: usize) -> Self {
        InboxHeld {
            items: self.items + 1,
            bytes: self.bytes + bytes as u64,
        }
    }

    /// After an item of `bytes` went.
    pub fn without(self, bytes: usize) -> Self {
        InboxHeld {
            items: self.items.saturating_sub(1),
            bytes: self.bytes.saturating_sub(bytes as u64),
        }
    }
}

/// `tallies`' key: the account, the tally, the address.
pub(super) fn tally_key(account: &str, tally: Tally, address: &str) -> Vec<u8> {
    let mut key = object_key(account, "");
    key.push(tally.code());
    key.extend_from_slice(address.as_bytes());
    key
}

/// `tallies`' value: since when, then how many.
pub(super) fn count_value(count: Count) -> Vec<u8> {
    let mut value = count.since.to_be_bytes().to_vec();
    value.extend_from_slice(&count.count.to_be_bytes());
    value
}

pub(super) fn count_of(value: &[u8]) -> Option<Count> {
    Some(Count {
        since: i64::from_be_bytes(value.get(..8)?.try_into().ok()?),
        count: u32::from_be_bytes(value.get(8..12)?.try_into().ok()?),
    })
}

/// `names`' keys: a name, to the UID it stands for.
pub(super) const NAMED: u8 = b'n';
/// `names`' keys: a UID, to its name.
pub(super) const NAME_OF: u8 = b'u';

/// A key of `names`: the account, which way, then the name or UID.
pub(super) fn name_key(account: &str, way: u8, text: &str) -> Vec<u8> {
    let mut key = object_key(account, "");
    key.push(way);
    key.extend_from_slice(text.as_bytes());
    key
}

/// `seen_times`' key: when, then the delivery's key, so that the oldest come first.
pub(super) fn seen_time_key(at: i64, key: &[u8]) -> Vec<u8> {
    let mut out = (at.max(0) as u64).to_be_bytes().to_vec();
    out.extend_from_slice(key);
    out
}

/// `sent`'s value: when the relay took it, then the message as JSON.
pub(super) fn sent_value(at: i64, json: &[u8]) -> Vec<u8> {
    let mut out = at.to_be_bytes().to_vec();
    out.extend_from_slice(json);
    out
}

/// `account \0 uid`: an object's key (of `objects`, `latest`, `placements`, `notices`), or
/// `account \0 name` of a further calendar; `object_key(account, "")` starts every key of
/// the account in the trees keyed by account.
pub(super) fn object_key(account: &str, uid: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(account.len() + uid.len() + 1);
    key.extend_from_slice(account.as_bytes());
    key.push(0);
    key.extend_from_slice(uid.as_bytes());
    key
}

/// `footprints`' key: `account \0`, the bucket (ordered as numbers), the object's UID.
pub(super) fn footprint_key(account: &str, bucket: i64, uid: &str) -> Vec<u8> {
    let mut key = object_key(account, "");
    key.extend_from_slice(&((bucket as u64) ^ (1 << 63)).to_be_bytes());
    key.extend_from_slice(uid.as_bytes());
    key
}

/// `account \0 object \0 tail`: what is kept for each object or calendar, by the tail
/// (`counters`' proposals by id, `refreshed` by attendee, `properties` by name); with an
/// empty tail, the prefix of all of them.
pub(super) fn member_key(account: &str, object: &str, tail: &[u8]) -> Vec<u8> {
    let mut key = object_key(account, object);
    key.push(0);
    key.extend_from_slice(tail);
    key
}

/// `account \0 id`: an entry of `changes` or of `inbox`.
pub(super) fn change_key(account: &str, id: &[u8]) -> Vec<u8> {
    let mut key = object_key(account, "");
    key.extend_from_slice(id);
    key
}

/// An object's value (format 6): its revision, its schedule tag, the key of its text in
/// `texts`, the text's length; 32 bytes, which no value of formats 2 to 5 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub revision: u64,
    pub schedule_tag: u64,
    pub text: u64,
    pub length: u64,
}

impl Head {
    pub fn value(self) -> Vec<u8> {
        [self.revision, self.schedule_tag, self.text, self.length]
            .iter()
            .flat_map(|n| n.to_be_bytes())
            .collect()
    }

    pub fn of(value: &[u8]) -> Option<Head> {
        let [revision, schedule_tag, text, length] = numbers::<4>(value)?;
        Some(Head {
            revision,
            schedule_tag,
            text,
            length,
        })
    }

    /// What a listing shows of the object.
    pub fn listed(self) -> Listed {
        Listed {
            revision: self.revision,
            schedule_tag: self.schedule_tag,
            length: self.length as usize,
        }
    }
}

/// An object's value without its text: what a listing needs.
pub(super) fn listed(value: &[u8]) -> Option<Listed> {
    Head::of(value).map(Head::listed)
}

/// An inbox item's value (format 6): the key of its text in `texts`, the text's length; 16
/// bytes, which no item of formats 2 to 5 (an iTIP message itself) is.
pub(super) fn inbox_value(text: u64, length: usize) -> Vec<u8> {
    [text, length as u64]
        .iter()
        .flat_map(|n| n.to_be_bytes())
        .collect()
}

/// An inbox item's text key and length.
pub(super) fn inbox_of(value: &[u8]) -> Option<(u64, usize)> {
    let [text, length] = numbers::<2>(value)?;
    Some((text, length as usize))
}

/// A value of exactly N big-endian u64s.
fn numbers<const N: usize>(value: &[u8]) -> Option<[u64; N]> {
    if value.len() != N * 8 {
        return None;
    }
    let mut out = [0; N];
    for (n, bytes) in out.iter_mut().zip(value.chunks_exact(8)) {
        *n = u64::from_be_bytes(bytes.try_into().ok()?);
    }
    Some(out)
}

/// An object's value of formats 2 to 5: its revision, its schedule tag, its text (what the
/// upgrades before format 6 read and write).
pub(super) fn inline_of(value: &[u8]) -> Option<StoredObject> {
    let (rev, rest) = value.split_at_checked(8)?;
    let (tag, text) = rest.split_at_checked(8)?;
    Some(StoredObject {
        revision: u64::from_be_bytes(rev.try_into().ok()?),
        schedule_tag: u64::from_be_bytes(tag.try_into().ok()?),
        text: String::from_utf8(text.to_vec()).ok()?,
    })
}

pub(super) fn inline_value(revision: u64, schedule_tag: u64, text: &str) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + text.len());
    value.extend_from_slice(&revision.to_be_bytes());
    value.extend_from_slice(&schedule_tag.to_be_bytes());
    value.extend_from_slice(text.as_bytes());
    value
}

/// A notice's value: its due time, then (since repliers are recorded) their JSON list.
pub(super) fn notice_value(value: &[u8]) -> Option<(i64, Vec<String>)> {
    let (due, rest) = value.split_at_checked(8)?;
    let due = i64::from_be_bytes(due.try_into().ok()?);
    let repliers = if rest.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(rest).ok()?
    };
    Some((due, repliers))
}
