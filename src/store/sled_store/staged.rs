//! A commit's writes, staged before any reaches a tree, then written through a journal.
//!
//! sled 0.34's transactions hold a lock of the whole process (every tree of every database,
//! readers included) from the first read to the end of the commit, and seal the log's buffer
//! twice, each buffer then written and waited for by one of sled's threads: at a few
//! thousand commits a second that lock is what every delivery waits on. A commit here reads
//! and decides into a `Staging` instead (its reads see its own writes); the writes then go to
//! the trees as plain inserts and removals, one commit at a time, after a journal record
//! holding all of them (but the commit's new texts, written first under keys nothing refers
//! to until the other writes do). sled recovers a prefix of its log, so after a crash either
//! the record is there and the commit is written again from it when the store opens (each
//! write sets a key to a value: twice is the same as once), or the record is absent and so is
//! every write of the commit, or all of them were written and the record's removal too.

use super::unavailable;
use crate::store::StoreError;
use sled::IVec;
use std::cell::RefCell;
use std::collections::HashMap;

/// A commit's writes so far: each key's latest value (none: removed), in the order each key
/// was first written, and where each key is in that order.
pub(super) struct Staging<'t> {
    trees: Vec<&'t sled::Tree>,
    writes: RefCell<Writes>,
    /// Texts under keys of their own, new: written before the journal record and outside it,
    /// since nothing refers to them until the commit's other writes do.
    texts: RefCell<Vec<(u64, IVec)>>,
}

#[derive(Default)]
struct Writes {
    order: Vec<Write>,
    at: HashMap<(u8, IVec), usize>,
}

/// One write: the tree (its index among the committed trees), the key, the value.
struct Write {
    tree: u8,
    key: IVec,
    value: Option<IVec>,
}

/// One tree as a commit sees it: the tree with the commit's writes over it.
#[derive(Clone, Copy)]
pub(super) struct Staged<'s, 't> {
    staging: &'s Staging<'t>,
    tree: u8,
}

impl<'t> Staging<'t> {
    pub fn new(trees: Vec<&'t sled::Tree>) -> Self {
        assert!(
            trees.len() <= usize::from(u8::MAX),
            "a tree's index is a byte"
        );
        Staging {
            trees,
            writes: Default::default(),
            texts: Default::default(),
        }
    }

    /// The commit's view of the tree at `index`.
    pub fn tree(&self, index: usize) -> Staged<'_, 't> {
        Staged {
            staging: self,
            tree: index as u8,
        }
    }

    /// Stages a text under a new key of `texts` (see `write`).
    pub fn put_text(&self, key: u64, text: &[u8]) {
        self.texts
            .borrow_mut()
            .push((key, IVec::from(super::packed::pack(text))));
    }

    /// Writes what was staged: the new texts into `texts`, the journal record (under `id`,
    /// unique to the commit), each write, the record's removal. One write alone needs no
    /// record. A crash before the record leaves texts nothing refers to: a few bytes lost.
    pub fn write(
        self,
        journal: &sled::Tree,
        texts: &sled::Tree,
        id: u64,
    ) -> Result<(), StoreError> {
        for (key, text) in self.texts.into_inner() {
            texts.insert(key.to_be_bytes(), text).map_err(unavailable)?;
        }
        let writes = self.writes.into_inner().order;
        let recorded = writes.len() > 1;
        if recorded {
            journal
                .insert(id.to_be_bytes(), record(&writes))
                .map_err(unavailable)?;
        }
        for write in &writes {
            apply(&self.trees, write)?;
        }
        if recorded {
            journal.remove(id.to_be_bytes()).map_err(unavailable)?;
        }
        Ok(())
    }

    /// Writes the journal record alone: what a crash right after it leaves.
    #[cfg(test)]
    pub fn record_only(self, journal: &sled::Tree, texts: &sled::Tree, id: u64) {
        for (key, text) in self.texts.into_inner() {
            texts.insert(key.to_be_bytes(), text).unwrap();
        }
        let writes = self.writes.into_inner().order;
        journal.insert(id.to_be_bytes(), record(&writes)).unwrap();
    }

