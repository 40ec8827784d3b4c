//! Compaction by copy (`imipd compact`). sled 0.34 gives space back only when the last
//! segments of its log empty: a store written faster than its cleaner kept up (by a build
//! that let sled wake it every 500 ms, `FLUSH_EVERY_MS`) stays several times its data, and so
//! may one much of whose mail has expired (BENCHMARKS.md, "The store's size is the pace of its
//! writes"). A copy of every tree into a fresh database is about twice its data; the copy
//! then takes the old files' place.
//!
//! The swap survives a crash at any point: a marker names its phase, and the next opening of
//! the store (`finish`) completes it, so the old database's files (`snap.*` above all) never
//! meet the new one's. Copy, swap and openings exclude each other by a lock on the folder
//! (`FolderLock`); the daemon's other files in the folder (outbound journal, instance id,
//! spool, the footprints' cache) are left where they are.

use super::{Explained, ID_BASE, TEXTS, Trees, packed, sync_folder, unavailable};
use crate::store::StoreError;
use blake2::{Blake2b512, Digest};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the copy is written.
const NEW: &str = "compact.new";
/// Where the old database's files go before they are removed.
const OLD: &str = "compact.old";
/// Present once the copy is complete and durable: the old files are being moved out.
const MOVING_OUT: &str = "compact.moving-out";
/// Present once every old file is out: the copy's files are being moved in.
const MOVING_IN: &str = "compact.moving-in";

/// Why a compaction stopped. The store is as it was in every case but the last, where it is
/// the copy, complete, and the next opening finishes putting it in place.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// There is no store in the folder.
    #[error("there is no store in {0}")]
    NoStore(PathBuf),
    /// The store could not be opened or read, or the copy not written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file of the copy or of the swap.
    #[error("{what}: {}", .source.explained())]
    Io {
        /// What was being done.
        what: String,
        /// What the system said.
        source: io::Error,
    },
    /// The copy would leave the filesystem with less than its reserve.
    #[error(
        "the copy stopped with {free} bytes free on the store's filesystem, which it leaves \
         at least {reserve} (what the mail system writes there needs room); the store is left \
         as it was"
    )]
    NoRoom {
        /// Bytes free when it stopped.
        free: u64,
        /// What it leaves free.
        reserve: u64,
    },
    /// The copy, read back, is not what was copied.
    #[error("the copy differs from the store in tree {0}; the store is left as it was")]
    Differs(String),
    /// The copy is complete but could not be put in place; the next opening does it.
    #[error(
        "the copy is complete but not yet in place ({0}); the next start of imipd puts it there"
    )]
    Unfinished(io::Error),
}

