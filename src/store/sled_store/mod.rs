//! The embedded backend: sled 0.34.7.

mod commit;
mod compact;
mod explained;
mod keys;
mod packed;
mod staged;
#[cfg(test)]
mod tests;
mod upgrade;

use super::{
    Change, Changed, Changes, Count, Durable, Expired, Expiry, Filed, GroupSync, Listed, Marker,
    Notice, OutboundMessage, Store, StoreError, StoredObject, Tally, Usage,
};
use explained::Explained;
use keys::{
    Head, NAME_OF, NAMED, change_key, count_of, footprint_key, inbox_of, listed, member_key,
    name_key, notice_value, object_key, seen_time_key, tally_key, usage_of,
};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use upgrade::{recorded_format, upgrade};

pub use compact::{CompactError, Compacted, Pace};

/// The on-disk layout this build reads and writes, recorded as `imipd-N` under `format` in the
/// `meta` tree.
const FORMAT: u32 = 8;

/// The tree of objects' and inbox items' texts, each under an id of its own (`packed`).
const TEXTS: &str = "texts";

/// Where `meta` keeps what is added to sled's ids: a store compacted into a fresh database
/// (`compact`) goes on above the ids its old one gave.
const ID_BASE: &str = "id_base";

/// The log's segments. sled refuses to open a store with another size than it was made with.
const SEGMENT_SIZE: usize = 8 * 1024 * 1024;

/// How often sled's flusher thread wakes, in ms. It is also what cleans the log, for at most
/// half of each period and only while it finds a segment to clean, then sleeps the rest: at
/// sled's 500 ms it slept while segments emptied, and mail faster than about 1,000 messages
/// a second left the file several times its data for good (BENCHMARKS.md, "The log cleaned
/// every 20 ms"). At 20 ms it keeps up with intake flat out; idle, the store's and the
/// footprints' flushers cost about 0.5% of a core.
const FLUSH_EVERY_MS: u64 = 20;

/// How the store's database is opened, and a compaction's copy made.
fn store_config(dir: &Path, cache_size: u64) -> sled::Config {
    sled::Config::new()
        .path(dir)
        .segment_size(SEGMENT_SIZE)
        .cache_capacity(cache_size)
        .flush_every_ms(Some(FLUSH_EVERY_MS))
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
    /// Added to sled's ids (`ID_BASE`).
    id_base: u64,
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
    /// Where each object's instances lie, filed by bucket of time: `account \0 bucket uid` →
    /// a footprint (`footprint_key`).
    footprints: sled::Tree,
    /// The buckets each object is filed under: `account \0 uid` → the buckets.
    footprint_buckets: sled::Tree,
    /// The position in its change log each account's footprints are up to date with.
    footprint_positions: sled::Tree,
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
    /// Objects' texts and inbox items' texts, each under the id of the change that wrote it
    /// (what `objects` and `inbox` hold points here): the trees a commit reads and rewrites
    /// stay small enough for sled's cache.
    texts: sled::Tree,
    /// The writes of the commit being written, in one record (`staged`): `id` → the writes.
    journal: sled::Tree,
    /// Held by the commit being decided and written.
    committing: std::sync::Mutex<()>,
    /// Held by the footprints being filed.
    filing: std::sync::Mutex<()>,
    log: File,
    dir: PathBuf,
    /// The blob files synced so far, by name, with the length they had then.
    blobs: std::sync::Mutex<std::collections::HashMap<std::ffi::OsString, u64>>,
}

/// Largest value a commit may carry. sled 0.34 writes values above its blob threshold
/// (a quarter of the 8 MiB segment) to separate files without fsync; staying well below
/// keeps every byte in the log file that `sync` makes durable.
pub const MAX_VALUE: usize = 1024 * 1024;

/// What the footprints' trees hold: format 2 files every object's listing beside where its
/// instances lie (`http::dav::footprint`). Trees of another format, an older build's filing,
/// are cleared when the store opens: they are a cache that the next query files again.
const FOOTPRINT_FORMAT: &[u8] = b"2";

/// `store.cache_size` when it is not set: see `config::Store`.
pub const DEFAULT_CACHE_SIZE: u64 = 8 * 1024 * 1024;

