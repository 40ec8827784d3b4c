//! The embedded backend: sled 0.34.7.

use super::{
    Change, Changed, Changes, Claim, Count, Expect, Expired, Expiry, Marker, Notice,
    OutboundMessage, Store, StoreError, StoredObject, Tag, Tally, Usage,
};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The on-disk layout this build reads and writes, recorded as `imipd-N` under `format` in the
/// `meta` tree.
const FORMAT: u32 = 4;

/// The steps from each older format to the next, applied in order when a store of an older
/// format is opened (`UPGRADES[0]` takes format 1 to 2, and so on). Format 1 is the first.
const UPGRADES: &[Upgrade] = &[log_existing_objects, date_delivered_and_sent, count_usage];

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

/// `usage`'s value: objects, then bytes.
fn usage_value(usage: Usage) -> Vec<u8> {
    let mut value = usage.objects.to_be_bytes().to_vec();
    value.extend_from_slice(&usage.bytes.to_be_bytes());
    value
}

fn usage_of(value: Option<&[u8]>) -> Usage {
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

/// `tallies`' key: the account, the tally, the address.
fn tally_key(account: &str, tally: Tally, address: &str) -> Vec<u8> {
    let mut key = object_key(account, "");
    key.push(tally.code());
    key.extend_from_slice(address.as_bytes());
    key
}

/// `tallies`' value: since when, then how many.
fn count_value(count: Count) -> Vec<u8> {
    let mut value = count.since.to_be_bytes().to_vec();
    value.extend_from_slice(&count.count.to_be_bytes());
    value
}

fn count_of(value: &[u8]) -> Option<Count> {
    Some(Count {
        since: i64::from_be_bytes(value.get(..8)?.try_into().ok()?),
        count: u32::from_be_bytes(value.get(8..12)?.try_into().ok()?),
    })
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

/// `names`' keys: a name, to the UID it stands for.
const NAMED: u8 = b'n';
/// `names`' keys: a UID, to its name.
const NAME_OF: u8 = b'u';

/// A key of `names`: the account, which way, then the name or UID.
fn name_key(account: &str, way: u8, text: &str) -> Vec<u8> {
    let mut key = object_key(account, "");
    key.push(way);
    key.extend_from_slice(text.as_bytes());
    key
}

/// `seen_times`' key: when, then the delivery's key, so that the oldest come first.
fn seen_time_key(at: i64, key: &[u8]) -> Vec<u8> {
    let mut out = (at.max(0) as u64).to_be_bytes().to_vec();
    out.extend_from_slice(key);
    out
}

/// `sent`'s value: when the relay took it, then the message as JSON.
fn sent_value(at: i64, json: &[u8]) -> Vec<u8> {
    let mut out = at.to_be_bytes().to_vec();
    out.extend_from_slice(json);
    out
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
            .insert(&key, encode(revision, revision, text))
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
fn recorded_format(text: &[u8]) -> Option<u32> {
    std::str::from_utf8(text)
        .ok()?
        .strip_prefix("imipd-")?
        .parse()
        .ok()
}

/// Brings a store of format `found` to this build's, or says why it cannot.
fn upgrade(db: &sled::Db, meta: &sled::Tree, found: u32) -> Result<(), StoreError> {
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

/// sled with the trees of the daemon; reopened from disk after an I/O failure, because sled
/// keeps failing once it has seen one (a full disk, say) and its memory may then hold writes
/// that never reached the disk.
pub struct SledStore {
    dir: PathBuf,
    cache_size: u64,
    state: RwLock<State>,
    secret: [u8; 32],
}

/// The open database, or why there is none.
struct State {
    trees: Option<Arc<Trees>>,
    generation: u64,
    failure: String,
    last_attempt: Option<Instant>,
}

/// One opening of the database.
struct Trees {
    generation: u64,
    db: sled::Db,
    objects: sled::Tree,
    outbox: sled::Tree,
    seen: sled::Tree,
    /// When each delivery was recorded: `seen_time_key` → nothing.
    seen_times: sled::Tree,
    counters: sled::Tree,
    sent: sled::Tree,
    notices: sled::Tree,
    refreshed: sled::Tree,
    /// Each account's changes, by change id: `account \0 id` → a flag (0 put, 1 removed) and
    /// the UID; only an object's latest change stays (what a calendar client's sync asks).
    changes: sled::Tree,
    /// The id of each object's latest change: `account \0 uid` → id.
    latest: sled::Tree,
    /// Each account's schedule inbox: `account \0 id` → an iTIP message.
    inbox: sled::Tree,
    /// Properties clients wrote on each calendar: `account \0 calendar \0 {ns}name` → value.
    properties: sled::Tree,
    /// Each account's further calendars: `account \0 name` → nothing.
    calendars: sled::Tree,
    /// Objects placed in a further calendar: `account \0 uid` → the calendar's name.
    placements: sled::Tree,
    /// Resource names clients gave objects instead of `UID.ics`, both ways: `name_key`.
    names: sled::Tree,
    /// What each account holds: `account` → `usage_value`.
    usage: sled::Tree,
    /// Tallies per account and outside address: `tally_key` → `count_value`.
    tallies: sled::Tree,
    /// The store's format, secret and markers.
    meta: sled::Tree,
    log: File,
    dir: PathBuf,
    /// The blob files synced so far, by name, with the length they had then.
    blobs: std::sync::Mutex<std::collections::HashMap<std::ffi::OsString, u64>>,
}

/// `store.cache_size` when it is not set: see `config::Store`.
pub const DEFAULT_CACHE_SIZE: u64 = 8 * 1024 * 1024;

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn object_key(account: &str, uid: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(account.len() + uid.len() + 1);
    key.extend_from_slice(account.as_bytes());
    key.push(0);
    key.extend_from_slice(uid.as_bytes());
    key
}

/// Records the latest change of an object, and forgets its previous one.
fn log_change(
    changes: &sled::transaction::TransactionalTree,
    latest: &sled::transaction::TransactionalTree,
    account: &str,
    uid: &str,
    id: u64,
    removed: bool,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let object = object_key(account, uid);
    if let Some(previous) = latest.get(&object)? {
        changes.remove(change_key(account, &previous))?;
    }
    latest.insert(object, &id.to_be_bytes())?;
    let mut value = vec![u8::from(removed)];
    value.extend_from_slice(uid.as_bytes());
    changes.insert(change_key(account, &id.to_be_bytes()), value)?;
    Ok(())
}

fn change_key(account: &str, id: &[u8]) -> Vec<u8> {
    let mut key = object_key(account, "");
    key.extend_from_slice(id);
    key
}

/// An object's value: its revision, its schedule tag, its text (format 2).
fn decode(value: &[u8]) -> Option<StoredObject> {
    let (rev, rest) = value.split_at_checked(8)?;
    let (tag, text) = rest.split_at_checked(8)?;
    Some(StoredObject {
        revision: u64::from_be_bytes(rev.try_into().ok()?),
        schedule_tag: u64::from_be_bytes(tag.try_into().ok()?),
        text: String::from_utf8(text.to_vec()).ok()?,
    })
}

fn encode(revision: u64, schedule_tag: u64, text: &str) -> Vec<u8> {
    let mut value = Vec::with_capacity(16 + text.len());
    value.extend_from_slice(&revision.to_be_bytes());
    value.extend_from_slice(&schedule_tag.to_be_bytes());
    value.extend_from_slice(text.as_bytes());
    value
}

impl SledStore {
    /// Opens (or creates) the store in a folder and checks its format.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, DEFAULT_CACHE_SIZE)
    }

    /// Opens the store with a page cache of `cache_size` bytes (`store.cache_size`): sled keeps
    /// what it read and wrote there, so resident memory grows with the store up to it.
    pub fn open_with(dir: &Path, cache_size: u64) -> Result<Self, StoreError> {
        let trees = Trees::open(dir, cache_size, 0)?;
        let secret = trees.secret()?;
        Ok(SledStore {
            secret,
            dir: dir.to_path_buf(),
            cache_size,
            state: RwLock::new(State {
                trees: Some(Arc::new(trees)),
                generation: 0,
                failure: String::new(),
                last_attempt: None,
            }),
        })
    }

    fn trees(&self) -> Result<Arc<Trees>, StoreError> {
        if let Some(trees) = &self.state.read().unwrap_or_else(|e| e.into_inner()).trees {
            return Ok(trees.clone());
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let Some(trees) = &state.trees {
            return Ok(trees.clone());
        }
        // Operations still running on the failed opening hold its lock file for a moment.
        if state
            .last_attempt
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return Err(StoreError::Unavailable(format!(
                "store failed ({}), reopening",
                state.failure
            )));
        }
        state.last_attempt = Some(Instant::now());
        let trees = match Trees::open(&self.dir, self.cache_size, state.generation + 1) {
            Ok(trees) => Arc::new(trees),
            Err(error) => {
                tracing::warn!(%error, "store cannot be reopened yet");
                return Err(error);
            }
        };
        state.generation += 1;
        state.trees = Some(trees.clone());
        tracing::warn!(generation = state.generation, "store reopened from disk");
        Ok(trees)
    }

    /// Runs an operation; an I/O failure closes this opening so the next call reopens.
    fn with<T>(&self, op: impl FnOnce(&Trees) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let trees = self.trees()?;
        let result = op(&trees);
        if let Err(StoreError::Unavailable(error)) = &result {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            if state.trees.as_ref().is_some_and(|t| Arc::ptr_eq(t, &trees)) {
                tracing::error!(%error, "store failed; answering 4xx until it can be reopened");
                state.trees = None;
                state.failure = error.clone();
                state.last_attempt = None;
            }
        }
        result
    }
}

impl Trees {
    fn open(dir: &Path, cache_size: u64, generation: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let config = sled::Config::new()
            .path(dir)
            .segment_size(8 * 1024 * 1024)
            .cache_capacity(cache_size);
        // An opening dropped a moment ago keeps its file lock until sled's flusher thread ends;
        // a reopening waits up to 2 s for it (another process holding the store is refused then).
        let mut waits = 0;
        let db = loop {
            match config.open() {
                // sled reports it as ErrorKind::Other, with this text.
                Err(sled::Error::Io(e))
                    if e.to_string().starts_with("could not acquire lock") && waits < 40 =>
                {
                    waits += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(sled::Error::Io(e)) if e.to_string().starts_with("could not acquire lock") => {
                    return Err(StoreError::Unavailable(format!(
                        "another process (another imipd?) uses the store in {}: its lock is \
                         held; stop that one, or give this one another server.data_dir",
                        dir.display()
                    )));
                }
                opened => break opened.map_err(unavailable)?,
            }
        };
        let meta = db.open_tree("meta").map_err(unavailable)?;
        match meta.get("format").map_err(unavailable)? {
            Some(text) => match recorded_format(&text) {
                Some(FORMAT) => {}
                Some(found) => upgrade(&db, &meta, found)?,
                None => {
                    return Err(StoreError::Format {
                        found: String::from_utf8_lossy(&text).into_owned(),
                        expected: format!("imipd-{FORMAT} (this is no imipd store)"),
                    });
                }
            },
            None => {
                meta.insert("format", format!("imipd-{FORMAT}").as_str())
                    .map_err(unavailable)?;
                db.flush().map_err(unavailable)?;
            }
        }
        let log = File::options()
            .read(true)
            .open(dir.join("db"))
            .map_err(unavailable)?;
        Ok(Trees {
            generation,
            objects: db.open_tree("objects").map_err(unavailable)?,
            outbox: db.open_tree("outbox").map_err(unavailable)?,
            seen: db.open_tree("seen").map_err(unavailable)?,
            seen_times: db.open_tree("seen_times").map_err(unavailable)?,
            counters: db.open_tree("counters").map_err(unavailable)?,
            sent: db.open_tree("sent").map_err(unavailable)?,
            notices: db.open_tree("notices").map_err(unavailable)?,
            refreshed: db.open_tree("refreshed").map_err(unavailable)?,
            changes: db.open_tree("changes").map_err(unavailable)?,
            latest: db.open_tree("latest").map_err(unavailable)?,
            inbox: db.open_tree("inbox").map_err(unavailable)?,
            properties: db.open_tree("properties").map_err(unavailable)?,
            calendars: db.open_tree("calendars").map_err(unavailable)?,
            placements: db.open_tree("placements").map_err(unavailable)?,
            names: db.open_tree("names").map_err(unavailable)?,
            usage: db.open_tree("usage").map_err(unavailable)?,
            tallies: db.open_tree("tallies").map_err(unavailable)?,
            meta,
            db,
            log,
            dir: dir.to_path_buf(),
            blobs: Default::default(),
        })
    }
}

impl Trees {
    /// The store's secret, made (and flushed) on first use.
    fn secret(&self) -> Result<[u8; 32], StoreError> {
        let meta = self.db.open_tree("meta").map_err(unavailable)?;
        if let Some(found) = meta.get("secret").map_err(unavailable)?
            && let Ok(secret) = <[u8; 32]>::try_from(found.as_ref())
        {
            return Ok(secret);
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(unavailable)?;
        meta.insert("secret", &secret).map_err(unavailable)?;
        self.sync()?;
        Ok(secret)
    }

    fn get(&self, account: &str, uid: &str) -> Result<Option<StoredObject>, StoreError> {
        Ok(self
            .objects
            .get(object_key(account, uid))
            .map_err(unavailable)?
            .and_then(|v| decode(&v)))
    }

    fn list(&self, account: &str) -> Result<Vec<(String, StoredObject)>, StoreError> {
        let prefix = object_key(account, "");
        let mut out = Vec::new();
        for item in self.objects.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            let uid = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(object) = decode(&value) {
                out.push((uid, object));
            }
        }
        Ok(out)
    }

    fn all(&self) -> Result<Vec<(String, String, StoredObject)>, StoreError> {
        let mut out = Vec::new();
        for item in self.objects.iter() {
            let (key, value) = item.map_err(unavailable)?;
            let mut halves = key.splitn(2, |b| *b == 0);
            let account = String::from_utf8_lossy(halves.next().unwrap_or_default()).into_owned();
            let uid = String::from_utf8_lossy(halves.next().unwrap_or_default()).into_owned();
            if let Some(object) = decode(&value) {
                out.push((account, uid, object));
            }
        }
        Ok(out)
    }

    fn seen(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.seen.contains_key(key).map_err(unavailable)
    }

    fn calendars(&self, account: &str) -> Result<Vec<String>, StoreError> {
        let prefix = object_key(account, "");
        let mut out = Vec::new();
        for item in self.calendars.scan_prefix(&prefix) {
            let (key, _) = item.map_err(unavailable)?;
            out.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    fn placements(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = object_key(account, "");
        let mut out = Vec::new();
        for item in self.placements.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            out.push((
                String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        Ok(out)
    }

    fn name(&self, account: &str, way: u8, text: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .names
            .get(name_key(account, way, text))
            .map_err(unavailable)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn names(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = name_key(account, NAME_OF, "");
        let mut out = Vec::new();
        for item in self.names.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            out.push((
                String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        Ok(out)
    }

    fn properties(
        &self,
        account: &str,
        calendar: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut prefix = object_key(account, calendar);
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.properties.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            out.push((
                String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        Ok(out)
    }

    fn inbox_ids(&self, account: &str) -> Result<Vec<(u64, usize)>, StoreError> {
        let prefix = object_key(account, "");
        let mut out = Vec::new();
        // sled holds the values in the pages it iterates: their lengths cost no read.
        for item in self.inbox.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            let id = key[prefix.len()..].try_into().map(u64::from_be_bytes);
            out.push((id.unwrap_or_default(), value.len()));
        }
        Ok(out)
    }

    fn usage(&self, account: &str) -> Result<Usage, StoreError> {
        let value = self.usage.get(account.as_bytes()).map_err(unavailable)?;
        Ok(usage_of(value.as_deref()))
    }

    fn tally(
        &self,
        account: &str,
        tally: Tally,
        address: &str,
    ) -> Result<Option<Count>, StoreError> {
        let value = self
            .tallies
            .get(tally_key(account, tally, address))
            .map_err(unavailable)?;
        Ok(value.as_deref().and_then(count_of))
    }

    fn marked(&self, marker: Marker) -> Result<bool, StoreError> {
        self.meta.contains_key(marker.key()).map_err(unavailable)
    }

    fn proposals(&self, account: &str, uid: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let mut prefix = object_key(account, uid);
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.counters.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            let id = key[prefix.len()..].try_into().map(u64::from_be_bytes);
            out.push((
                id.unwrap_or_default(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        Ok(out)
    }

    fn inbox(&self, account: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let prefix = object_key(account, "");
        let mut out = Vec::new();
        for item in self.inbox.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            let id = key[prefix.len()..]
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default();
            out.push((id, String::from_utf8_lossy(&value).into_owned()));
        }
        Ok(out)
    }

    fn changes_since(&self, account: &str, since: u64) -> Result<Changes, StoreError> {
        let prefix = object_key(account, "");
        let start = change_key(account, &since.to_be_bytes());
        let end = change_key(account, &u64::MAX.to_be_bytes());
        let mut out = Changes {
            latest: self.latest_change(account)?,
            changed: Vec::new(),
        };
        for item in self.changes.range(start..=end) {
            let (key, value) = item.map_err(unavailable)?;
            let id = key[prefix.len()..]
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or_default();
            let Some((flag, uid)) = value.split_first() else {
                continue;
            };
            out.changed.push(Changed {
                id,
                uid: String::from_utf8_lossy(uid).into_owned(),
                removed: *flag == 1,
            });
        }
        Ok(out)
    }

    /// The position after the account's latest change (0: none yet).
    fn latest_change(&self, account: &str) -> Result<u64, StoreError> {
        let prefix = object_key(account, "");
        let last = self.changes.scan_prefix(&prefix).next_back();
        Ok(match last {
            Some(item) => {
                let (key, _) = item.map_err(unavailable)?;
                key[prefix.len()..]
                    .try_into()
                    .map(u64::from_be_bytes)
                    .unwrap_or_default()
                    + 1
            }
            None => 0,
        })
    }

    /// The COUNTER proposals and REFRESH times kept for each object these changes remove,
    /// found before the transaction, which cannot scan.
    #[allow(clippy::type_complexity)]
    fn kept_for_removed<'c>(
        &self,
        changes: &'c [Change],
    ) -> Result<BTreeMap<(&'c str, &'c str), (Vec<sled::IVec>, Vec<sled::IVec>)>, StoreError> {
        let mut out = BTreeMap::new();
        for change in changes {
            if let Change::Delete { account, uid, .. } = change {
                let mut prefix = object_key(account, uid);
                prefix.push(0);
                let keys = |tree: &sled::Tree| {
                    tree.scan_prefix(&prefix)
                        .keys()
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(unavailable)
                };
                out.insert(
                    (account.as_str(), uid.as_str()),
                    (keys(&self.counters)?, keys(&self.refreshed)?),
                );
            }
        }
        Ok(out)
    }

    fn commit(&self, changes: &[Change]) -> Result<Vec<u64>, StoreError> {
        // Ids are taken before the transaction: a retried closure must not consume new ones.
        super::check_sizes(changes)?;
        let mut ids = Vec::new();
        for _ in changes {
            ids.push(self.db.generate_id().map_err(unavailable)?);
        }
        // A transaction cannot scan: the inbox items that make room are picked before it.
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
        let kept_for = self.kept_for_removed(changes)?;
        let mut trimmed = Vec::new();
        for (account, room) in added {
            let held = self.inbox_ids(account)?;
            trimmed.extend(
                room.oldest_to_drop(&held)
                    .map(|id| change_key(account, &id.to_be_bytes())),
            );
        }
        // More trees than sled's tuples take: a slice, its views in the same order.
        let trees = [
            &self.objects,
            &self.outbox,
            &self.seen,
            &self.seen_times,
            &self.counters,
            &self.sent,
            &self.notices,
            &self.refreshed,
            &self.changes,
            &self.latest,
            &self.inbox,
            &self.properties,
            &self.calendars,
            &self.placements,
            &self.names,
            &self.usage,
            &self.tallies,
            &self.meta,
        ];
        let result = trees[..].transaction(|views| {
            let [
                objects,
                outbox,
                seen,
                seen_times,
                counters,
                sent,
                notices,
                refreshed,
                changes_log,
                latest,
                inbox,
                properties,
                calendars,
                placements,
                names,
                usage,
                tallies,
                meta,
            ] = views.as_slice()
            else {
                unreachable!("one view per tree");
            };
            for key in &trimmed {
                inbox.remove(key.as_slice())?;
            }
            for (change, id) in changes.iter().zip(&ids) {
                match change {
                    Change::Put {
                        account,
                        uid,
                        text,
                        expect,
                        tag,
                    } => {
                        let key = object_key(account, uid);
                        let current = objects.get(&key)?;
                        let kept = current.as_deref().and_then(decode).map(|o| o.schedule_tag);
                        let before = current.as_ref().map(|v| v.len().saturating_sub(16));
                        check(expect, current)?;
                        let schedule_tag = match tag {
                            Tag::Kept => kept.unwrap_or(*id),
                            Tag::New => *id,
                        };
                        objects.insert(key, encode(*id, schedule_tag, text))?;
                        log_change(changes_log, latest, account, uid, *id, false)?;
                        count(usage, account, before, Some(text.len()))?;
                    }
                    Change::Delete {
                        account,
                        uid,
                        expect,
                    } => {
                        let key = object_key(account, uid);
                        let current = objects.get(&key)?;
                        let before = current.as_ref().map(|v| v.len().saturating_sub(16));
                        check(expect, current)?;
                        objects.remove(key)?;
                        log_change(changes_log, latest, account, uid, *id, true)?;
                        count(usage, account, before, None)?;
                        // What was kept for the object goes with it.
                        let (proposals, refreshes) = &kept_for[&(account.as_str(), uid.as_str())];
                        for key in proposals {
                            counters.remove(key)?;
                        }
                        for key in refreshes {
                            refreshed.remove(key)?;
                        }
                    }
                    Change::Inbox { account, text, .. } => {
                        let key = change_key(account, &id.to_be_bytes());
                        inbox.insert(key, text.as_bytes())?;
                    }
                    Change::Calendar {
                        account,
                        name,
                        exists,
                    } => {
                        let key = object_key(account, name);
                        match exists {
                            true => calendars.insert(key, &[])?,
                            false => calendars.remove(key)?,
                        };
                    }
                    Change::Place {
                        account,
                        uid,
                        calendar,
                    } => {
                        let key = object_key(account, uid);
                        match calendar {
                            Some(name) => placements.insert(key, name.as_bytes())?,
                            None => placements.remove(key)?,
                        };
                    }
                    Change::Property {
                        account,
                        calendar,
                        name,
                        value,
                    } => {
                        let mut key = object_key(account, calendar);
                        key.push(0);
                        key.extend_from_slice(name.as_bytes());
                        match value {
                            Some(value) => properties.insert(key, value.as_bytes())?,
                            None => properties.remove(key)?,
                        };
                    }
                    Change::Name { account, uid, name } => {
                        let by_uid = name_key(account, NAME_OF, uid);
                        if let Some(old) = names.remove(by_uid.clone())? {
                            names.remove(name_key(
                                account,
                                NAMED,
                                &String::from_utf8_lossy(&old),
                            ))?;
                        }
                        if let Some(name) = name {
                            let by_name = name_key(account, NAMED, name);
                            // The name leaves the object it stood for before.
                            if let Some(other) = names.insert(by_name, uid.as_bytes())? {
                                names.remove(name_key(
                                    account,
                                    NAME_OF,
                                    &String::from_utf8_lossy(&other),
                                ))?;
                            }
                            names.insert(by_uid, name.as_bytes())?;
                        }
                    }
                    Change::InboxRemove { account, id } => {
                        inbox.remove(change_key(account, &id.to_be_bytes()))?;
                    }
                    Change::Enqueue(message) => {
                        let value = serde_json::to_vec(message).expect("a message serializes");
                        outbox.insert(&id.to_be_bytes(), value)?;
                    }
                    Change::Dequeue(queued) => {
                        outbox.remove(&queued.to_be_bytes())?;
                    }
                    Change::Requeue(queued, message) => {
                        let value = serde_json::to_vec(message).expect("a message serializes");
                        outbox.insert(&queued.to_be_bytes(), value)?;
                    }
                    Change::Sent(queued, message, at) => {
                        let json = serde_json::to_vec(message).expect("a message serializes");
                        sent.insert(&queued.to_be_bytes(), sent_value(*at, &json))?;
                    }
                    Change::ForgetSent(queued) => {
                        sent.remove(&queued.to_be_bytes())?;
                    }
                    Change::Notify {
                        account,
                        uid,
                        due,
                        repliers,
                    } => {
                        let key = object_key(account, uid);
                        let (due, mut all) = match notices.get(&key)? {
                            Some(value) => notice_value(&value).unwrap_or((*due, Vec::new())),
                            None => (*due, Vec::new()),
                        };
                        for replier in repliers {
                            if !all.contains(replier) {
                                all.push(replier.clone());
                            }
                        }
                        let mut value = due.to_be_bytes().to_vec();
                        value.extend(serde_json::to_vec(&all).expect("strings serialize"));
                        notices.insert(key, value)?;
                    }
                    Change::Refreshed {
                        account,
                        uid,
                        attendee,
                        at,
                    } => {
                        let mut key = object_key(account, uid);
                        key.push(0);
                        key.extend_from_slice(attendee.as_bytes());
                        refreshed.insert(key, &at.to_be_bytes())?;
                    }
                    // Sent meanwhile: the decision is stale.
                    Change::Notified { account, uid } => {
                        if notices.remove(object_key(account, uid))?.is_none() {
                            return Err(ConflictableTransactionError::Abort(StoreError::Conflict));
                        }
                    }
                    // Recorded meanwhile: the decision runs again and finds it.
                    Change::Seen(key, at) => {
                        if seen.insert(key.as_slice(), &id.to_be_bytes())?.is_some() {
                            return Err(ConflictableTransactionError::Abort(StoreError::Conflict));
                        }
                        seen_times.insert(seen_time_key(*at, key), &[])?;
                    }
                    Change::Tally {
                        account,
                        tally,
                        address,
                        count,
                    } => {
                        tallies.insert(tally_key(account, *tally, address), count_value(*count))?;
                    }
                    Change::Mark(marker) => {
                        meta.insert(marker.key(), &[1])?;
                    }
                    Change::DropProposal { account, uid, id } => {
                        let mut key = object_key(account, uid);
                        key.push(0);
                        key.extend_from_slice(&id.to_be_bytes());
                        counters.remove(key)?;
                    }
                    Change::Proposal { account, uid, text } => {
                        let mut key = object_key(account, uid);
                        key.push(0);
                        key.extend_from_slice(&id.to_be_bytes());
                        counters.insert(key, text.as_bytes())?;
                    }
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(ids),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(unavailable(e)),
        }
    }

    fn outbox(&self) -> Result<Vec<(u64, OutboundMessage)>, StoreError> {
        let mut out = Vec::new();
        for item in self.outbox.iter() {
            let (key, value) = item.map_err(unavailable)?;
            let id = u64::from_be_bytes(key.as_ref().try_into().map_err(unavailable)?);
            // An entry an earlier version queued for what is no mailbox is never sent; it must
            // not make the store look broken either.
            match serde_json::from_slice(&value) {
                Ok(message) => out.push((id, message)),
                Err(error) => {
                    tracing::error!(id, %error, "outbound queue entry unreadable; skipped")
                }
            }
        }
        Ok(out)
    }

    fn outbox_remove(&self, id: u64) -> Result<(), StoreError> {
        self.outbox.remove(id.to_be_bytes()).map_err(unavailable)?;
        Ok(())
    }

    fn notices(&self) -> Result<Vec<Notice>, StoreError> {
        let mut out = Vec::new();
        for item in self.notices.iter() {
            let (key, value) = item.map_err(unavailable)?;
            let mut fields = key.splitn(2, |b| *b == 0);
            let account = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
            let uid = String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
            let (due, repliers) = notice_value(&value).ok_or_else(|| unavailable("notice"))?;
            out.push(Notice {
                account,
                uid,
                due,
                repliers,
            });
        }
        out.sort_by_key(|n| n.due);
        Ok(out)
    }

    fn refreshed(
        &self,
        account: &str,
        uid: &str,
        attendee: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut key = object_key(account, uid);
        key.push(0);
        key.extend_from_slice(attendee.as_bytes());
        Ok(self
            .refreshed
            .get(key)
            .map_err(unavailable)?
            .and_then(|v| Some(i64::from_be_bytes(v.as_ref().try_into().ok()?))))
    }

    fn sent(&self, id: u64) -> Result<Option<OutboundMessage>, StoreError> {
        match self.sent.get(id.to_be_bytes()).map_err(unavailable)? {
            Some(value) => Ok(serde_json::from_slice(value.get(8..).unwrap_or_default())
                .inspect_err(|error| tracing::error!(id, %error, "sent record unreadable"))
                .ok()),
            None => Ok(None),
        }
    }

    fn expire(&self, expiry: Expiry, limit: usize) -> Result<Expired, StoreError> {
        let old_seen: Vec<sled::IVec> = self
            .seen_times
            .range(..seen_time_key(expiry.seen_before, &[]))
            .keys()
            .take(limit)
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        (&self.seen, &self.seen_times)
            .transaction(|(seen, seen_times)| {
                for key in &old_seen {
                    seen.remove(key.get(8..).unwrap_or_default())?;
                    seen_times.remove(key)?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => unavailable(e),
            })?;
        // Ids grow in the order messages were queued, which is nearly the order the relay took
        // them: the walk stops at the first one too young.
        let mut old_sent = sled::Batch::default();
        let mut sent = 0;
        for item in self.sent.iter().take(limit) {
            let (key, value) = item.map_err(unavailable)?;
            let at = value
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(i64::MAX, i64::from_be_bytes);
            if at >= expiry.sent_before {
                break;
            }
            old_sent.remove(key);
            sent += 1;
        }
        self.sent.apply_batch(old_sent).map_err(unavailable)?;
        Ok(Expired {
            seen: old_seen.len(),
            sent,
            tallies: self.expire_tallies(expiry.tallies_before, limit)?,
        })
    }

    /// Forgets up to `limit` windowed tallies whose window began before `before`.
    fn expire_tallies(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        let windowed = [Tally::Echo.code(), Tally::NewFrom.code()];
        let mut old = sled::Batch::default();
        let mut forgotten = 0;
        for item in self.tallies.iter() {
            let (key, value) = item.map_err(unavailable)?;
            let code = key
                .iter()
                .position(|b| *b == 0)
                .and_then(|at| key.get(at + 1));
            let old_enough = count_of(&value).is_some_and(|c| c.since < before);
            if code.is_some_and(|c| windowed.contains(c)) && old_enough {
                old.remove(key);
                forgotten += 1;
                if forgotten == limit {
                    break;
                }
            }
        }
        self.tallies.apply_batch(old).map_err(unavailable)?;
        Ok(forgotten)
    }

    fn counters(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = object_key(account, "");
        let mut out = Vec::new();
        for item in self.counters.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            let rest = &key[prefix.len()..];
            let uid = rest.split(|b| *b == 0).next().unwrap_or_default();
            out.push((
                String::from_utf8_lossy(uid).into_owned(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        Ok(out)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(unavailable)
    }

    fn sync(&self) -> Result<u64, StoreError> {
        // sled's flush ends in sync_file_range, which a power cut can undo (sled #1452).
        self.db.flush().map_err(unavailable)?;
        self.log.sync_data().map_err(unavailable)?;
        let mut synced = self.blobs.lock().unwrap_or_else(|e| e.into_inner());
        sync_blobs(&self.dir.join("blobs"), &mut synced).map_err(unavailable)?;
        Ok(self.generation)
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
    /// The oldest of the items held (id and size, oldest first) that must go so that the
    /// held and the new fit.
    fn oldest_to_drop<'h>(&self, held: &'h [(u64, usize)]) -> impl Iterator<Item = u64> + 'h {
        let mut items = held.len() + self.items;
        let mut bytes = held.iter().map(|(_, size)| size).sum::<usize>() + self.bytes;
        let (keep, keep_bytes) = (self.keep, self.keep_bytes);
        held.iter()
            .take_while(move |(_, size)| {
                let over = items > keep || bytes > keep_bytes;
                items -= 1;
                bytes -= size;
                over
            })
            .map(|(id, _)| *id)
    }
}

/// Adjusts an account's usage for an object that held `before` bytes (none: absent) and holds
/// `after` (none: removed).
fn count(
    usage: &sled::transaction::TransactionalTree,
    account: &str,
    before: Option<usize>,
    after: Option<usize>,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let mut held = usage_of(usage.get(account.as_bytes())?.as_deref());
    held.objects =
        (held.objects + u64::from(after.is_some())).saturating_sub(u64::from(before.is_some()));
    held.bytes =
        (held.bytes + after.unwrap_or(0) as u64).saturating_sub(before.unwrap_or(0) as u64);
    usage.insert(account.as_bytes(), usage_value(held))?;
    Ok(())
}

/// Makes the blob files sled wrote since the last round durable (it writes values and pages
/// too large for its log there, and never syncs them): those not synced yet, or grown since
/// (sled writes a blob in several pieces), and the folder's entries when there is a new one.
/// A blob removed between the listing and its opening is one sled no longer needs: no failure.
fn sync_blobs(
    folder: &Path,
    synced: &mut std::collections::HashMap<std::ffi::OsString, u64>,
) -> std::io::Result<()> {
    let listing = match std::fs::read_dir(folder) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut present = std::collections::HashSet::new();
    let mut new_entry = false;
    for blob in listing {
        let blob = blob?;
        let name = blob.file_name();
        present.insert(name.clone());
        let length = match blob.metadata() {
            Ok(metadata) => metadata.len(),
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        if synced.get(&name) == Some(&length) {
            continue;
        }
        match File::open(blob.path()).and_then(|f| f.sync_data()) {
            Ok(()) => {}
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        }
        new_entry |= !synced.contains_key(&name);
        synced.insert(name, length);
    }
    synced.retain(|name, _| present.contains(name));
    if new_entry {
        File::open(folder)?.sync_all()?;
    }
    Ok(())
}

impl Store for SledStore {
    fn get(&self, account: &str, uid: &str) -> Result<Option<StoredObject>, StoreError> {
        self.with(|t| t.get(account, uid))
    }
    fn list(&self, account: &str) -> Result<Vec<(String, StoredObject)>, StoreError> {
        self.with(|t| t.list(account))
    }
    fn all(&self) -> Result<Vec<(String, String, StoredObject)>, StoreError> {
        self.with(|t| t.all())
    }
    fn changes_since(&self, account: &str, since: u64) -> Result<Changes, StoreError> {
        self.with(|t| t.changes_since(account, since))
    }
    fn inbox(&self, account: &str) -> Result<Vec<(u64, String)>, StoreError> {
        self.with(|t| t.inbox(account))
    }
    fn inbox_ids(&self, account: &str) -> Result<Vec<(u64, usize)>, StoreError> {
        self.with(|t| t.inbox_ids(account))
    }
    fn usage(&self, account: &str) -> Result<Usage, StoreError> {
        self.with(|t| t.usage(account))
    }
    fn tally(
        &self,
        account: &str,
        tally: Tally,
        address: &str,
    ) -> Result<Option<Count>, StoreError> {
        self.with(|t| t.tally(account, tally, address))
    }
    fn marked(&self, marker: Marker) -> Result<bool, StoreError> {
        self.with(|t| t.marked(marker))
    }
    fn proposals(&self, account: &str, uid: &str) -> Result<Vec<(u64, String)>, StoreError> {
        self.with(|t| t.proposals(account, uid))
    }
    fn properties(
        &self,
        account: &str,
        calendar: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|t| t.properties(account, calendar))
    }
    fn calendars(&self, account: &str) -> Result<Vec<String>, StoreError> {
        self.with(|t| t.calendars(account))
    }
    fn placements(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|t| t.placements(account))
    }
    fn named(&self, account: &str, name: &str) -> Result<Option<String>, StoreError> {
        self.with(|t| t.name(account, NAMED, name))
    }
    fn name_of(&self, account: &str, uid: &str) -> Result<Option<String>, StoreError> {
        self.with(|t| t.name(account, NAME_OF, uid))
    }
    fn names(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|t| t.names(account))
    }
    fn seen(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.with(|t| t.seen(key))
    }
    fn commit(&self, changes: &[Change]) -> Result<Vec<u64>, StoreError> {
        self.with(|t| t.commit(changes))
    }
    fn outbox(&self) -> Result<Vec<(u64, OutboundMessage)>, StoreError> {
        self.with(|t| t.outbox())
    }
    fn outbox_remove(&self, id: u64) -> Result<(), StoreError> {
        self.with(|t| t.outbox_remove(id))
    }
    /// One process holds a sled store (its lock file): its worker's own bookkeeping suffices.
    fn claim(&self, _: u64, _: &str, _: i64, _: i64) -> Result<Claim, StoreError> {
        Ok(Claim::Taken)
    }
    fn relayed(&self, _: u64) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn notices(&self) -> Result<Vec<Notice>, StoreError> {
        self.with(|t| t.notices())
    }
    fn refreshed(
        &self,
        account: &str,
        uid: &str,
        attendee: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.with(|t| t.refreshed(account, uid, attendee))
    }
    fn sent(&self, id: u64) -> Result<Option<OutboundMessage>, StoreError> {
        self.with(|t| t.sent(id))
    }
    fn counters(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|t| t.counters(account))
    }
    fn expire(&self, expiry: Expiry, limit: usize) -> Result<Expired, StoreError> {
        self.with(|t| t.expire(expiry, limit))
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with(|t| t.size_on_disk())
    }
    fn secret(&self) -> [u8; 32] {
        self.secret
    }
    fn sync(&self) -> Result<u64, StoreError> {
        self.with(|t| t.sync())
    }
    fn generation(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }
}

/// A notice's value: its due time, then (since repliers are recorded) their JSON list.
fn notice_value(value: &[u8]) -> Option<(i64, Vec<String>)> {
    let (due, rest) = value.split_at_checked(8)?;
    let due = i64::from_be_bytes(due.try_into().ok()?);
    let repliers = if rest.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(rest).ok()?
    };
    Some((due, repliers))
}

fn check(
    expect: &Expect,
    current: Option<sled::IVec>,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let ok = match (expect, current.as_deref().and_then(decode)) {
        (Expect::Any, _) => true,
        (Expect::Absent, found) => found.is_none(),
        (Expect::Revision(rev), Some(found)) => found.revision == *rev,
        (Expect::Revision(_), None) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ConflictableTransactionError::Abort(StoreError::Conflict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(uid: &str, text: &str, expect: Expect) -> Change {
        Change::Put {
            account: "a@x.org".into(),
            uid: uid.into(),
            text: text.into(),
            expect,
            tag: Tag::New,
        }
    }

    /// A blob sled removes between the listing and its opening (here: a name whose file is
    /// gone) is no failure; a blob synced once is not synced again unless it grew.
    #[test]
    fn blobs_gone_or_unchanged_cost_no_failure_and_no_sync() {
        let dir = std::env::temp_dir().join(format!("imipd-blobs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1"), b"blob").unwrap();
        std::os::unix::fs::symlink(dir.join("removed"), dir.join("2")).unwrap();
        let mut synced = Default::default();
        sync_blobs(&dir, &mut synced).expect("a removed blob is no failure");
        assert_eq!(synced.len(), 1);
        assert_eq!(synced.get(std::ffi::OsStr::new("1")), Some(&4));
        std::fs::write(dir.join("1"), b"longer blob").unwrap();
        std::fs::remove_file(dir.join("2")).unwrap();
        sync_blobs(&dir, &mut synced).unwrap();
        assert_eq!(synced.get(std::ffi::OsStr::new("1")), Some(&11));
        std::fs::remove_file(dir.join("1")).unwrap();
        sync_blobs(&dir, &mut synced).unwrap();
        assert!(synced.is_empty());
        sync_blobs(&dir.join("none"), &mut synced).expect("no blobs folder yet");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_reopening_waits_for_the_lock_of_an_opening_being_dropped() {
        let dir = std::env::temp_dir().join(format!("imipd-store-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = SledStore::open(&dir).unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        assert!(SledStore::open(&dir).is_ok());
        holder.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn commits_are_atomic_and_checked() {
        let dir = std::env::temp_dir().join(format!("imipd-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = SledStore::open(&dir).unwrap();
        store
            .commit(&[
                put("u1", "one", Expect::Absent),
                Change::Seen(b"m1".to_vec(), 0),
            ])
            .unwrap();
        let first = store.get("a@x.org", "u1").unwrap().unwrap();
        assert_eq!(first.text, "one");
        assert!(store.seen(b"m1").unwrap());
        // A failed precondition leaves everything as it was, the other changes included.
        let err = store.commit(&[
            Change::Seen(b"m2".to_vec(), 0),
            put("u1", "two", Expect::Absent),
        ]);
        assert!(matches!(err, Err(StoreError::Conflict)));
        assert!(!store.seen(b"m2").unwrap());
        store
            .commit(&[put("u1", "two", Expect::Revision(first.revision))])
            .unwrap();
        let second = store.get("a@x.org", "u1").unwrap().unwrap();
        assert!(second.revision > first.revision);
        assert_eq!(store.list("a@x.org").unwrap().len(), 1);
        assert!(store.list("a@x.org.evil").unwrap().is_empty());
        store.sync().unwrap();
        drop(store);
        // The format key is checked at the next start.
        let reopened = SledStore::open(&dir).unwrap();
        assert_eq!(reopened.get("a@x.org", "u1").unwrap().unwrap().text, "two");
        let trees = reopened.trees().unwrap();
        let meta = trees.db.open_tree("meta").unwrap();
        let newer = format!("imipd-{}", FORMAT + 1);
        meta.insert("format", newer.as_str()).unwrap();
        trees.db.flush().unwrap();
        drop((meta, trees, reopened));
        let Err(refused) = SledStore::open(&dir) else {
            panic!("a newer format opened");
        };
        let said = refused.to_string();
        assert!(
            said.contains(&newer) && said.contains("written by a newer imipd"),
            "{said}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn put_of(account: &str, uid: &str, text: &str) -> Change {
        Change::Put {
            account: account.into(),
            uid: uid.into(),
            text: text.into(),
            expect: Expect::Any,
            tag: Tag::New,
        }
    }

    #[test]
    fn the_schedule_tag_is_kept_or_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&[put_of("a@x.org", "t", "1")]).unwrap();
        let first = store.get("a@x.org", "t").unwrap().unwrap();
        assert_eq!(first.schedule_tag, first.revision);
        let mut kept = put_of("a@x.org", "t", "2");
        if let Change::Put { tag, .. } = &mut kept {
            *tag = Tag::Kept;
        }
        store.commit(&[kept]).unwrap();
        let second = store.get("a@x.org", "t").unwrap().unwrap();
        assert_eq!(
            (second.text.as_str(), second.schedule_tag),
            ("2", first.schedule_tag)
        );
        assert_ne!(second.revision, first.revision);
        store.commit(&[put_of("a@x.org", "t", "3")]).unwrap();
        let third = store.get("a@x.org", "t").unwrap().unwrap();
        assert_eq!(third.schedule_tag, third.revision);
    }

    #[test]
    fn changes_since_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&[put_of("a@x.org", "one", "1")]).unwrap();
        let token = store.changes_since("a@x.org", 0).unwrap().latest;
        store.commit(&[put_of("a@x.org", "two", "2")]).unwrap();
        store.commit(&[put_of("b@x.org", "other", "3")]).unwrap();
        store
            .commit(&[Change::Delete {
                account: "a@x.org".into(),
                uid: "one".into(),
                expect: Expect::Any,
            }])
            .unwrap();
        let since = store.changes_since("a@x.org", token).unwrap();
        let seen: Vec<(&str, bool)> = since
            .changed
            .iter()
            .map(|c| (c.uid.as_str(), c.removed))
            .collect();
        assert_eq!(seen, [("two", false), ("one", true)]);
        // Only the latest change of each object stays.
        let all = store.changes_since("a@x.org", 0).unwrap();
        assert_eq!(all.changed.len(), 2);
        assert_eq!(all.latest, since.latest);
        assert!(
            store
                .changes_since("a@x.org", since.latest)
                .unwrap()
                .changed
                .is_empty()
        );
    }

    #[test]
    fn format_1_is_upgraded_with_its_objects_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.commit(&[put_of("a@x.org", "old", "1")]).unwrap();
        {
            // As a format-1 binary left it: no log.
            let trees = store.trees().unwrap();
            trees.changes.clear().unwrap();
            trees.latest.clear().unwrap();
            let meta = trees.db.open_tree("meta").unwrap();
            meta.insert("format", "imipd-1").unwrap();
            trees.db.flush().unwrap();
        }
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        let all = store.changes_since("a@x.org", 0).unwrap();
        assert_eq!(all.changed.len(), 1);
        assert_eq!(all.changed[0].uid, "old");
        let meta = store.trees().unwrap().db.open_tree("meta").unwrap();
        assert_eq!(meta.get("format").unwrap().unwrap().as_ref(), b"imipd-4");
    }

    #[test]
    fn format_3_counts_what_each_account_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .commit(&[
                put_of("a@x.org", "one", "12345"),
                put_of("a@x.org", "two", "123"),
                put_of("b@x.org", "three", "1"),
            ])
            .unwrap();
        {
            // As a format-3 binary left it: nothing counted.
            let trees = store.trees().unwrap();
            trees.usage.clear().unwrap();
            trees.meta.insert("format", "imipd-3").unwrap();
            trees.db.flush().unwrap();
        }
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        let usage = |a| store.usage(a).unwrap();
        assert_eq!(
            usage("a@x.org"),
            Usage {
                objects: 2,
                bytes: 8
            }
        );
        assert_eq!(
            usage("b@x.org"),
            Usage {
                objects: 1,
                bytes: 1
            }
        );
    }

    #[test]
    fn format_2_dates_its_deliveries_and_sent_messages_to_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let bob = crate::mailbox::Mailbox::parse("bob@x.org").unwrap();
        let message = crate::store::OutboundMessage {
            trace: "t".into(),
            account: "bob@x.org".into(),
            uid: "u".into(),
            method: "REQUEST".into(),
            from: bob.clone(),
            to: vec![bob],
            summary: Default::default(),
            calendar: String::new(),
            queued_at: 0,
            attempts: 0,
            next_attempt: 0,
            last_error: None,
            via: None,
        };
        {
            // As a format-2 binary left them: undated.
            let trees = store.trees().unwrap();
            trees.seen.insert(b"m1", &7u64.to_be_bytes()).unwrap();
            let json = serde_json::to_vec(&message).unwrap();
            trees.sent.insert(9u64.to_be_bytes(), json).unwrap();
            let meta = trees.db.open_tree("meta").unwrap();
            meta.insert("format", "imipd-2").unwrap();
            trees.db.flush().unwrap();
        }
        drop(store);
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.sent(9).unwrap().unwrap().uid, "u");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        // Dated to the upgrade: younger than an hour ago, older than in an hour.
        assert_eq!(
            store.expire(Expiry::all_before(now - 3600), 10).unwrap(),
            Expired::default()
        );
        assert!(store.seen(b"m1").unwrap());
        let gone = store.expire(Expiry::all_before(now + 3600), 10).unwrap();
        assert_eq!((gone.seen, gone.sent), (1, 1));
        assert!(!store.seen(b"m1").unwrap() && store.sent(9).unwrap().is_none());
    }
}