/// A failure of the copy's database: its I/O named as such (a full disk, mostly).
fn written(error: sled::Error) -> CompactError {
    match error {
        sled::Error::Io(source) => CompactError::Io {
            what: "writing the copy (the store is left as it was)".into(),
            source,
        },
        other => CompactError::Store(unavailable(other)),
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> CompactError {
    let what = what.into();
    move |source| CompactError::Io { what, source }
}

/// How fast the copy writes, in bytes of keys and values a second.
#[derive(Debug, Clone, Copy)]
pub struct Pace(f64);

impl Pace {
    /// The slowest pace, in bytes a second: slower, the copy's schedule would overflow.
    pub const SLOWEST: f64 = 1_000.0;

    /// A pace of `bytes` a second; none when it is not a number at least `SLOWEST`.
    pub fn per_second(bytes: f64) -> Option<Pace> {
        (bytes.is_finite() && bytes >= Self::SLOWEST).then_some(Pace(bytes))
    }

    /// Sleeps until `bytes` are due, counted from `started`.
    fn keep(self, started: Instant, bytes: u64) {
        let due = Duration::from_secs_f64(bytes as f64 / self.0);
        let elapsed = started.elapsed();
        // Short sleeps cost more than they pace.
        if due > elapsed + Duration::from_millis(10) {
            std::thread::sleep(due - elapsed);
        }
    }
}

/// What a compaction copied and what it gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Keys copied, in every tree.
    pub keys: u64,
    /// Bytes of keys and values copied.
    pub bytes: u64,
    /// The database's files before, in bytes.
    pub before: u64,
    /// The database's files after.
    pub after: u64,
}

/// Copies the store in `dir` into a fresh database at `pace`, checks the copy, and puts it
/// in the old one's place. `progress` hears of each 16 MB copied. The store must not be
/// open elsewhere: a daemon using it is refused as a second daemon would be.
pub fn compact(
    dir: &Path,
    cache_size: u64,
    pace: Pace,
    mut progress: impl FnMut(&Compacted),
) -> Result<Compacted, CompactError> {
    if !dir.join("db").exists() {
        return Err(CompactError::NoStore(dir.to_path_buf()));
    }
    let lock = FolderLock::take(dir)?;
    let before = database_size(dir).map_err(io_error("sizing the store"))?;
    let old = Trees::open_in(dir, cache_size, 0, &lock)?;
    let new_dir = dir.join(NEW);
    let copied = copy_into(&old, &new_dir, cache_size, pace, &mut progress);
    drop(old);
    let mut copied = match copied {
        Ok(copied) => copied,
        Err(error) => {
            // Only the copy was written: what is left of it goes, the store stays.
            let _ = fs::remove_dir_all(&new_dir);
            return Err(error);
        }
    };
    released(&dir.join("db")).map_err(io_error("waiting for the store to close"))?;
    if let Err(error) = mark(dir) {
        // A marker that may have reached the disk must not outlive the copy it points to.
        return match fs::remove_file(dir.join(MOVING_OUT)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(CompactError::Unfinished(error)),
            _ => {
                let _ = fs::remove_dir_all(&new_dir);
                Err(CompactError::Io {
                    what: "marking the copy complete (the store is left as it was)".into(),
                    source: error,
                })
            }
        };
    }
    finish(dir).map_err(CompactError::Unfinished)?;
    copied.before = before;
    copied.after = database_size(dir).map_err(io_error("sizing the copy"))?;
    Ok(copied)
}

/// Writes the copy and makes it durable, with the owner and modes of the old files.
fn copy_into(
    old: &Trees,
    new_dir: &Path,
    cache_size: u64,
    pace: Pace,
    progress: &mut impl FnMut(&Compacted),
) -> Result<Compacted, CompactError> {
    let _ = fs::remove_dir_all(new_dir);
    let new = super::store_config(new_dir, cache_size)
        .open()
        .map_err(written)?;
    let (copied, digests) = copy(old, &new, pace, progress)?;
    // Ids the copy hands out start above every id the old store gave (sled's own counter
    // starts again at 0 in a fresh database): texts are filed under them.
    let next = old.fresh_id()?;
    new.open_tree("meta")
        .and_then(|meta| meta.insert(ID_BASE, &next.to_be_bytes()))
        .map_err(written)?;
    new.flush().map_err(written)?;
    drop(new);
    let closed =
        || released(&new_dir.join("db")).map_err(io_error("waiting for the copy to close"));
    closed()?;
    // Read back from its files, as the daemon will open it.
    let reopened = super::store_config(new_dir, cache_size)
        .open()
        .map_err(written)?;
    compare(&reopened, &old.db.tree_names(), digests)?;
    drop(reopened);
    closed()?;
    let like = fs::metadata(old.dir.join("db")).map_err(io_error("reading the store's owner"))?;
    settle(new_dir, &like).map_err(io_error(format!("syncing {}", new_dir.display())))?;
    Ok(copied)
}

/// A digest of each tree's keys and values, in the order of `tree_names`.
type Digests = Vec<blake2::digest::Output<Blake2b512>>;

/// Every tree, key by key at `pace`, with the digest of what was copied.
fn copy(
    old: &Trees,
    new: &sled::Db,
    pace: Pace,
    progress: &mut impl FnMut(&Compacted),
) -> Result<(Compacted, Digests), CompactError> {
    let started = Instant::now();
    let mut copied = Compacted::default();
    let (mut reported, mut checked) = (0, 0);
    let room = Room::of(&old.dir).map_err(io_error("reading the free space"))?;
    let names = old.db.tree_names();
    let mut digests = Vec::with_capacity(names.len());
    for name in &names {
        let from = old.db.open_tree(name).map_err(unavailable)?;
        let to = new.open_tree(name).map_err(written)?;
        let mut digest = Blake2b512::new();
        // Texts of format 7 are packed against the dictionary as they are copied.
        let texts = name.as_ref() == TEXTS.as_bytes();
        for item in from.iter() {
            let (key, value) = item.map_err(unavailable)?;
            let value = if texts {
                packed::repacked(value)
            } else {
                value
            };
            to.insert(&key, &value).map_err(written)?;
            hash_pair(&mut digest, name, &key, &value);
            copied.keys += 1;
            copied.bytes += (key.len() + value.len()) as u64;
            if copied.bytes - checked >= 1 << 20 {
                checked = copied.bytes;
                room.check()?;
            }
            if copied.bytes - reported >= 16 << 20 {
                reported = copied.bytes;
                progress(&copied);
            }
            pace.keep(started, copied.bytes);
        }
        digests.push(digest.finalize());
    }
    Ok((copied, digests))
}

/// The copy's trees read back against the digests of what was copied.
fn compare(new: &sled::Db, names: &[sled::IVec], digests: Digests) -> Result<(), CompactError> {
    for (name, digest) in names.iter().zip(digests) {
        let mut again = Blake2b512::new();
        for item in new.open_tree(name).map_err(written)?.iter() {
            let (key, value) = item.map_err(written)?;
            hash_pair(&mut again, name, &key, &value);
        }
        if again.finalize() != digest {
            return Err(CompactError::Differs(
                String::from_utf8_lossy(name).into_owned(),
            ));
        }
    }
    Ok(())
}

/// The free space a copy leaves on the store's filesystem, which the MTA's queue or the
/// daemon's spool often share: 5% of it, at most 64 MB.
struct Room {
    dir: PathBuf,
    reserve: u64,
}

impl Room {
    fn of(dir: &Path) -> io::Result<Self> {
        let (_, total) = Self::space(dir)?;
        Ok(Room {
            dir: dir.to_path_buf(),
            reserve: (total / 20).min(64 << 20),
        })
    }

    /// Bytes free to an unprivileged writer, and the filesystem's size.
    fn space(dir: &Path) -> io::Result<(u64, u64)> {
        let found = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
        let unit = found.fragment_size();
        Ok((
            found.blocks_available().saturating_mul(unit),
            found.blocks().saturating_mul(unit),
        ))
    }

    fn check(&self) -> Result<(), CompactError> {
        let (free, _) = Self::space(&self.dir).map_err(io_error("reading the free space"))?;
        match free < self.reserve {
            true => Err(CompactError::NoRoom {
                free,
                reserve: self.reserve,
            }),
            false => Ok(()),
        }
    }
}

/// Adds a key and its value to a tree's digest; `meta`'s id base, which the copy sets anew,
/// is left out.
fn hash_pair(digest: &mut Blake2b512, tree: &[u8], key: &[u8], value: &[u8]) {
    if tree == b"meta" && key == ID_BASE.as_bytes() {
        return;
    }
    for part in [key, value] {
        digest.update((part.len() as u64).to_be_bytes());
        digest.update(part);
    }
}

/// Gives every file and folder of the copy the old database's owner and mode, and makes them
/// durable: sled syncs its log only partly (sled #1452) and its blobs not at all.
fn settle(folder: &Path, like: &fs::Metadata) -> io::Result<()> {
    for entry in fs::read_dir(folder)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            settle(&path, like)?;
            continue;
        }
        own_like(&path, like, like.mode() & 0o7777)?;
        File::open(&path)?.sync_all()?;
    }
    // A folder gets the file's mode with search where reading is allowed.
    let mode = like.mode() & 0o7777;
    own_like(folder, like, mode | ((mode & 0o444) >> 2))?;
    sync_folder(folder)
}

