//! The sled backend's own tests (the store contract runs in tests/store.rs).

use super::*;
use crate::store::{Expect, Tag};

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

/// Rewrites what this build committed the way formats 2 to 5 kept it: objects' and inbox
/// items' texts inline, no `texts`.
fn as_format_5(trees: &Trees) {
    for item in trees.objects.iter() {
        let (key, value) = item.unwrap();
        let object = trees.object_at(&key, &value).unwrap().unwrap();
        let inline = keys::inline_value(object.revision, object.schedule_tag, &object.text);
        trees.objects.insert(key, inline).unwrap();
    }
    for item in trees.inbox.iter() {
        let (key, value) = item.unwrap();
        let (text, _) = keys::inbox_of(&value).unwrap();
        trees
            .inbox
            .insert(key, trees.text(text).unwrap().unwrap().as_bytes())
            .unwrap();
    }
    trees.texts.clear().unwrap();
}

/// The store as a binary of an older format (formats 3 and 4 here) left it, texts inline and
/// nothing counted, opened again (and so upgraded).
fn reopened_uncounted(store: SledStore, dir: &Path, format: &str) -> SledStore {
    {
        let trees = store.trees().unwrap();
        as_format_5(&trees);
        trees.usage.clear().unwrap();
        trees.meta.insert("format", format).unwrap();
        trees.db.flush().unwrap();
    }
    drop(store);
    SledStore::open(dir).unwrap()
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
        // As a format-1 binary left it: no log, an object's value its revision and text.
        let trees = store.trees().unwrap();
        let object = store.get("a@x.org", "old").unwrap().unwrap();
        let mut value = object.revision.to_be_bytes().to_vec();
        value.extend_from_slice(object.text.as_bytes());
        trees
            .objects
            .insert(keys::object_key("a@x.org", "old"), value)
            .unwrap();
        trees.texts.clear().unwrap();
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
    assert_eq!(
        meta.get("format").unwrap().unwrap().as_ref(),
        format!("imipd-{FORMAT}").as_bytes()
    );
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
    // As a format-3 binary left it: nothing counted.
    let store = reopened_uncounted(store, dir.path(), "imipd-3");
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

/// Footprints an older build filed (another `FOOTPRINT_FORMAT`, or none) are forgotten when
/// the store opens: this build's filing holds entries theirs lacks.
#[test]
fn footprints_of_another_format_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let filed = [("one".to_string(), vec![(7, b"entry".to_vec())])];
    store.keep_footprints("a@x.org", 5, &filed).unwrap();
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.footprint_position("a@x.org").unwrap(), 5, "kept");
    drop(store);
    {
        let cache = sled::open(dir.path().join("footprints")).unwrap();
        cache.insert("format", "1").unwrap();
        cache.flush().unwrap();
    }
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.footprint_position("a@x.org").unwrap(), 0);
    assert!(store.footprints_in("a@x.org", &[7]).unwrap().is_empty());
}

/// What the inbox holds, read item by item: what the count must say.
fn inbox_scanned(store: &SledStore, account: &str) -> keys::InboxHeld {
    let held = store.inbox_ids(account).unwrap();
    keys::InboxHeld {
        items: held.len() as u64,
        bytes: held.iter().map(|(_, size)| *size as u64).sum(),
    }
}

fn inbox_counted(store: &SledStore, account: &str) -> keys::InboxHeld {
    let trees = store.trees().unwrap();
    let value = trees.usage.get(keys::inbox_held_key(account)).unwrap();
    keys::InboxHeld::of(value.as_deref())
}

#[test]
fn format_4_counts_each_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let item = |account: &str, text: &str| Change::Inbox {
        account: account.into(),
        text: text.into(),
        keep: 10,
        keep_bytes: 1000,
    };
    store
        .commit(&[
            item("a@x.org", "12345"),
            item("a@x.org", "123"),
            item("b@x.org", "1"),
        ])
        .unwrap();
    // As a format-4 binary left it: nothing counted.
    let store = reopened_uncounted(store, dir.path(), "imipd-4");
    let held = |items, bytes| keys::InboxHeld { items, bytes };
    assert_eq!(inbox_counted(&store, "a@x.org"), held(2, 8));
    assert_eq!(inbox_counted(&store, "b@x.org"), held(1, 1));
    // The counts keep the inbox bounded from there on.
    store
        .commit(&[Change::Inbox {
            account: "a@x.org".into(),
            text: "1234567".into(),
            keep: 10,
            keep_bytes: 9,
        }])
        .unwrap();
    assert_eq!(inbox_counted(&store, "a@x.org"), held(1, 7));
    assert_eq!(inbox_scanned(&store, "a@x.org"), held(1, 7));
}

/// One step of the generated inbox histories: a new item (its size, the inbox's bounds), or
/// the removal of the n-th item held (or of one already gone, when n is past the end).
#[derive(Debug, Clone)]
enum InboxStep {
    Add {
        size: usize,
        keep: usize,
        keep_bytes: usize,
    },
    Remove(usize),
}

