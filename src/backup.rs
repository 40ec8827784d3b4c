//! Backup and migration: a snapshot of the store (every account's objects and the outbound
//! queue) taken between two commits, written as ordinary files (`.ics` per object, the queue
//! as JSON), and read back into a store without overwriting a newer copy.

use crate::gateway::{Decision, Gateway};
use crate::itip::Calendar;
use crate::store::{Change, Expect, OutboundMessage, StoreError, Tag};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The layout of a backup folder this build writes and reads.
pub const FORMAT: u32 = 1;

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

/// Takes a snapshot: every object and the queue as they are between two commits.
pub async fn take(gateway: &Gateway) -> Result<Snapshot, StoreError> {
    let (objects, queue) = gateway.between_commits(|| gateway.store.snapshot()).await?;
    Ok(Snapshot {
        format: FORMAT,
        taken_at: gateway.now(),
        objects: objects
            .into_iter()
            .map(|(account, uid, object)| Object {
                account,
                uid,
                text: object.text,
            })
            .collect(),
        queue: queue.into_iter().map(|(_, message)| message).collect(),
    })
}

/// Restores objects and queue entries. An object is written when the store has none, or an
/// older version (lower SEQUENCE, then earlier DTSTAMP); a newer or equal one stays. A queue
/// entry is added unless the same message is queued already. Nothing is sent by it: the
/// messages of the queue go out as queued messages do.
pub async fn restore(
    gateway: &Gateway,
    objects: &[Object],
    queue: &[OutboundMessage],
) -> Result<Restored, StoreError> {
    let mut restored = Restored::default();
    for object in objects {
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
                let put = Change::Put {
                    account: object.account.clone(),
                    uid: object.uid.clone(),
                    text: object.text.clone(),
                    expect,
                    tag: Tag::New,
                };
                Ok(Decision::new(vec![put], true))
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
            let new: Vec<Change> = queue
                .iter()
                .filter(|m| !here.iter().any(|h| same_message(h, m)))
                .map(|m| Change::Enqueue(m.clone()))
                .collect();
            let count = new.len();
            Ok::<_, StoreError>(Decision::new(new, count))
        })
        .await?;
    restored.queued = queued;
    restored.already_queued = queue.len() - queued;
    Ok(restored)
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

/// Writes a snapshot into `dir` (which must be empty or new): `objects/ACCOUNT/UID.ics` (the
/// UID percent-encoded), `queue.json`, and `backup.json` saying what the folder holds.
pub fn write_dir(snapshot: &Snapshot, dir: &Path) -> Result<(), BackupError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| BackupError::Io { path, source }
    };
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::Invalid {
            path: dir.display().to_string(),
            problem: "is not empty: a backup goes into a new folder".into(),
        });
    }
    let root = dir.join("objects");
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    for object in &snapshot.objects {
        let folder = root.join(file_name(&object.account));
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let file = folder.join(format!("{}.ics", file_name(&object.uid)));
        std::fs::write(&file, &object.text).map_err(io(&file))?;
    }
    let queue = dir.join("queue.json");
    let json = serde_json::to_string_pretty(&snapshot.queue).unwrap_or_default();
    std::fs::write(&queue, json).map_err(io(&queue))?;
    let manifest = dir.join("backup.json");
    let about = serde_json::json!({
        "format": snapshot.format,
        "taken_at": snapshot.taken_at,
        "objects": snapshot.objects.len(),
        "queued": snapshot.queue.len(),
    });
    std::fs::write(&manifest, about.to_string()).map_err(io(&manifest))?;
    Ok(())
}

/// Reads a folder that [`write_dir`] wrote (or one made by hand the same way).
pub fn read_dir(dir: &Path) -> Result<Snapshot, BackupError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| BackupError::Io { path, source }
    };
    let manifest = dir.join("backup.json");
    let about: serde_json::Value = std::fs::read_to_string(&manifest)
        .map_err(io(&manifest))
        .and_then(|text| {
            serde_json::from_str(&text).map_err(|e| BackupError::Invalid {
                path: manifest.display().to_string(),
                problem: e.to_string(),
            })
        })?;
    let format = about["format"].as_u64().unwrap_or(0) as u32;
    if format != FORMAT {
        return Err(BackupError::Invalid {
            path: manifest.display().to_string(),
            problem: format!("backup format {format}; this imipd reads {FORMAT}"),
        });
    }
    let mut objects = Vec::new();
    let root = dir.join("objects");
    for account in std::fs::read_dir(&root).map_err(io(&root))? {
        let account = account.map_err(io(&root))?.path();
        for file in std::fs::read_dir(&account).map_err(io(&account))? {
            let file = file.map_err(io(&account))?.path();
            if file.extension().is_none_or(|e| e != "ics") {
                continue;
            }
            objects.push(read_object(&account, &file)?);
        }
    }
    let queue_file = dir.join("queue.json");
    let queue = std::fs::read_to_string(&queue_file)
        .map_err(io(&queue_file))
        .and_then(|text| {
            serde_json::from_str(&text).map_err(|e| BackupError::Invalid {
                path: queue_file.display().to_string(),
                problem: e.to_string(),
            })
        })?;
    Ok(Snapshot {
        format,
        taken_at: about["taken_at"].as_i64().unwrap_or(0),
        objects,
        queue,
    })
}

/// One `.ics` file: its account from the folder, its UID from inside (the file name is only a
/// name), checked to parse.
fn read_object(account: &Path, file: &Path) -> Result<Object, BackupError> {
    let invalid = |problem: String| BackupError::Invalid {
        path: file.display().to_string(),
        problem,
    };
    let text = std::fs::read_to_string(file).map_err(|source| BackupError::Io {
        path: file.display().to_string(),
        source,
    })?;
    let calendar = Calendar::parse(&text).map_err(|e| invalid(format!("not iCalendar: {e}")))?;
    let uid = crate::itip::uid_of(&calendar)
        .ok_or_else(|| invalid("no UID".into()))?
        .to_string();
    let name = account
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let account = percent_encoding::percent_decode_str(&name)
        .decode_utf8_lossy()
        .into_owned();
    Ok(Object { account, uid, text })
}

/// A name that is safe as one file name: `/`, `%`, control characters and a leading dot
/// percent-encoded.
fn file_name(text: &str) -> String {
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
                },
                Object {
                    account: "bob@example.com".into(),
                    uid: "b-1".into(),
                    text: event("b-1", 3, "20261101T000000Z"),
                },
            ],
            queue: Vec::new(),
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
        assert_eq!(back.taken_at, 7);
        // A second backup does not go over the first.
        assert!(write_dir(&snapshot, &target).is_err());
    }
}