fn own_like(path: &Path, like: &fs::Metadata, mode: u32) -> io::Result<()> {
    let found = fs::metadata(path)?;
    if (found.uid(), found.gid()) != (like.uid(), like.gid()) {
        std::os::unix::fs::chown(path, Some(like.uid()), Some(like.gid()))?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Waits until no thread of a closed database holds its lock any more (sled's flusher ends
/// a moment after the last handle goes): until then it may still write beside the file.
fn released(db_file: &Path) -> io::Result<()> {
    let file = File::open(db_file)?;
    match locked_within(&file, Duration::from_secs(10))? {
        true => file.unlock(),
        false => Err(io::Error::other(format!(
            "{} is still held after 10 s",
            db_file.display()
        ))),
    }
}

/// Takes an exclusive lock on a file, trying every 50 ms for up to `wait`; false when
/// another holder kept it that long.
fn locked_within(file: &File, wait: Duration) -> io::Result<bool> {
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// Marks the durable copy as the store from now on: `finish` puts it in place.
fn mark(dir: &Path) -> io::Result<()> {
    File::create(dir.join(MOVING_OUT))?.sync_all()?;
    sync_folder(dir)
}

/// Completes a swap a crash interrupted, from its marker, or removes what an interrupted
/// copy or clean-up left; with no marker the database in `dir` is whole. Run by every
/// opening of the store, under the folder's lock.
pub(super) fn finish(dir: &Path) -> io::Result<()> {
    let (new, old) = (dir.join(NEW), dir.join(OLD));
    if dir.join(MOVING_OUT).exists() {
        fs::create_dir_all(&old)?;
        for name in database_files(dir)? {
            fs::rename(dir.join(&name), old.join(&name))?;
        }
        sync_folder(&old)?;
        sync_folder(dir)?;
        fs::rename(dir.join(MOVING_OUT), dir.join(MOVING_IN))?;
        sync_folder(dir)?;
    }
    if dir.join(MOVING_IN).exists() {
        for entry in fs::read_dir(&new)? {
            let name = entry?.file_name();
            fs::rename(new.join(&name), dir.join(&name))?;
        }
        sync_folder(dir)?;
        fs::remove_file(dir.join(MOVING_IN))?;
        sync_folder(dir)?;
    }
    for leftover in [new, old] {
        match fs::remove_dir_all(&leftover) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The names of sled's own files in a folder: its log, configuration, blobs and snapshots.
fn database_files(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let text = name.to_string_lossy();
        if matches!(text.as_ref(), "db" | "conf" | "blobs") || text.starts_with("snap.") {
            names.push(name);
        }
    }
    Ok(names)
}

/// Bytes in sled's files of the store (not the footprints' cache beside them).
fn database_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for name in database_files(dir)? {
        total += tree_size(&dir.join(name))?;
    }
    Ok(total)
}

fn tree_size(path: &Path) -> io::Result<u64> {
    let metadata = fs::symlink_metadata(path)?;
    if !metadata.is_dir() {
        return Ok(metadata.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        total += tree_size(&entry?.path())?;
    }
    Ok(total)
}

/// An exclusive lock on the store's folder, held by a compaction from start to end and by
/// each opening while it finishes a swap and opens sled: an opening never sees a swap half
/// done, and a compaction never starts beside an opening.
pub(super) struct FolderLock {
    _held: File,
}

impl FolderLock {
    /// Takes the lock, waiting up to 2 s (an opening holds it for a moment).
    pub(super) fn take(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(unavailable)?;
        let folder = File::open(dir).map_err(unavailable)?;
        if locked_within(&folder, Duration::from_secs(2)).map_err(unavailable)? {
            return Ok(FolderLock { _held: folder });
        }
        Err(StoreError::Unavailable(format!(
            "imipd compact is working on the store in {}: start imipd once it is done",
            dir.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::SledStore;
    use super::*;
    use crate::store::{Change, Expect, Store, Tag};
    use std::collections::BTreeMap;

    type Dump = BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>>;

    const FAST: Pace = Pace(1e12);

    #[test]
    fn a_pace_is_a_number_of_bytes_a_second_the_schedule_can_keep() {
        for refused in [0.0, -1.0, 999.0, f64::NAN, f64::INFINITY] {
            assert!(Pace::per_second(refused).is_none(), "{refused}");
        }
        assert!(Pace::per_second(1_000.0).is_some());
    }

    fn put(uid: &str, text: &str) -> Change {
        Change::Put {
            account: "a@x.org".into(),
            uid: uid.into(),
            text: text.into(),
            expect: Expect::Any,
            tag: Tag::New,
        }
    }

    fn text(n: usize, round: usize) -> String {
        format!("BEGIN:VCALENDAR\r\nUID:u{n}\r\nSEQUENCE:{round}\r\nEND:VCALENDAR\r\n")
    }

    /// A closed store of ten objects written twenty times over, with inbox items.
    fn written_over() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        for round in 0..20 {
            for n in 0..10 {
                let item = Change::Inbox {
                    account: "a@x.org".into(),
                    text: text(n, round),
                    keep: 5,
                    keep_bytes: 100_000,
                };
                store
                    .commit(&[put(&format!("u{n}"), &text(n, round)), item])
                    .unwrap();
            }
        }
        dir
    }

    /// Every tree's keys and values, `meta`'s id base left out.
    fn dump(dir: &Path) -> Dump {
        let store = SledStore::open(dir).unwrap();
        let trees = store.trees().unwrap();
        let mut out = Dump::new();
        for name in trees.db.tree_names() {
            for item in trees.db.open_tree(&name).unwrap().iter() {
                let (key, value) = item.unwrap();
                if name.as_ref() != b"meta" || key.as_ref() != ID_BASE.as_bytes() {
                    out.insert((name.to_vec(), key.to_vec()), value.to_vec());
                }
            }
        }
        out
    }

    fn id_base(dir: &Path) -> u64 {
        SledStore::open(dir).unwrap().trees().unwrap().id_base
    }

    #[test]
    fn texts_packed_by_format_7_are_packed_against_the_dictionary() {
        let dir = written_over();
        let before = {
            let store = SledStore::open(dir.path()).unwrap();
            let trees = store.trees().unwrap();
            for item in trees.texts.iter() {
                let (key, value) = item.unwrap();
                let text = packed::unpack(&value).unwrap();
                trees
                    .texts
                    .insert(key, packed::packed_as_format_7(&text))
                    .unwrap();
            }
            trees.db.flush().unwrap();
            (
                store.list("a@x.org").unwrap(),
                store.inbox("a@x.org").unwrap(),
            )
        };
        compact(dir.path(), 1 << 20, FAST, |_| {}).unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let trees = store.trees().unwrap();
        assert!(trees.texts.iter().all(|item| {
            let (_, value) = item.unwrap();
            packed::against_the_dictionary(&value)
        }));
        let after = (
            store.list("a@x.org").unwrap(),
            store.inbox("a@x.org").unwrap(),
        );
        assert_eq!(after, before);
    }

    #[test]
    fn a_compacted_store_holds_what_it_held_and_goes_on_above_its_ids() {
        let dir = written_over();
        let before = dump(dir.path());
        let secret = SledStore::open(dir.path()).unwrap().secret();
        let latest = SledStore::open(dir.path())
            .unwrap()
            .changes_since("a@x.org", 0)
            .unwrap()
            .latest;
        let done = compact(dir.path(), 1 << 20, FAST, |_| {}).unwrap();
        assert_eq!(done.keys as usize, before.len());
        assert!(done.before > 0 && done.after > 0);
        assert_eq!(dump(dir.path()), before);
        assert!(!dir.path().join(NEW).exists() && !dir.path().join(OLD).exists());
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.secret(), secret, "ETags and tokens stay valid");
        // New texts leave the old ones as they were (that they are filed above them is
        // `a_store_compacted_twice_keeps_going_up`'s: sled's counter jumps at each opening,
        // so a store this small would not show it).
        for n in 10..40 {
            store.commit(&[put(&format!("u{n}"), &text(n, 0))]).unwrap();
        }
        for n in 0..40 {
            let round = if n < 10 { 19 } else { 0 };
            let object = store.get("a@x.org", &format!("u{n}")).unwrap().unwrap();
            assert_eq!(object.text, text(n, round));
        }
        let changes = store.changes_since("a@x.org", latest).unwrap();
        assert_eq!(
            changes.changed.len(),
            30,
            "a client's sync token still reads"
        );
        assert!(changes.changed.iter().all(|c| c.id >= latest));
    }

    #[test]
    fn a_store_compacted_twice_keeps_going_up() {
        let dir = written_over();
        compact(dir.path(), 1 << 20, FAST, |_| {}).unwrap();
        let first = id_base(dir.path());
        SledStore::open(dir.path())
            .unwrap()
            .commit(&[put("late", "BEGIN:VCALENDAR\r\n")])
            .unwrap();
        compact(dir.path(), 1 << 20, FAST, |_| {}).unwrap();
        assert!(id_base(dir.path()) > first);
        let store = SledStore::open(dir.path()).unwrap();
        store
            .commit(&[put("later", "BEGIN:VCALENDAR\r\nlater")])
            .unwrap();
        assert_eq!(
            store.get("a@x.org", "late").unwrap().unwrap().text,
            "BEGIN:VCALENDAR\r\n"
        );
    }

    /// The copy written and durable, the old database still in place: what a crash leaves
    /// at each step of the swap is set up from here.
    fn copied(dir: &Path) {
        let lock = FolderLock::take(dir).unwrap();
        let old = Trees::open_in(dir, 1 << 20, 0, &lock).unwrap();
        copy_into(&old, &dir.join(NEW), 1 << 20, FAST, &mut |_| {}).unwrap();
        drop(old);
        released(&dir.join("db")).unwrap();
    }

    #[test]
    fn a_copy_cut_short_is_removed_and_the_store_stays() {
        let dir = written_over();
        let before = dump(dir.path());
        copied(dir.path());
        std::fs::remove_file(dir.path().join(NEW).join("conf")).unwrap();
        assert_eq!(dump(dir.path()), before);
        assert!(!dir.path().join(NEW).exists());
        assert_eq!(id_base(dir.path()), 0, "the old database");
    }

    #[test]
    fn a_swap_cut_short_at_any_step_is_finished_by_the_next_opening() {
        let moves: [&dyn Fn(&Path); 5] = [
            &|_| {},
            &|dir| std::fs::rename(dir.join("db"), dir.join(OLD).join("db")).unwrap(),
            &|dir| {
                for name in database_files(dir).unwrap() {
                    std::fs::rename(dir.join(&name), dir.join(OLD).join(&name)).unwrap();
                }
                std::fs::rename(dir.join(MOVING_OUT), dir.join(MOVING_IN)).unwrap();
            },
            &|dir| {
                for name in database_files(dir).unwrap() {
                    std::fs::rename(dir.join(&name), dir.join(OLD).join(&name)).unwrap();
                }
                std::fs::rename(dir.join(MOVING_OUT), dir.join(MOVING_IN)).unwrap();
                std::fs::rename(dir.join(NEW).join("db"), dir.join("db")).unwrap();
            },
            &|dir| {
                // Everything moved, the marker gone: only the clean-up is left.
                finish(dir).unwrap();
                std::fs::create_dir_all(dir.join(OLD).join("blobs")).unwrap();
            },
        ];
        for (step, moved) in moves.iter().enumerate() {
            let dir = written_over();
            let before = dump(dir.path());
            copied(dir.path());
            mark(dir.path()).unwrap();
            std::fs::create_dir_all(dir.path().join(OLD)).unwrap();
            moved(dir.path());
            assert_eq!(dump(dir.path()), before, "step {step}");
            assert!(id_base(dir.path()) > 0, "step {step}: the copy is in place");
            for leftover in [NEW, OLD, MOVING_OUT, MOVING_IN] {
                assert!(
                    !dir.path().join(leftover).exists(),
                    "step {step}: {leftover}"
                );
            }
        }
    }

    #[test]
    fn a_store_in_use_is_not_compacted() {
        let dir = written_over();
        let store = SledStore::open(dir.path()).unwrap();
        let refused = compact(dir.path(), 1 << 20, FAST, |_| {}).unwrap_err();
        assert!(refused.to_string().contains("another process"), "{refused}");
        assert!(!dir.path().join(NEW).exists());
        drop(store);
    }

    #[test]
    fn an_opening_during_a_compaction_is_refused() {
        let dir = written_over();
        let held = FolderLock::take(dir.path()).unwrap();
        let refused = SledStore::open(dir.path()).err().unwrap();
        assert!(
            refused.to_string().contains("imipd compact is working"),
            "{refused}"
        );
        drop(held);
        assert!(SledStore::open(dir.path()).is_ok());
    }

    #[test]
    fn a_folder_without_a_store_is_not_made_one() {
        let dir = tempfile::tempdir().unwrap();
        let refused = compact(dir.path(), 1 << 20, FAST, |_| {}).unwrap_err();
        assert!(matches!(refused, CompactError::NoStore(_)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