fn inbox_step() -> impl proptest::strategy::Strategy<Value = InboxStep> {
    use proptest::prelude::*;
    prop_oneof![
        3 => (1usize..40, 1usize..6, 20usize..120)
            .prop_map(|(size, keep, keep_bytes)| InboxStep::Add { size, keep, keep_bytes }),
        1 => (0usize..8).prop_map(InboxStep::Remove),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

    /// Whatever comes and goes, the count of what an inbox holds is what it holds, and a new
    /// item leaves the inbox within its bounds (or alone, when it is larger than they are).
    #[test]
    fn an_inbox_is_counted_as_it_changes(
        steps in proptest::collection::vec(inbox_step(), 1..40)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut gone = Vec::new();
        for step in steps {
            match step {
                InboxStep::Add { size, keep, keep_bytes } => {
                    store.commit(&[Change::Inbox {
                        account: "a@x.org".into(),
                        text: "x".repeat(size),
                        keep,
                        keep_bytes,
                    }]).unwrap();
                    let held = inbox_scanned(&store, "a@x.org");
                    proptest::prop_assert!(held.items as usize <= keep);
                    proptest::prop_assert!(held.bytes as usize <= keep_bytes || held.items == 1);
                }
                InboxStep::Remove(n) => {
                    let held = store.inbox_ids("a@x.org").unwrap();
                    let id = held.get(n).map(|(id, _)| *id).or(gone.last().copied());
                    if let Some(id) = id {
                        store.commit(&[Change::InboxRemove { account: "a@x.org".into(), id }])
                            .unwrap();
                        gone.push(id);
                    }
                }
            }
            proptest::prop_assert_eq!(
                inbox_counted(&store, "a@x.org"),
                inbox_scanned(&store, "a@x.org")
            );
        }
    }
}

/// A crash after a commit's journal record and before its writes: the store writes the
/// commit when it opens again, whole (the object, its change log entry, what the account
/// holds, the inbox item and its count), and forgets the record.
#[test]
fn a_commit_a_crash_cut_short_is_written_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    store.commit(&[put_of("a@x.org", "before", "1")]).unwrap();
    let latest = store.changes_since("a@x.org", 0).unwrap().latest;
    {
        let trees = store.trees().unwrap();
        trees.commit_cut_short(&[
            put_of("a@x.org", "cut", "12345"),
            Change::Inbox {
                account: "a@x.org".into(),
                text: "request".into(),
                keep: 10,
                keep_bytes: 1000,
            },
        ]);
        assert_eq!(
            store.get("a@x.org", "cut").unwrap(),
            None,
            "not written yet"
        );
        trees.db.flush().unwrap();
    }
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.get("a@x.org", "cut").unwrap().unwrap().text, "12345");
    let since = store.changes_since("a@x.org", latest).unwrap();
    assert_eq!(since.changed.len(), 1);
    assert_eq!(since.changed[0].uid, "cut");
    assert_eq!(
        store.usage("a@x.org").unwrap(),
        Usage {
            objects: 2,
            bytes: 6
        }
    );
    assert_eq!(
        inbox_counted(&store, "a@x.org"),
        inbox_scanned(&store, "a@x.org")
    );
    assert_eq!(inbox_scanned(&store, "a@x.org").items, 1);
    assert!(store.trees().unwrap().journal.is_empty());
}

/// A commit whose precondition fails writes nothing, not even its first changes.
#[test]
fn a_refused_commit_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let refused = store.commit(&[
        put_of("a@x.org", "first", "1"),
        put("second", "2", Expect::Revision(7)),
    ]);
    assert!(matches!(refused, Err(StoreError::Conflict)));
    assert_eq!(store.get("a@x.org", "first").unwrap(), None);
    assert_eq!(store.usage("a@x.org").unwrap(), Usage::default());
    assert_eq!(store.changes_since("a@x.org", 0).unwrap().changed.len(), 0);
}

/// A store with two objects of `a@x.org` and an item in its schedule inbox.
fn two_objects_and_an_item() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let inbox = Change::Inbox {
        account: "a@x.org".into(),
        text: "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\n".into(),
        keep: 10,
        keep_bytes: 1000,
    };
    store
        .commit(&[put_of("a@x.org", "one", "BEGIN:VCALENDAR\r\none"), inbox])
        .unwrap();
    store
        .commit(&[put_of("a@x.org", "two", "BEGIN:VCALENDAR\r\ntwo")])
        .unwrap();
    (dir, store)
}

