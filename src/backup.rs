//! Backup and migration: a snapshot of the store (every account's objects, its calendars and
//! where each object is in them, and the outbound queue) taken between two commits, written as
//! ordinary files (`.ics` per object, the rest as JSON), and read back into a store without
//! overwriting a newer copy.

use crate::gateway::{Decision, Gateway};
use crate::itip::Calendar;
use crate::store::{Change, Expect, OutboundMessage, StoreError, Tag};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The layout of a backup folder this build writes; it reads this one and the older ones
/// (format 1 had no calendars: its objects go to the default calendar under `UID.ics`).
pub const FORMAT: u32 = 2;

/// The name of an account's default calendar, for its properties.
const DEFAULT_CALENDAR: &str = "calendar";

/// What a backup holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`FORMAT`].
    pub format: u32,
    /// When it was taken, seconds since the epoch.
    pub taken_at: i64,
    /// Every object.
    pub objects: Vec<Object>,
    /// The outbound queue, in queue order.
    pub queue: Vec<OutboundMessage>,
    /// Every account's further calendars, and the properties clients wrote on its calendars.
    #[serde(default)]
    pub calendars: Vec<CalendarRecord>,
}

/// One calendar of an account: a further one, or the default one (`calendar`) when clients
/// wrote properties on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarRecord {
    /// Its account.
    pub account: String,
    /// Its name (the last segment of its URL).
    pub name: String,
    /// What clients wrote on it, by `{namespace}name`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// Its account.
    pub account: String,
    /// Its UID (the key it is stored under).
    pub uid: String,
    /// The iCalendar text.
    pub text: String,
    /// The further calendar it is in (none: the default one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<String>,
    /// The resource name a client gave it, when not `UID.ics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// Objects written (absent here, or older here).
    pub written: usize,
    /// Objects kept as they are here: the same, or newer than the backup's.
    pub kept: usize,
    /// Queue entries added.
    pub queued: usize,
    /// Queue entries already queued here.
    pub already_queued: usize,
    /// Calendars made, or given properties they lacked here.
    #[serde(default)]
    pub calendars: usize,
    /// Accounts of the backup that are none here: their objects are written, and nobody
    /// reaches them until the account is made.
    #[serde(default)]
    pub unknown_accounts: Vec<String>,
}

/// Why a backup folder cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file is not what a backup holds.
    #[error("{path}: {problem}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
}

/// Takes a snapshot: every object, calendar and queued message as they are between two
/// commits.
pub async fn take(gateway: &Gateway) -> Result<Snapshot, StoreError> {
    let mut accounts: Vec<String> = gateway.config().config.accounts.keys().cloned().collect();
    let (objects, queue, calendars) = gateway
        .between_commits(|| {
            let (objects, queue) = gateway.store.snapshot()?;
            accounts.extend(objects.iter().map(|(account, ..)| account.clone()));
            accounts.sort();
            accounts.dedup();
            let mut layouts = BTreeMap::new();
            for account in &accounts {
                layouts.insert(account.clone(), layout(gateway, account)?);
            }
            let objects: Vec<Object> = objects
                .into_iter()
                .map(|(account, uid, object)| {
                    let (_, placements, names) = &layouts[&account];
                    Object {
                        calendar: placements.get(&uid).cloned(),
                        name: names.get(&uid).cloned(),
                        account,
                        uid,
                        text: object.text,
                    }
                })
                .collect();
            let calendars = layouts.into_values().flat_map(|(c, ..)| c).collect();
            Ok::<_, StoreError>((objects, queue, calendars))
        })
        .await?;
    Ok(Snapshot {
        format: FORMAT,
        taken_at: gateway.now(),
        objects,
        queue: queue.into_iter().map(|(_, message)| message).collect(),
        calendars,
    })
}

/// An account's calendars (with their properties), where its objects are, and their names.
#[allow(clippy::type_complexity)]
fn layout(
    gateway: &Gateway,
    account: &str,
) -> Result<
    (
        Vec<CalendarRecord>,
        BTreeMap<String, String>,
        BTreeMap<String, String>,
    ),
    StoreError,