fn unavailable(e: impl Explained) -> StoreError {
    StoreError::Unavailable(e.explained())
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

    /// Compacts the store in a folder that no daemon uses (`compact::compact`).
    pub fn compact(
        dir: &Path,
        cache_size: u64,
        pace: Pace,
        progress: impl FnMut(&Compacted),
    ) -> Result<Compacted, CompactError> {
        compact::compact(dir, cache_size, pace, progress)
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

    /// `with`, for an operation that writes: then hands over what it replaced.
    fn writing<T>(
        &self,
        op: impl FnOnce(&Trees) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let result = self.with(op);
        hand_over_replaced();
        result
    }
}

/// Hands what this thread's sled calls replaced over to be freed; after each call that writes
/// (commits, syncs, expiry, the outbox, the footprints).
///
/// sled frees what an operation replaced (a page's old version, when a write changes the page
/// or the cache pages it out; an old log buffer, which holds its whole 8 MiB segment) once no
/// thread can still read it, through crossbeam's epochs: each thread gathers those in a bag of
/// its own, handed over to be freed only once it holds 64. A thread that then waited (a worker
/// between messages, a thread of the blocking pool between sync rounds) kept its bag as long
/// as it waited: tens of MiB after a bulk load (BENCHMARKS.md, issue 24 goal 4;
/// `tests/store_memory.rs`). Handed over, they are freed once every thread has moved on.
/// Writes replace the most; after every read as well, a CalDAV multiget of 100 objects (100
/// reads) lost about a tenth of its throughput for a few MiB more.
fn hand_over_replaced() {
    crossbeam_epoch::pin().flush();
}

impl Trees {
    fn open(dir: &Path, cache_size: u64, generation: u64) -> Result<Self, StoreError> {
        let lock = compact::FolderLock::take(dir)?;
        Self::open_in(dir, cache_size, generation, &lock)
    }

    /// Opens the store in a folder whose lock is held: a compaction cut short is finished
    /// first.
    fn open_in(
        dir: &Path,
        cache_size: u64,
        generation: u64,
        _held: &compact::FolderLock,
    ) -> Result<Self, StoreError> {
        compact::finish(dir).map_err(|e| {
            StoreError::Unavailable(format!("finishing a compaction cut short: {e}"))
        })?;
        let db = open_locked(&store_config(dir, cache_size), dir)?;
        // Footprints are a cache of their own: their pages do not push the store's out of its
        // cache, and their writes are never part of a commit's sync. Its cache is twice the
        // store's: a Depth 1 PROPFIND of 100,000 objects reads 6 MB of it. Its log is cleaned
        // as often as the store's (`FLUSH_EVERY_MS`): the first queries file every object at
        // once, a burst that left it at 3.7 times its data at sled's 500 ms.
        let footprints = sled::Config::new()
            .path(dir.join("footprints"))
            .cache_capacity(cache_size.saturating_mul(2))
            .flush_every_ms(Some(FLUSH_EVERY_MS));
        let cache = open_locked(&footprints, dir)?;
        let (footprints, footprint_buckets, footprint_positions) = footprint_trees(&cache)?;
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
        let id_base = meta
            .get(ID_BASE)
            .map_err(unavailable)?
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0);
        let trees = Trees {
            generation,
            id_base,
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
            footprints,
            footprint_buckets,
            footprint_positions,
            properties: db.open_tree("properties").map_err(unavailable)?,
            calendars: db.open_tree("calendars").map_err(unavailable)?,
            placements: db.open_tree("placements").map_err(unavailable)?,
            names: db.open_tree("names").map_err(unavailable)?,
            usage: db.open_tree("usage").map_err(unavailable)?,
            tallies: db.open_tree("tallies").map_err(unavailable)?,
            meta,
            journal: db.open_tree("journal").map_err(unavailable)?,
            texts: db.open_tree(TEXTS).map_err(unavailable)?,
            committing: Default::default(),
            filing: Default::default(),
            db,
            log,
            dir: dir.to_path_buf(),
            blobs: Default::default(),
        };
        trees.finish_interrupted()?;
        Ok(trees)
    }

    /// The trees a commit writes, in the order of its views (`commit::Views::of`) and of the
    /// tree indexes in journal records: new trees go at the end.
    fn committed(&self) -> [&sled::Tree; 19] {
        [
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
            &self.texts,
        ]
    }

    /// An id no commit of this store has had: sled's next, above those of the database a
    /// compaction copied this one from.
    fn fresh_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id().map_err(unavailable)? + self.id_base)
    }

    /// The object under `key` of `objects`, whose value was read as `value`, with its text.
    fn object_at(&self, key: &[u8], value: &[u8]) -> Result<Option<StoredObject>, StoreError> {
        let Some(mut head) = Head::of(value) else {
            return Ok(None);
        };
        // Head and text are two keys, read one after the other, and a commit that replaces or
        // removes the object writes its new head before it removes the old text: a text gone
        // since the head was read means a new head (or none) to read. A head that stays and
        // has no text is damaged, and its object read as missing.
        loop {
            if let Some(text) = self.text(head.text)? {
                return Ok(Some(StoredObject {
                    revision: head.revision,
                    schedule_tag: head.schedule_tag,
                    text,
                }));
            }
            let now = self.objects.get(key).map_err(unavailable)?;
            match now.as_deref().and_then(Head::of) {
                Some(now) if now.text != head.text => head = now,
                _ => return Ok(None),
            }
        }
    }

    /// A text of `texts`. One that does not unpack is reported and read as missing, as a text
    /// that is not UTF-8 was before: the object it belongs to is damaged, the store is not.
    fn text(&self, id: u64) -> Result<Option<String>, StoreError> {
        let Some(value) = self.texts.get(id.to_be_bytes()).map_err(unavailable)? else {
            return Ok(None);
        };
        match packed::unpack(&value) {
            Ok(text) => Ok(String::from_utf8(text).ok()),
            Err(error) => {
                tracing::error!(%error, text = id, "a stored text cannot be read");
                Ok(None)
            }
        }
    }

    /// Writes the commits a crash interrupted again from their journal records, and makes
    /// that durable before anything reads the store.
    fn finish_interrupted(&self) -> Result<(), StoreError> {
        let finished = staged::replay(&self.journal, &self.committed())?;
        if finished > 0 {
            self.db.flush().map_err(unavailable)?;
            self.log.sync_data().map_err(unavailable)?;
            tracing::warn!(
                commits = finished,
                "commits a crash interrupted written again"
            );
        }
        Ok(())
    }
}