/// Format 5 kept texts inline: opened by this build, they move to `texts` and read as before;
/// values already moved (an upgrade cut short) are left as they are.
#[test]
fn format_5_moves_the_texts_out() {
    let (dir, store) = two_objects_and_an_item();
    let before = (
        store.list("a@x.org").unwrap(),
        store.listing("a@x.org").unwrap(),
        store.inbox("a@x.org").unwrap(),
        store.inbox_ids("a@x.org").unwrap(),
    );
    {
        let trees = store.trees().unwrap();
        let key = keys::object_key("a@x.org", "two");
        let moved = trees.objects.get(&key).unwrap().unwrap();
        let text = trees.object_at(&key, &moved).unwrap().unwrap().text;
        as_format_5(&trees);
        // "two" was moved before the cut.
        trees
            .texts
            .insert(77u64.to_be_bytes(), text.as_bytes())
            .unwrap();
        let head = keys::Head {
            text: 77,
            ..keys::Head::of(&moved).unwrap()
        };
        trees
            .objects
            .insert(keys::object_key("a@x.org", "two"), head.value())
            .unwrap();
        trees.meta.insert("format", "imipd-5").unwrap();
        trees.db.flush().unwrap();
    }
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    let after = (
        store.list("a@x.org").unwrap(),
        store.listing("a@x.org").unwrap(),
        store.inbox("a@x.org").unwrap(),
        store.inbox_ids("a@x.org").unwrap(),
    );
    assert_eq!(after, before);
    let trees = store.trees().unwrap();
    assert_eq!(trees.texts.len(), 3, "two objects and an item, each once");
}

/// Format 6 kept texts as they were: opened by this build, they are packed and read as
/// before; a text packed already (an upgrade cut short) is not packed twice.
#[test]
fn format_6_packs_the_texts() {
    let (dir, store) = two_objects_and_an_item();
    let before = (
        store.list("a@x.org").unwrap(),
        store.inbox("a@x.org").unwrap(),
        store.usage("a@x.org").unwrap(),
    );
    {
        let trees = store.trees().unwrap();
        let packed: Vec<_> = trees.texts.iter().map(Result::unwrap).collect();
        for (key, value) in &packed[1..] {
            let text = packed::unpack(value).unwrap();
            trees.texts.insert(key, text).unwrap();
        }
        trees.meta.insert("format", "imipd-6").unwrap();
        trees.db.flush().unwrap();
    }
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    let after = (
        store.list("a@x.org").unwrap(),
        store.inbox("a@x.org").unwrap(),
        store.usage("a@x.org").unwrap(),
    );
    assert_eq!(after, before);
    let trees = store.trees().unwrap();
    for item in trees.texts.iter() {
        let (_, value) = item.unwrap();
        assert!(packed::is_packed(&value));
        assert!(!packed::is_packed(&packed::unpack(&value).unwrap()));
    }
}

/// An object replaced or removed, or an inbox item removed, leaves no text behind.
#[test]
fn texts_go_with_what_they_belong_to() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let item = Change::Inbox {
        account: "a@x.org".into(),
        text: "request".into(),
        keep: 1,
        keep_bytes: 1000,
    };
    store
        .commit(&[put_of("a@x.org", "u", "1"), item.clone()])
        .unwrap();
    store.commit(&[put_of("a@x.org", "u", "2"), item]).unwrap();
    let texts = store.trees().unwrap().texts.len();
    assert_eq!(texts, 2, "the object's latest text and the one item kept");
    let held = store.inbox_ids("a@x.org").unwrap();
    store
        .commit(&[
            Change::Delete {
                account: "a@x.org".into(),
                uid: "u".into(),
                expect: Expect::Any,
            },
            Change::InboxRemove {
                account: "a@x.org".into(),
                id: held[0].0,
            },
        ])
        .unwrap();
    assert!(store.trees().unwrap().texts.is_empty());
}

/// A read never misses an object a commit is replacing, nor sees an inbox item without its
/// text. An object's head and its text are two keys: a reader that took the head just before
/// a commit replaced it found its text already gone, and an attendee's REPLY arriving while
/// the organizer's copy took a SCHEDULE-STATUS was answered "no such object" and dropped.
#[test]
fn reads_see_an_object_and_an_inbox_whole_while_commits_replace_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let item = |n: usize| Change::Inbox {
        account: "a@x.org".into(),
        text: format!("item {n}"),
        keep: 1,
        keep_bytes: 1000,
    };
    store
        .commit(&[put_of("a@x.org", "u", "version 0"), item(0)])
        .unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 1..3000 {
                let text = format!("version {n}");
                store
                    .commit(&[put("u", &text, Expect::Any), item(n)])
                    .unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut reads = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let object = store.get("a@x.org", "u").unwrap();
            assert!(
                object.is_some(),
                "the object went missing after {reads} reads"
            );
            let listed = store.list("a@x.org").unwrap();
            assert_eq!(listed.len(), 1, "after {reads} reads");
            let all = store.all().unwrap();
            assert_eq!(all.len(), 1, "after {reads} reads");
            for (id, text) in store.inbox("a@x.org").unwrap() {
                assert!(!text.is_empty(), "inbox item {id} without its text");
            }
            reads += 1;
        }
    });
}