> {
    let store = &gateway.store;
    let mut calendars = Vec::new();
    let further = store.calendars(account)?;
    for name in std::iter::once(DEFAULT_CALENDAR.to_string()).chain(further) {
        let properties: BTreeMap<String, String> =
            store.properties(account, &name)?.into_iter().collect();
        if name != DEFAULT_CALENDAR || !properties.is_empty() {
            calendars.push(CalendarRecord {
                account: account.to_string(),
                name,
                properties,
            });
        }
    }
    let placements = store.placements(account)?.into_iter().collect();
    let names = store.names(account)?.into_iter().collect();
    Ok((calendars, placements, names))
}

/// Restores calendars, objects and queue entries. A calendar is made when missing, and given
/// the properties it lacks here. An object is written when the store has none, or an older
/// version (lower SEQUENCE, then earlier DTSTAMP), into its calendar under its name; a newer
/// or equal one stays where it is. A queue entry is added unless the same message is queued
/// already. Nothing is sent by it: the messages of the queue go out as queued messages do.
pub async fn restore(gateway: &Gateway, snapshot: &Snapshot) -> Result<Restored, StoreError> {
    let mut restored = Restored::default();
    for calendar in &snapshot.calendars {
        let (changed, _) = gateway
            .transact(|| {
                let changes = missing(gateway, calendar)?;
                let count = changes.len();
                Ok::<_, StoreError>(Decision::new(changes, count))
            })
            .await?;
        restored.calendars += usize::from(changed > 0);
    }
    // Format 1 knew no calendars: its objects stay wherever they are here.
    let placed = snapshot.format >= 2;
    for object in &snapshot.objects {
        if gateway.account_for(&object.account).is_none()
            && !restored.unknown_accounts.contains(&object.account)
        {
            restored.unknown_accounts.push(object.account.clone());
        }
        let (written, _) = gateway
            .transact(|| {
                let current = gateway.store.get(&object.account, &object.uid)?;
                let expect = match &current {
                    None => Expect::Absent,
                    Some(here) if !is_newer(&object.text, &here.text) => {
                        return Ok::<_, StoreError>(Decision::new(Vec::new(), false));
                    }
                    Some(here) => Expect::Revision(here.revision),
                };
                let mut changes = vec![Change::Put {
                    account: object.account.clone(),
                    uid: object.uid.clone(),
                    text: object.text.clone(),
                    expect,
                    tag: Tag::New,
                }];
                if placed {
                    changes.extend(where_it_goes(object));
                }
                Ok(Decision::new(changes, true))
            })
            .await?;
        match written {
            true => restored.written += 1,
            false => restored.kept += 1,
        }
    }
    let (queued, _) = gateway
        .transact(|| {
            let here: Vec<OutboundMessage> = gateway
                .store
                .outbox()?
                .into_iter()
                .map(|(_, m)| m)
                .collect();
            let new: Vec<Change> = snapshot
                .queue
                .iter()
                .filter(|m| !here.iter().any(|h| same_message(h, m)))
                .map(|m| Change::Enqueue(m.clone()))
                .collect();
            let count = new.len();
            Ok::<_, StoreError>(Decision::new(new, count))
        })
        .await?;
    restored.queued = queued;
    restored.already_queued = snapshot.queue.len() - queued;
    Ok(restored)
}

/// What a calendar of the backup lacks here: itself, and properties not set here.
fn missing(gateway: &Gateway, calendar: &CalendarRecord) -> Result<Vec<Change>, StoreError> {
    let store = &gateway.store;
    let account = &calendar.account;
    let mut changes = Vec::new();
    if calendar.name != DEFAULT_CALENDAR && !store.calendars(account)?.contains(&calendar.name) {
        changes.push(Change::Calendar {
            account: account.clone(),
            name: calendar.name.clone(),
            exists: true,
        });
    }
    let here: BTreeMap<String, String> = store
        .properties(account, &calendar.name)?
        .into_iter()
        .collect();
    for (key, value) in &calendar.properties {
        if !here.contains_key(key) {
            changes.push(Change::Property {
                account: account.clone(),
                calendar: calendar.name.clone(),
                name: key.clone(),
                value: Some(value.clone()),
            });
        }
    }
    Ok(changes)
}