/// `footprint_buckets`' value: the buckets, 8 bytes each.
fn bucket_list(buckets: &[i64]) -> Vec<u8> {
    buckets.iter().flat_map(|b| b.to_be_bytes()).collect()
}

fn buckets_of(value: &[u8]) -> impl Iterator<Item = i64> + '_ {
    value
        .chunks_exact(8)
        .map(|b| i64::from_be_bytes(b.try_into().unwrap_or_default()))
}

/// What a tree holds under a prefix, by the rest of each key (an object's UID), as `read`
/// makes it of each value; values it cannot read are left out.
fn scan<T>(
    tree: &sled::Tree,
    prefix: &[u8],
    read: impl Fn(&[u8]) -> Option<T>,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut out = Vec::new();
    for item in tree.scan_prefix(prefix) {
        let (key, value) = item.map_err(unavailable)?;
        if let Some(read) = read(&value) {
            out.push((
                String::from_utf8_lossy(&key[prefix.len()..]).into_owned(),
                read,
            ));
        }
    }
    Ok(out)
}

/// Opens a sled database, waiting up to 2 s for the lock of an opening dropped a moment ago
/// (kept until sled's flusher thread ends); another process holding it is refused.
/// The footprints' trees, cleared when they hold another format than `FOOTPRINT_FORMAT`.
fn footprint_trees(cache: &sled::Db) -> Result<(sled::Tree, sled::Tree, sled::Tree), StoreError> {
    let open = |name| cache.open_tree(name).map_err(unavailable);
    let trees = (
        open("footprints")?,
        open("footprint_buckets")?,
        open("footprint_positions")?,
    );
    if cache.get("format").map_err(unavailable)?.as_deref() != Some(FOOTPRINT_FORMAT) {
        for tree in [&trees.0, &trees.1, &trees.2] {
            tree.clear().map_err(unavailable)?;
        }
        cache
            .insert("format", FOOTPRINT_FORMAT)
            .map_err(unavailable)?;
        cache.flush().map_err(unavailable)?;
    }
    Ok(trees)
}