    fn get(&self, tree: u8, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        let writes = self.writes.borrow();
        if let Some(at) = writes.at.get(&(tree, IVec::from(key))) {
            return Ok(writes.order[*at].value.clone());
        }
        drop(writes);
        self.trees[usize::from(tree)].get(key).map_err(unavailable)
    }

    fn set(&self, tree: u8, key: &[u8], value: Option<IVec>) {
        let mut writes = self.writes.borrow_mut();
        let key = IVec::from(key);
        match writes.at.get(&(tree, key.clone())) {
            Some(at) => {
                let at = *at;
                writes.order[at].value = value;
            }
            None => {
                let at = writes.order.len();
                writes.order.push(Write {
                    tree,
                    key: key.clone(),
                    value,
                });
                writes.at.insert((tree, key), at);
            }
        }
    }
}

impl Staged<'_, '_> {
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<IVec>, StoreError> {
        self.staging.get(self.tree, key.as_ref())
    }

    /// Stages a value under `key`.
    pub fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<(), StoreError> {
        let value = IVec::from(value.as_ref());
        self.staging.set(self.tree, key.as_ref(), Some(value));
        Ok(())
    }

    /// Stages the removal of `key`.
    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<(), StoreError> {
        self.staging.set(self.tree, key.as_ref(), None);
        Ok(())
    }

    /// Stages the removal of every key under `prefix`, committed or staged by this commit.
    pub fn remove_prefix(&self, prefix: &[u8]) -> Result<(), StoreError> {
        let mut keys: Vec<IVec> = (self.committed_prefix(prefix)?.into_iter())
            .map(|(key, _)| key)
            .collect();
        let writes = self.staging.writes.borrow();
        let staged = writes.order.iter().filter(|w| w.tree == self.tree);
        keys.extend(
            staged
                .filter(|w| w.key.starts_with(prefix))
                .map(|w| w.key.clone()),
        );
        drop(writes);
        for key in keys {
            self.remove(key)?;
        }
        Ok(())
    }

    /// How many keys under `prefix` the tree holds as committed, without this commit's writes.
    pub fn committed_prefix_len(&self, prefix: &[u8]) -> Result<u64, StoreError> {
        let tree = self.staging.trees[usize::from(self.tree)];
        let mut count = 0;
        for item in tree.scan_prefix(prefix) {
            item.map_err(unavailable)?;
            count += 1;
        }
        Ok(count)
    }

    /// The keys and values under `prefix` as committed (not as staged by this commit).
    pub fn committed_prefix(&self, prefix: &[u8]) -> Result<Vec<(IVec, IVec)>, StoreError> {
        let tree = self.staging.trees[usize::from(self.tree)];
        let items = tree
            .scan_prefix(prefix)
            .map(|item| item.map_err(unavailable));
        items.collect()
    }

    /// Whether the tree holds `key` as committed (not as staged by this commit).
    pub fn committed_contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        let tree = self.staging.trees[usize::from(self.tree)];
        tree.contains_key(key).map_err(unavailable)
    }

    /// Stages a value under `key` (none: its removal) and returns the value before, which
    /// costs a read that `insert` and `remove` do without.
    pub fn swap(
        &self,
        key: impl AsRef<[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Option<IVec>, StoreError> {
        let before = self.get(key.as_ref())?;
        self.staging
            .set(self.tree, key.as_ref(), value.map(IVec::from));
        Ok(before)
    }
}

fn apply(trees: &[&sled::Tree], write: &Write) -> Result<(), StoreError> {
    let tree = trees
        .get(usize::from(write.tree))
        .ok_or_else(|| unavailable("a journal record names a tree this build does not have"))?;
    match &write.value {
        Some(value) => tree.insert(&write.key, value.clone()),
        None => tree.remove(&write.key),
    }
    .map_err(unavailable)?;
    Ok(())
}

/// Writes again every commit a crash interrupted, oldest first, and forgets their records.
pub(super) fn replay(journal: &sled::Tree, trees: &[&sled::Tree]) -> Result<usize, StoreError> {
    let mut replayed = 0;
    for item in journal.iter() {
        let (id, value) = item.map_err(unavailable)?;
        let writes =
            writes_of(&value).ok_or_else(|| unavailable("a journal record that cannot be read"))?;
        for write in &writes {
            apply(trees, write)?;
        }
        journal.remove(id).map_err(unavailable)?;
        replayed += 1;
    }
    Ok(replayed)
}

/// A journal record: per write, the tree's index, the key's length and the key, then 0 for a
/// removal or 1, the value's length and the value (lengths as 4 bytes, big-endian).
fn record(writes: &[Write]) -> Vec<u8> {
    let size = writes
        .iter()
        .map(|w| 10 + w.key.len() + w.value.as_ref().map_or(0, |v| v.len()))
        .sum();
    let mut out = Vec::with_capacity(size);
    for write in writes {
        out.push(write.tree);
        out.extend_from_slice(&(write.key.len() as u32).to_be_bytes());
        out.extend_from_slice(&write.key);
        match &write.value {
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                out.extend_from_slice(value);
            }
            None => out.push(0),
        }
    }
    out
}