/// A written object's calendar and name, as the backup has them.
fn where_it_goes(object: &Object) -> [Change; 2] {
    [
        Change::Place {
            account: object.account.clone(),
            uid: object.uid.clone(),
            calendar: object.calendar.clone(),
        },
        Change::Name {
            account: object.account.clone(),
            uid: object.uid.clone(),
            name: object.name.clone(),
        },
    ]
}

/// One message, whatever its attempts.
fn same_message(a: &OutboundMessage, b: &OutboundMessage) -> bool {
    (&a.account, &a.uid, &a.method, &a.to, &a.calendar)
        == (&b.account, &b.uid, &b.method, &b.to, &b.calendar)
}

/// True when `candidate` is a later version of the object than `here`: a higher SEQUENCE, or
/// the same and a later DTSTAMP. What does not parse is never newer.
fn is_newer(candidate: &str, here: &str) -> bool {
    let version = |text: &str| {
        let cal = Calendar::parse(text).ok()?;
        let sequence = cal.scheduling().map(|c| c.sequence()).max()?;
        let stamp = cal.scheduling().filter_map(|c| c.dtstamp()).max();
        Some((sequence, stamp))
    };
    match (version(candidate), version(here)) {
        (Some(candidate), Some(here)) => candidate > here,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Where objects are, beside their files: `layout.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Layout {
    calendars: Vec<CalendarRecord>,
    /// The objects not at `UID.ics` in the default calendar.
    objects: Vec<Placed>,
    /// Accounts whose folder is not named by their address (too long for a file name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    folders: Vec<Folder>,
}

/// An account's folder, when its name is not the account's address.
#[derive(Debug, Serialize, Deserialize)]
struct Folder {
    folder: String,
    account: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Placed {
    account: String,
    uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    calendar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// One record of a snapshot as the daemon streams it (`GET /backup`, one JSON object per
/// line): what it is first, then every calendar, object and queued message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// The first line: [`FORMAT`] and when the snapshot was taken.
    Snapshot {
        /// [`FORMAT`].
        format: u32,
        /// Seconds since the epoch.
        taken_at: i64,
    },
    /// A calendar.
    Calendar(CalendarRecord),
    /// An object.
    Object(Object),
    /// A queued message.
    Queued(Box<OutboundMessage>),
}

impl Snapshot {
    /// The snapshot as the records of a stream, its description first.
    pub fn records(self) -> impl Iterator<Item = Record> {
        let head = Record::Snapshot {
            format: self.format,
            taken_at: self.taken_at,
        };
        std::iter::once(head)
            .chain(self.calendars.into_iter().map(Record::Calendar))
            .chain(self.objects.into_iter().map(Record::Object))
            .chain(self.queue.into_iter().map(|m| Record::Queued(Box::new(m))))
    }
}

/// The longest file name most file systems take, in bytes.
const MAX_FILE_NAME: usize = 255;

/// A backup folder being written record by record, so that a snapshot of any size streams
/// from the daemon to the disk: `objects/ACCOUNT/UID.ics` (both names made safe and short
/// enough, see [`file_name`]), `layout.json` (the calendars, which objects are in a further
/// one or under another name, and the accounts whose folder name is not their address),
/// `queue.json`, and `backup.json` saying what the folder holds.
pub struct FolderWriter {
    dir: std::path::PathBuf,
    layout: Layout,
    queue: Vec<OutboundMessage>,
    objects: usize,
    format: u32,
    taken_at: i64,
    folders: std::collections::BTreeSet<String>,
}

/// What a written backup holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Objects.
    pub objects: usize,
    /// Queued messages.
    pub queued: usize,
    /// Calendars besides each account's default one.
    pub further_calendars: usize,
}

impl FolderWriter {
    /// Starts a backup in `dir`, which must be empty or new.
    pub fn create(dir: &Path) -> Result<FolderWriter, BackupError> {
        if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(BackupError::Invalid {
                path: dir.display().to_string(),
                problem: "is not empty: a backup goes into a new folder".into(),
            });
        }
        let root = dir.join("objects");
        std::fs::create_dir_all(&root).map_err(io(&root))?;
        Ok(FolderWriter {
            dir: dir.to_path_buf(),
            layout: Layout::default(),
            queue: Vec::new(),
            objects: 0,
            format: FORMAT,
            taken_at: 0,
            folders: Default::default(),
        })
    }

    /// Adds one record.
    pub fn add(&mut self, record: Record) -> Result<(), BackupError> {
        match record {
            Record::Snapshot { format, taken_at } => {
                (self.format, self.taken_at) = (format, taken_at);
            }
            Record::Calendar(calendar) => self.layout.calendars.push(calendar),
            Record::Queued(message) => self.queue.push(*message),
            Record::Object(object) => self.object(object)?,
        }
        Ok(())
    }

    fn object(&mut self, object: Object) -> Result<(), BackupError> {
        let folder_name = file_name(&object.account, "");
        if folder_name != percent_encoded(&object.account)
            && self.folders.insert(folder_name.clone())
        {
            self.layout.folders.push(Folder {
                folder: folder_name.clone(),
                account: object.account.clone(),
            });
        }
        let folder = self.dir.join("objects").join(&folder_name);
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let file = folder.join(file_name(&object.uid, ".ics"));
        std::fs::write(&file, &object.text).map_err(io(&file))?;
        if object.calendar.is_some() || object.name.is_some() {
            self.layout.objects.push(Placed {
                account: object.account,
                uid: object.uid,
                calendar: object.calendar,
                name: object.name,
            });
        }
        self.objects += 1;
        Ok(())
    }

    /// Writes what the folder holds, once every record is in.
    pub fn finish(self) -> Result<Written, BackupError> {
        let file = self.dir.join("layout.json");
        let json = serde_json::to_string_pretty(&self.layout).unwrap_or_default();
        std::fs::write(&file, json).map_err(io(&file))?;
        let queue = self.dir.join("queue.json");
        let json = serde_json::to_string_pretty(&self.queue).unwrap_or_default();
        std::fs::write(&queue, json).map_err(io(&queue))?;
        let written = Written {
            objects: self.objects,
            queued: self.queue.len(),
            further_calendars: self
                .layout
                .calendars
                .iter()
                .filter(|c| c.name != DEFAULT_CALENDAR)
                .count(),
        };
        let manifest = self.dir.join("backup.json");
        let about = serde_json::json!({
            "format": self.format,
            "taken_at": self.taken_at,
            "objects": written.objects,
            "queued": written.queued,
            "calendars": written.further_calendars,
        });
        std::fs::write(&manifest, about.to_string()).map_err(io(&manifest))?;
        Ok(written)
    }
}

/// The error of a file that could not be read or written.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + use<> {
    let path = path.display().to_string();
    move |source| BackupError::Io { path, source }
}

/// Writes a snapshot into `dir` (which must be empty or new): see [`FolderWriter`].
pub fn write_dir(snapshot: &Snapshot, dir: &Path) -> Result<Written, BackupError> {
    let mut folder = FolderWriter::create(dir)?;
    for record in snapshot.clone().records() {
        folder.add(record)?;
    }
    folder.finish()
}

/// Reads a folder that [`write_dir`] wrote (or one made by hand the same way).
pub fn read_dir(dir: &Path) -> Result<Snapshot, BackupError> {
    let manifest = dir.join("backup.json");
    let about: serde_json::Value = parsed(&manifest)?;
    let format = about["format"].as_u64().unwrap_or(0) as u32;
    if !readable(format) {
        return Err(BackupError::Invalid {
            path: manifest.display().to_string(),
            problem: format!("backup format {format}; this imipd reads 1 to {FORMAT}"),
        });
    }
    let queue: Vec<OutboundMessage> = parsed(&dir.join("queue.json"))?;
    let layout: Layout = match format {
        1 => Layout::default(),
        _ => parsed(&dir.join("layout.json"))?,
    };
    let accounts: BTreeMap<&str, &str> = layout
        .folders
        .iter()
        .map(|f| (f.folder.as_str(), f.account.as_str()))
        .collect();
    let placed: BTreeMap<(&str, &str), &Placed> = layout
        .objects
        .iter()
        .map(|p| ((p.account.as_str(), p.uid.as_str()), p))
        .collect();
    let mut objects = Vec::new();
    let root = dir.join("objects");
    for folder in std::fs::read_dir(&root).map_err(io(&root))? {
        let folder = folder.map_err(io(&root))?.path();
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let account = match accounts.get(name.as_str()) {
            Some(account) => account.to_string(),
            None => percent_encoding::percent_decode_str(&name)
                .decode_utf8_lossy()
                .into_owned(),
        };
        for file in std::fs::read_dir(&folder).map_err(io(&folder))? {
            let file = file.map_err(io(&folder))?.path();
            if file.extension().is_none_or(|e| e != "ics") {
                continue;
            }
            let mut object = read_object(&account, &file)?;
            let key = (object.account.as_str(), object.uid.as_str());
            if let Some(place) = placed.get(&key) {
                object.calendar = place.calendar.clone();
                object.name = place.name.clone();
            }
            objects.push(object);
        }
    }
    Ok(Snapshot {
        format,
        taken_at: about["taken_at"].as_i64().unwrap_or(0),
        objects,
        queue,
        calendars: layout.calendars,
    })
}

/// A JSON file of the backup.
fn parsed<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, BackupError> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    serde_json::from_str(&text).map_err(|e| BackupError::Invalid {
        path: file.display().to_string(),
        problem: e.to_string(),
    })
}

/// True for the backup formats this build reads.
pub fn readable(format: u32) -> bool {
    (1..=FORMAT).contains(&format)
}

/// One `.ics` file of an account: its UID from inside (the file name is only a name),
/// checked to parse.
fn read_object(account: &str, file: &Path) -> Result<Object, BackupError> {
    let invalid = |problem: String| BackupError::Invalid {
        path: file.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    let calendar = Calendar::parse(&text).map_err(|e| invalid(format!("not iCalendar: {e}")))?;
    let uid = crate::itip::uid_of(&calendar)
        .ok_or_else(|| invalid("no UID".into()))?
        .to_string();
    Ok(Object {
        account: account.to_string(),
        uid,
        text,
        calendar: None,
        name: None,
    })
}

/// A name that is safe as one file name: `/`, `%`, control characters and a leading dot
/// percent-encoded.
fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.chars().enumerate() {
        if c == '/' || c == '%' || c == '\\' || c.is_control() || (i == 0 && c == '.') {
            for byte in c.to_string().bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The file name for `text` with `suffix`: [`percent_encoded`], and when that is longer than a
/// file name may be, its start and a hash of the whole (distinct names stay distinct; what a
/// name stands for is read from the file or from `layout.json`, never from the name).
fn file_name(text: &str, suffix: &str) -> String {
    use blake2::Digest;
    let encoded = percent_encoded(text);
    if encoded.len() + suffix.len() <= MAX_FILE_NAME {
        return encoded + suffix;
    }
    let hash = blake2::Blake2s256::digest(text.as_bytes());
    let tag: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    let room = MAX_FILE_NAME - suffix.len() - tag.len() - 1;
    let mut cut = room;
    while !encoded.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{tag}{suffix}", &encoded[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(uid: &str, sequence: u32, stamp: &str) -> String {
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n\
SEQUENCE:{sequence}\r\nDTSTAMP:{stamp}\r\nDTSTART:20261201T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
        )
    }

    #[test]
    fn newer_means_sequence_then_stamp() {
        let old = event("a", 1, "20261101T000000Z");
        assert!(is_newer(&event("a", 2, "20261001T000000Z"), &old));
        assert!(is_newer(&event("a", 1, "20261102T000000Z"), &old));
        assert!(!is_newer(&old, &old));
        assert!(!is_newer(&event("a", 0, "20261201T000000Z"), &old));
        assert!(!is_newer("garbage", &old));
    }

    #[test]
    fn a_folder_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let snapshot = Snapshot {
            format: FORMAT,
            taken_at: 7,
            objects: vec![
                Object {
                    account: "alice@example.com".into(),
                    uid: "../../etc/passwd".into(),
                    text: event("../../etc/passwd", 0, "20261101T000000Z"),
                    calendar: Some("team".into()),
                    name: Some("chosen.ics".into()),
                },
                Object {
                    account: "bob@example.com".into(),
                    uid: "b-1".into(),
                    text: event("b-1", 3, "20261101T000000Z"),
                    calendar: None,
                    name: None,
                },
            ],
            queue: Vec::new(),
            calendars: vec![CalendarRecord {
                account: "alice@example.com".into(),
                name: "team".into(),
                properties: [("{DAV:}displayname".to_string(), "Team".to_string())].into(),
            }],
        };
        let target = dir.path().join("backup");
        write_dir(&snapshot, &target).unwrap();
        assert!(
            target
                .join("objects/alice@example.com/%2E.%2F..%2Fetc%2Fpasswd.ics")
                .exists()
        );
        let mut back = read_dir(&target).unwrap();
        back.objects.sort_by(|a, b| a.account.cmp(&b.account));
        assert_eq!(back.objects, snapshot.objects);
        assert_eq!(back.calendars, snapshot.calendars);
        assert_eq!(back.taken_at, 7);
        // A second backup does not go over the first.
        assert!(write_dir(&snapshot, &target).is_err());
    }

    /// Names too long for a file: a 1,000-byte UID, and an account whose escaped address is
    /// too (a local part of 64 `%`), come back whole.
    #[test]
    fn names_too_long_for_a_file_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let account = format!("{}@example.com", "%".repeat(64));
        let uid = "é".repeat(500);
        let objects: Vec<Object> = [uid.clone(), format!("{uid}2")]
            .into_iter()
            .map(|uid| Object {
                account: account.clone(),
                text: event(&uid, 0, "20261101T000000Z"),
                uid,
                calendar: None,
                name: None,
            })
            .collect();
        let snapshot = Snapshot {
            format: FORMAT,
            objects,
            ..Snapshot::default()
        };
        let target = dir.path().join("backup");
        write_dir(&snapshot, &target).unwrap();
        let mut back = read_dir(&target).unwrap();
        back.objects.sort_by(|a, b| a.uid.cmp(&b.uid));
        assert_eq!(back.objects, snapshot.objects);
    }

    #[test]
    fn a_format_1_folder_is_read_without_calendars() {
        let dir = tempfile::tempdir().unwrap();
        let account = dir.path().join("objects/bob@example.com");
        std::fs::create_dir_all(&account).unwrap();
        std::fs::write(account.join("b-1.ics"), event("b-1", 0, "20261101T000000Z")).unwrap();
        std::fs::write(dir.path().join("queue.json"), "[]").unwrap();
        std::fs::write(
            dir.path().join("backup.json"),
            r#"{"format":1,"taken_at":5,"objects":1,"queued":0}"#,
        )
        .unwrap();
        let back = read_dir(dir.path()).unwrap();
        assert_eq!((back.format, back.objects.len()), (1, 1));
        assert!(back.calendars.is_empty() && back.objects[0].calendar.is_none());
        std::fs::write(dir.path().join("backup.json"), r#"{"format":9}"#).unwrap();
        assert!(read_dir(dir.path()).is_err());
    }
}