fn open_locked(config: &sled::Config, dir: &Path) -> Result<sled::Db, StoreError> {
    let mut waits = 0;
    loop {
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
            opened => return opened.map_err(unavailable),
        }
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
        let key = object_key(account, uid);
        match self.objects.get(&key).map_err(unavailable)? {
            Some(value) => self.object_at(&key, &value),
            None => Ok(None),
        }
    }

    fn list(&self, account: &str) -> Result<Vec<(String, StoredObject)>, StoreError> {
        let prefix = object_key(account, "");
        let mut out = Vec::new();
        for item in self.objects.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            if let Some(object) = self.object_at(&key, &value)? {
                let uid = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                out.push((uid, object));
            }
        }
        Ok(out)
    }

    fn listing(&self, account: &str) -> Result<Vec<(String, Listed)>, StoreError> {
        scan(&self.objects, &object_key(account, ""), listed)
    }

    fn footprint_position(&self, account: &str) -> Result<u64, StoreError> {
        let found = self.footprint_positions.get(account).map_err(unavailable)?;
        Ok(found
            .and_then(|v| Some(u64::from_be_bytes(v.as_ref().try_into().ok()?)))
            .unwrap_or(0))
    }

    fn footprints_in(
        &self,
        account: &str,
        buckets: &[i64],
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for bucket in buckets {
            let prefix = footprint_key(account, *bucket, "");
            out.extend(scan(&self.footprints, &prefix, |v| Some(v.to_vec()))?);
        }
        Ok(out)
    }

    fn keep_footprints(
        &self,
        account: &str,
        position: u64,
        objects: &[Filed],
    ) -> Result<(), StoreError> {
        // sled shows a commit before it is synced: what was filed from a commit that a crash
        // then undoes would stay filed. Synced first, everything read from is durable.
        self.sync()?;
        // Plain writes, one filing at a time (a sled transaction would stop every commit while
        // it runs), in an order a crash may cut anywhere: an object's list of buckets names
        // every bucket it may have an entry in before any entry is written, and the position
        // comes last, so what is filed again after a crash finds every entry it replaces.
        let _alone = self.filing.lock().unwrap_or_else(|e| e.into_inner());
        for (uid, by_bucket) in objects {
            let key = object_key(account, uid);
            let listed = self.footprint_buckets.get(&key).map_err(unavailable)?;
            let old: Vec<i64> = listed.iter().flat_map(|v| buckets_of(v)).collect();
            let new: Vec<i64> = by_bucket.iter().map(|(bucket, _)| *bucket).collect();
            let mut both = old.clone();
            both.extend(new.iter().filter(|b| !old.contains(b)));
            if both.len() > old.len() {
                self.footprint_buckets
                    .insert(&key, bucket_list(&both))
                    .map_err(unavailable)?;
            }
            for bucket in &old {
                let entry = footprint_key(account, *bucket, uid);
                self.footprints.remove(entry).map_err(unavailable)?;
            }
            for (bucket, bytes) in by_bucket {
                let entry = footprint_key(account, *bucket, uid);
                self.footprints
                    .insert(entry, bytes.as_slice())
                    .map_err(unavailable)?;
            }
            match new.is_empty() {
                true => self.footprint_buckets.remove(key),
                false => self.footprint_buckets.insert(key, bucket_list(&new)),
            }
            .map_err(unavailable)?;
        }
        self.footprint_positions
            .insert(account.as_bytes(), &position.to_be_bytes())
            .map_err(unavailable)?;
        Ok(())
    }

    fn all(&self) -> Result<Vec<(String, String, StoredObject)>, StoreError> {
        let mut out = Vec::new();
        for item in self.objects.iter() {
            let (key, value) = item.map_err(unavailable)?;
            let mut halves = key.splitn(2, |b| *b == 0);
            let account = String::from_utf8_lossy(halves.next().unwrap_or_default()).into_owned();
            let uid = String::from_utf8_lossy(halves.next().unwrap_or_default()).into_owned();
            if let Some(object) = self.object_at(&key, &value)? {
                out.push((account, uid, object));
            }
        }
        Ok(out)
    }

    fn seen(&self, key: &[u8]) -> Result<bool, StoreError> {
        self.seen.contains_key(key).map_err(unavailable)
    }

    fn calendars(&self, account: &str) -> Result<Vec<String>, StoreError> {
        let named = scan(&self.calendars, &object_key(account, ""), |_| Some(()))?;
        Ok(named.into_iter().map(|(name, ())| name).collect())
    }

    fn placements(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        let calendar = |value: &[u8]| Some(String::from_utf8_lossy(value).into_owned());
        scan(&self.placements, &object_key(account, ""), calendar)
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
        let prefix = member_key(account, calendar, &[]);
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
        // Each item's value says its text's length: the texts are not read.
        for item in self.inbox.scan_prefix(&prefix) {
            let (key, value) = item.map_err(unavailable)?;
            let id = key[prefix.len()..].try_into().map(u64::from_be_bytes);
            let length = inbox_of(&value).map_or(0, |(_, length)| length);
            out.push((id.unwrap_or_default(), length));
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
        let prefix = member_key(account, uid, &[]);
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
            let Some((text, _)) = inbox_of(&value) else {
                continue;
            };
            // An item trimmed or removed since the scan read it has lost its text: it is gone.
            match self.text(text)? {
                Some(text) => out.push((id, text)),
                None if self.inbox.contains_key(&key).map_err(unavailable)? => {
                    out.push((id, String::new()))
                }
                None => {}
            }
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
        let key = member_key(account, uid, attendee.as_bytes());
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
        // Plain removals (a sled transaction or batch would stop every commit while it runs).
        // A crash may cut them anywhere: a delivery's time goes after the delivery, so the
        // next sweep finds what is left. A commit meanwhile that counts on a tally removed
        // here writes it again: it is forgotten a sweep later.
        for key in &old_seen {
            let seen = key.get(8..).unwrap_or_default();
            self.seen.remove(seen).map_err(unavailable)?;
            self.seen_times.remove(key).map_err(unavailable)?;
        }
        // Ids grow in the order messages were queued, which is nearly the order the relay took
        // them: the walk stops at the first one too young.
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
            self.sent.remove(key).map_err(unavailable)?;
            sent += 1;
        }
        Ok(Expired {
            seen: old_seen.len(),
            sent,
            tallies: self.expire_tallies(expiry.tallies_before, limit)?,
        })
    }

    /// Forgets up to `limit` windowed tallies whose window began before `before`.
    fn expire_tallies(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        let windowed = [Tally::Echo.code(), Tally::NewFrom.code()];
        let mut forgotten = 0;
        for item in self.tallies.iter() {
            let (key, value) = item.map_err(unavailable)?;
            let code = key
                .iter()
                .position(|b| *b == 0)
                .and_then(|at| key.get(at + 1));
            let old_enough = count_of(&value).is_some_and(|c| c.since < before);
            if code.is_some_and(|c| windowed.contains(c)) && old_enough {
                self.tallies.remove(key).map_err(unavailable)?;
                forgotten += 1;
                if forgotten == limit {
                    break;
                }
            }
        }
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
        sync_folder(folder)?;
    }
    Ok(())
}