fn writes_of(mut record: &[u8]) -> Option<Vec<Write>> {
    fn take<'r>(record: &mut &'r [u8], n: usize) -> Option<&'r [u8]> {
        let (head, rest) = record.split_at_checked(n)?;
        *record = rest;
        Some(head)
    }
    fn length(record: &mut &[u8]) -> Option<usize> {
        Some(u32::from_be_bytes(take(record, 4)?.try_into().ok()?) as usize)
    }
    let mut writes = Vec::new();
    while let Some(&tree) = record.first() {
        record = &record[1..];
        let n = length(&mut record)?;
        let key = IVec::from(take(&mut record, n)?);
        let value = match take(&mut record, 1)? {
            [0] => None,
            _ => {
                let n = length(&mut record)?;
                Some(IVec::from(take(&mut record, n)?))
            }
        };
        writes.push(Write { tree, key, value });
    }
    Some(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_its_writes() {
        let writes = vec![
            Write {
                tree: 3,
                key: IVec::from(&b"k\0ey"[..]),
                value: Some(IVec::from(&b"value"[..])),
            },
            Write {
                tree: 0,
                key: IVec::from(&b""[..]),
                value: None,
            },
        ];
        let back = writes_of(&record(&writes)).unwrap();
        let seen: Vec<_> = back
            .iter()
            .map(|w| (w.tree, w.key.to_vec(), w.value.as_ref().map(|v| v.to_vec())))
            .collect();
        assert_eq!(
            seen,
            [
                (3, b"k\0ey".to_vec(), Some(b"value".to_vec())),
                (0, Vec::new(), None)
            ]
        );
        assert!(writes_of(&record(&writes)[..7]).is_none(), "a cut record");
    }

    #[test]
    fn a_commit_reads_its_own_writes() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert("a", "stored").unwrap();
        let staging = Staging::new(vec![&tree]);
        let t = staging.tree(0);
        assert_eq!(t.swap("a", Some(b"staged")).unwrap().unwrap(), b"stored");
        assert_eq!(t.get("a").unwrap().unwrap(), b"staged");
        assert_eq!(t.swap("a", None).unwrap().unwrap(), b"staged");
        assert_eq!(t.get("a").unwrap(), None);
        t.insert("b", "new").unwrap();
        assert_eq!(t.get("b").unwrap().unwrap(), b"new");
        assert_eq!(
            tree.get("a").unwrap().unwrap(),
            b"stored",
            "nothing written yet"
        );
        let journal = db.open_tree("journal").unwrap();
        let texts = db.open_tree("texts").unwrap();
        staging.put_text(9, b"text");
        staging.write(&journal, &texts, 1).unwrap();
        let text = texts.get(9u64.to_be_bytes()).unwrap().unwrap();
        assert_eq!(super::super::packed::unpack(&text).unwrap(), b"text");
        assert_eq!(tree.get("a").unwrap(), None);
        assert!(journal.is_empty());
    }
}
