//! The relay's acceptances, written down the moment they happen: eight bytes and one
//! `fdatasync` right after the relay's 250, well before the store's own commit of the
//! outcome (which waits for a flush shared with inbound mail). After a crash, the queue
//! entries named here are recorded as sent instead of being offered to the relay again.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Mutex;

/// The file's name inside `server.data_dir`.
pub const FILE: &str = "outbound.journal";

/// An append-only list of queue ids the relay has accepted.
pub struct Journal {
    file: Mutex<File>,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`; returns it with the ids it holds. A record cut
    /// short by a crash is ignored: its message was not yet known to be accepted.
    pub fn open(dir: &Path) -> io::Result<(Journal, Vec<u64>)> {
        std::fs::create_dir_all(dir)?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(dir.join(FILE))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.len() - bytes.len() % 8;
        if whole < bytes.len() {
            // Appends must start on a record boundary.
            file.set_len(whole as u64)?;
            bytes.truncate(whole);
        }
        let ids: Vec<u64> = bytes
            .chunks_exact(8)
            .map(|record| u64::from_be_bytes(record.try_into().expect("eight bytes")))
            .collect();
        let journal = Journal {
            file: Mutex::new(file),
        };
        Ok((journal, ids))
    }

    /// Writes an id down and waits until it is on disk.
    pub fn record(&self, id: u64) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&id.to_be_bytes())?;
        file.sync_data()
    }

    /// Forgets every id, once the store has durably recorded all of them. Not synced: ids
    /// that come back after a crash name entries already off the queue and are ignored.
    pub fn clear(&self) -> io::Result<()> {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.set_len(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_survive_reopening_and_a_cut_record_is_ignored() {
        let dir = std::env::temp_dir().join(format!("imipd-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (journal, ids) = Journal::open(&dir).unwrap();
        assert!(ids.is_empty());
        journal.record(7).unwrap();
        journal.record(u64::MAX - 1).unwrap();
        drop(journal);
        // A crash in the middle of a third record.
        OpenOptions::new()
            .append(true)
            .open(dir.join(FILE))
            .unwrap()
            .write_all(&[0, 0, 1])
            .unwrap();
        let (journal, ids) = Journal::open(&dir).unwrap();
        assert_eq!(ids, [7, u64::MAX - 1]);
        journal.record(9).unwrap();
        drop(journal);
        let (journal, ids) = Journal::open(&dir).unwrap();
        assert_eq!(ids, [7, u64::MAX - 1, 9]);
        journal.clear().unwrap();
        drop(journal);
        assert!(Journal::open(&dir).unwrap().1.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