/// Makes a folder's entries durable.
fn sync_folder(folder: &Path) -> std::io::Result<()> {
    File::open(folder)?.sync_all()
}

impl Store for SledStore {
    fn get(&self, account: &str, uid: &str) -> Result<Option<StoredObject>, StoreError> {
        self.with(|t| t.get(account, uid))
    }
    fn list(&self, account: &str) -> Result<Vec<(String, StoredObject)>, StoreError> {
        self.with(|t| t.list(account))
    }
    fn listing(&self, account: &str) -> Result<Vec<(String, Listed)>, StoreError> {
        self.with(|t| t.listing(account))
    }
    fn all(&self) -> Result<Vec<(String, String, StoredObject)>, StoreError> {
        self.with(|t| t.all())
    }
    fn footprint_position(&self, account: &str) -> Result<u64, StoreError> {
        self.with(|t| t.footprint_position(account))
    }
    fn footprints_in(
        &self,
        account: &str,
        buckets: &[i64],
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.with(|t| t.footprints_in(account, buckets))
    }
    fn keep_footprints(
        &self,
        account: &str,
        position: u64,
        objects: &[Filed],
    ) -> Result<(), StoreError> {
        self.writing(|t| t.keep_footprints(account, position, objects))
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
        self.writing(|t| t.commit(changes))
    }
    fn outbox(&self) -> Result<Vec<(u64, OutboundMessage)>, StoreError> {
        self.with(|t| t.outbox())
    }
    fn outbox_remove(&self, id: u64) -> Result<(), StoreError> {
        self.writing(|t| t.outbox_remove(id))
    }
    /// One process holds a sled store (its lock file): its worker's own bookkeeping suffices.
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
        self.writing(|t| t.expire(expiry, limit))
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with(|t| t.size_on_disk())
    }
    fn secret(&self) -> [u8; 32] {
        self.secret
    }
    fn sync_position(&self, account: &str) -> Result<u64, StoreError> {
        self.with(|t| t.latest_change(account))
    }
    fn max_value(&self) -> usize {
        MAX_VALUE
    }
    fn durable(&self) -> Durable<'_> {
        Durable::BySync(self)
    }
}

impl GroupSync for SledStore {
    fn sync(&self) -> Result<u64, StoreError> {
        self.writing(|t| t.sync())
    }
    fn generation(&self) -> u64 {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }
}
