//! The store's contract, on both backends: sled always, PostgreSQL when `TEST_POSTGRES` names
//! a cluster. What several hosts sharing one database rely on is here: preconditions checked
//! at commit, a message recorded once, a notice sent once, claims with leases, the relay's
//! acceptance recorded where every host sees it, sync tokens that never skip a change.

mod common;

use imipd::store::{
    CalendarWas, Change, Claim, Count, Expect, Expired, Expiry, MailSummary, Marker,
    OutboundMessage, PgStore, Read, SledStore, Store, StoreError, Tag, Tally, Usage, Was,
};
use std::sync::Arc;

fn sled_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("imipd-store-{name}-{}", std::process::id()))
}

fn sled(name: &str) -> Arc<dyn Store> {
    let dir = sled_dir(name);
    let _ = std::fs::remove_dir_all(&dir);
    Arc::new(SledStore::open(&dir).unwrap())
}

fn postgres(name: &str) -> Option<Arc<dyn Store>> {
    let section = common::store_section(&format!("store-{name}"));
    let url = section.split('"').nth(1)?;
    let url = imipd::store::Database::parse(url).unwrap();
    PgStore::migrate(&url).unwrap();
    Some(Arc::new(PgStore::open(&url, 4).unwrap()))
}

/// Runs a check on every backend there is.
fn on_each(name: &str, check: impl Fn(&dyn Store)) {
    let store = sled(name);
    check(store.as_ref());
    drop(store);
    let _ = std::fs::remove_dir_all(sled_dir(name));
    match postgres(name) {
        Some(store) => {
            check(store.as_ref());
            drop(store);
            common::drop_database(&format!("store-{name}"));
        }
        None => common::skip_postgres(name),
    }
}

fn put(uid: &str, text: &str, expect: Expect) -> Change {
    Change::Put {
        account: "bob".into(),
        uid: uid.into(),
        text: text.into(),
        expect,
        tag: Tag::New,
    }
}

fn message(to: &str) -> OutboundMessage {
    OutboundMessage {
        trace: "t".into(),
        account: "bob".into(),
        uid: "u".into(),
        method: "REQUEST".into(),
        from: imipd::mailbox::Mailbox::parse("bob@example.com").unwrap(),
        to: vec![imipd::mailbox::Mailbox::parse(to).unwrap()],
        summary: MailSummary::default(),
        calendar: "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n".into(),
        queued_at: 0,
        attempts: 0,
        next_attempt: 0,
        last_error: None,
        via: None,
    }
}

#[test]
fn preconditions_are_checked_at_commit_and_a_conflict_changes_nothing() {
    on_each("preconditions", |store| {
        let ids = store.commit(&[put("a", "one", Expect::Absent)]).unwrap();
        let first = store.get("bob", "a").unwrap().unwrap();
        assert_eq!((first.revision, first.text.as_str()), (ids[0], "one"));
        assert!(matches!(
            store.commit(&[put("a", "two", Expect::Absent)]),
            Err(StoreError::Conflict)
        ));
        // A stale revision fails the whole commit: nothing of it is kept.
        let stale = [
            put("b", "new", Expect::Absent),
            put("a", "three", Expect::Revision(first.revision + 1000)),
        ];
        assert!(matches!(store.commit(&stale), Err(StoreError::Conflict)));
        assert!(store.get("bob", "b").unwrap().is_none());
        store
            .commit(&[put("a", "four", Expect::Revision(first.revision))])
            .unwrap();
        let now = store.get("bob", "a").unwrap().unwrap();
        assert!(now.revision > first.revision && now.text == "four");
        store
            .commit(&[Change::Delete {
                account: "bob".into(),
                uid: "a".into(),
                expect: Expect::Revision(now.revision),
            }])
            .unwrap();
        assert!(store.get("bob", "a").unwrap().is_none());
    });
}

#[test]
fn a_message_is_recorded_once_and_a_notice_sent_once() {
    on_each("once", |store| {
        store.commit(&[Change::Seen(b"key".to_vec(), 0)]).unwrap();
        assert!(store.seen(b"key").unwrap());
        // The second host's decision was made before the first committed.
        assert!(matches!(
            store.commit(&[put("x", "y", Expect::Any), Change::Seen(b"key".to_vec(), 0)]),
            Err(StoreError::Conflict)
        ));
        assert!(store.get("bob", "x").unwrap().is_none());

        let notify = Change::Notify {
            account: "bob".into(),
            uid: "n".into(),
            due: 10,
            repliers: vec!["mailto:a@x".into()],
        };
        store.commit(std::slice::from_ref(&notify)).unwrap();
        // A later answer keeps the time and adds its replier.
        store
            .commit(&[Change::Notify {
                account: "bob".into(),
                uid: "n".into(),
                due: 99,
                repliers: vec!["mailto:b@x".into(), "mailto:a@x".into()],
            }])
            .unwrap();
        let notices = store.notices().unwrap();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].due, 10);
        assert_eq!(notices[0].repliers, ["mailto:a@x", "mailto:b@x"]);
        let sent = Change::Notified {
            account: "bob".into(),
            uid: "n".into(),
        };
        store.commit(std::slice::from_ref(&sent)).unwrap();
        assert!(matches!(store.commit(&[sent]), Err(StoreError::Conflict)));
    });
}

#[test]
fn sync_tokens_list_each_change_once() {
    on_each("sync", |store| {
        assert_eq!(store.changes_since("bob", 0).unwrap().latest, 0);
        store.commit(&[put("a", "1", Expect::Any)]).unwrap();
        store.commit(&[put("b", "1", Expect::Any)]).unwrap();
        let all = store.changes_since("bob", 0).unwrap();
        assert_eq!(all.changed.len(), 2);
        let token = all.latest;
        assert!(
            store
                .changes_since("bob", token)
                .unwrap()
                .changed
                .is_empty()
        );
        assert_eq!(store.changes_since("bob", u64::MAX).unwrap().latest, token);
        store
            .commit(&[Change::Delete {
                account: "bob".into(),
                uid: "a".into(),
                expect: Expect::Any,
            }])
            .unwrap();
        let since = store.changes_since("bob", token).unwrap();
        assert_eq!(since.changed.len(), 1);
        assert!(since.changed[0].removed && since.changed[0].uid == "a");
        assert!(since.latest > token);
        // Another account's log is its own.
        assert_eq!(store.changes_since("carol", 0).unwrap().latest, 0);
    });
}

#[test]
fn a_claim_holds_until_its_lease_ends() {
    on_each("claims", |store| {
        let ids = store
            .commit(&[Change::Enqueue(message("paul@partner.example"))])
            .unwrap();
        let id = ids[0];
        // A store of one host (sled) has no other host to keep out: nothing to coordinate.
        let Some(hosts) = store.coordination() else {
            return;
        };
        assert_eq!(hosts.claim(id, "host-a", 100, 200).unwrap(), Claim::Taken);
        assert_eq!(
            hosts.claim(id, "host-b", 150, 250).unwrap(),
            Claim::Elsewhere
        );
        // The holder renews; the other host gets it once the lease ended.
        assert_eq!(hosts.claim(id, "host-a", 150, 300).unwrap(), Claim::Taken);
        assert_eq!(
            hosts.claim(id, "host-b", 299, 400).unwrap(),
            Claim::Elsewhere
        );
        // host-a's relay took it, then host-a died: host-b records it as sent.
        hosts.relayed(id).unwrap();
        assert_eq!(hosts.claim(id, "host-b", 301, 400).unwrap(), Claim::Relayed);
        // Put back for a later attempt, anyone may take it.
        store
            .commit(&[Change::Requeue(id, message("paul@partner.example"))])
            .unwrap();
        assert_ne!(
            hosts.claim(id, "host-c", 302, 400).unwrap(),
            Claim::Elsewhere
        );
        store.commit(&[Change::Dequeue(id)]).unwrap();
        assert!(store.outbox().unwrap().is_empty());
        assert_ne!(hosts.claim(id, "host-a", 500, 600).unwrap(), Claim::Relayed);
    });
}

#[test]
fn a_sync_position_is_where_the_change_log_ends() {
    on_each("sync-position", |store| {
        assert_eq!(store.sync_position("bob").unwrap(), 0);
        store.commit(&[put("a", "one", Expect::Absent)]).unwrap();
        let after_one = store.sync_position("bob").unwrap();
        assert_eq!(after_one, store.changes_since("bob", 0).unwrap().latest);
        store.commit(&[put("b", "two", Expect::Absent)]).unwrap();
        let after_two = store.sync_position("bob").unwrap();
        assert!(after_two > after_one);
        assert_eq!(
            after_two,
            store.changes_since("bob", after_one).unwrap().latest
        );
        assert_eq!(store.sync_position("nobody").unwrap(), 0);
    });
}

/// Footprints are filed per account, object and bucket, replaced whole for an object named
/// again, forgotten for an object named with none, and kept with their position; they
/// survive a reopening (no rebuild after a restart).
#[test]
fn footprints_are_filed_replaced_and_forgotten() {
    let filed = |uid: &str, buckets: &[(i64, u8)]| {
        let by_bucket = buckets.iter().map(|(b, v)| (*b, vec![*v])).collect();
        (uid.to_string(), by_bucket)
    };
    on_each("footprints", |store| {
        assert_eq!(store.footprint_position("bob").unwrap(), 0);
        let first = [filed("a", &[(-3, 1), (7, 2)]), filed("b", &[(i64::MIN, 3)])];
        store.keep_footprints("bob", 5, &first).unwrap();
        store
            .keep_footprints("carol", 9, &[filed("a", &[(7, 9)])])
            .unwrap();
        assert_eq!(store.footprint_position("bob").unwrap(), 5);
        let read = |buckets: &[i64]| {
            let mut found = store.footprints_in("bob", buckets).unwrap();
            found.sort();
            found
        };
        let all = [i64::MIN, -3, 7, 8];
        assert_eq!(
            read(&all),
            [
                ("a".to_string(), vec![1]),
                ("a".to_string(), vec![2]),
                ("b".to_string(), vec![3])
            ]
        );
        assert_eq!(read(&[7]), [("a".to_string(), vec![2])]);
        store
            .keep_footprints("bob", 8, &[filed("a", &[(8, 4)]), filed("b", &[])])
            .unwrap();
        assert_eq!(read(&all), [("a".to_string(), vec![4])]);
        assert_eq!(store.footprint_position("bob").unwrap(), 8);
        assert_eq!(store.footprints_in("carol", &[7]).unwrap().len(), 1);
    });
    let dir = sled_dir("footprints-reopened");
    let _ = std::fs::remove_dir_all(&dir);
    let kept = vec![filed("a", &[(1, 1)])];
    SledStore::open(&dir)
        .unwrap()
        .keep_footprints("bob", 3, &kept)
        .unwrap();
    let reopened = SledStore::open(&dir).unwrap();
    assert_eq!(reopened.footprint_position("bob").unwrap(), 3);
    assert_eq!(
        reopened.footprints_in("bob", &[1]).unwrap(),
        [("a".to_string(), vec![1])]
    );
    drop(reopened);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_backend_refuses_what_it_cannot_keep() {
    on_each("max-value", |store| {
        let most = store.max_value();
        let over = "x".repeat(most + 1);
        match store.commit(&[put("big", &over, Expect::Absent)]) {
            Err(StoreError::TooLarge(size)) => assert_eq!(size, most + 1),
            other => panic!("{other:?}"),
        }
        assert_eq!(store.get("bob", "big").unwrap(), None);
    });
}

/// A further calendar is as the request found it, as committed, or the commit is a conflict:
/// made only where there was room and no calendar of its name, written into only while it is
/// there, removed only while no object is in it.
#[test]
fn a_calendar_is_as_its_request_found_it() {
    on_each("calendar-as-found", |store| {
        let found = |name: &str, was: CalendarWas| Change::CalendarAsFound {
            account: "bob".into(),
            name: name.into(),
            was,
        };
        let calendar = |name: &str, exists: bool| Change::Calendar {
            account: "bob".into(),
            name: name.into(),
            exists,
        };
        let conflict = |result: Result<Vec<u64>, StoreError>| {
            assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}")
        };
        let make = |name: &str| {
            [
                found(name, CalendarWas::AbsentBelow(2)),
                calendar(name, true),
            ]
        };
        store.commit(&make("work")).unwrap();
        conflict(store.commit(&make("work")));
        store.commit(&make("home")).unwrap();
        conflict(store.commit(&make("club")));
        assert_eq!(store.calendars("bob").unwrap(), ["home", "work"]);

        let placed = |uid: &str, name: &str| Change::Place {
            account: "bob".into(),
            uid: uid.into(),
            calendar: Some(name.into()),
        };
        let into = |uid: &str, name: &str| {
            store.commit(&[
                found(name, CalendarWas::There),
                put(uid, "BEGIN:VCALENDAR", Expect::Absent),
                placed(uid, name),
            ])
        };
        into("a", "work").unwrap();
        conflict(into("b", "club"));
        let remove =
            |name: &str| store.commit(&[found(name, CalendarWas::Empty), calendar(name, false)]);
        conflict(remove("work"));
        let gone = Change::Delete {
            account: "bob".into(),
            uid: "a".into(),
            expect: Expect::Any,
        };
        store.commit(&[gone]).unwrap();
        // The placement outlives its object (a sync reports the removal): empty all the same.
        let named = Change::Property {
            account: "bob".into(),
            calendar: "work".into(),
            name: "{DAV:}displayname".into(),
            value: Some("Work".into()),
        };
        store.commit(&[named]).unwrap();
        remove("work").unwrap();
        conflict(remove("work"));
        assert_eq!(store.calendars("bob").unwrap(), ["home"]);
        // Its properties go with it: a calendar made and removed over and over left them all,
        // and one made again under the name found the old one's.
        assert!(store.properties("bob", "work").unwrap().is_empty());
    });
}

#[test]
fn calendars_properties_and_the_inbox_round_trip() {
    on_each("calendars", |store| {
        let ids = store
            .commit(&[
                Change::Calendar {
                    account: "bob".into(),
                    name: "work".into(),
                    exists: true,
                },
                Change::Property {
                    account: "bob".into(),
                    calendar: "work".into(),
                    name: "{DAV:}displayname".into(),
                    value: Some("Work ✓".into()),
                },
                Change::Place {
                    account: "bob".into(),
                    uid: "a".into(),
                    calendar: Some("work".into()),
                },
                Change::Inbox {
                    account: "bob".into(),
                    text: "first".into(),
                    keep: 5,
                    keep_bytes: 1000,
                },
                Change::Inbox {
                    account: "bob".into(),
                    text: "second".into(),
                    keep: 5,
                    keep_bytes: 1000,
                },
            ])
            .unwrap();
        assert_eq!(store.calendars("bob").unwrap(), ["work"]);
        assert_eq!(
            store.properties("bob", "work").unwrap(),
            [("{DAV:}displayname".to_string(), "Work ✓".to_string())]
        );
        assert_eq!(
            store.placements("bob").unwrap(),
            [("a".to_string(), "work".to_string())]
        );
        assert_eq!(store.inbox_ids("bob").unwrap(), [(ids[3], 5), (ids[4], 6)]);
        store
            .commit(&[Change::InboxRemove {
                account: "bob".into(),
                id: ids[3],
            }])
            .unwrap();
        assert_eq!(
            store.inbox("bob").unwrap(),
            [(ids[4], "second".to_string())]
        );
        // Past `keep`, the oldest items make room.
        let mut newest = Vec::new();
        for n in 0..4 {
            let inbox = Change::Inbox {
                account: "bob".into(),
                text: format!("more {n}"),
                keep: 3,
                keep_bytes: 1000,
            };
            newest.push(store.commit(&[inbox]).unwrap()[0]);
        }
        let ids_of =
            |held: Vec<(u64, usize)>| held.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids_of(store.inbox_ids("bob").unwrap()), newest[1..]);
        // Past `keep_bytes` too: 3 items of 6 bytes held, a new one of 10 in 20 bytes leaves
        // the newest held one beside it; one larger than all stays alone.
        let big = |text: &str, keep_bytes| Change::Inbox {
            account: "bob".into(),
            text: text.into(),
            keep: 10,
            keep_bytes,
        };
        let ten = store.commit(&[big("0123456789", 20)]).unwrap()[0];
        assert_eq!(ids_of(store.inbox_ids("bob").unwrap()), [newest[3], ten]);
        let huge = store.commit(&[big(&"x".repeat(50), 20)]).unwrap()[0];
        assert_eq!(store.inbox_ids("bob").unwrap(), [(huge, 50)]);
    });
}

#[test]
fn old_deliveries_and_sent_messages_are_forgotten_oldest_first() {
    on_each("expire", |store| {
        let seen = |key: &str, at| Change::Seen(key.as_bytes().to_vec(), at);
        store
            .commit(&[seen("m1", 100), seen("m2", 200), seen("m3", 300)])
            .unwrap();
        store
            .commit(&[
                Change::Sent(1, message("a@x.org"), 100),
                Change::Sent(2, message("b@x.org"), 300),
            ])
            .unwrap();
        let before = |seen_before, sent_before| Expiry {
            seen_before,
            sent_before,
            tallies_before: 0,
        };
        // A batch at a time, the oldest first.
        let gone = store.expire(before(250, 200), 1).unwrap();
        assert_eq!(
            gone,
            Expired {
                seen: 1,
                sent: 1,
                tallies: 0
            }
        );
        assert!(!store.seen(b"m1").unwrap() && store.seen(b"m2").unwrap());
        assert!(store.sent(1).unwrap().is_none());
        assert_eq!(store.expire(before(250, 200), 1).unwrap().seen, 1);
        assert_eq!(
            store.expire(before(250, 200), 1).unwrap(),
            Expired::default()
        );
        assert!(store.seen(b"m3").unwrap());
        assert_eq!(store.sent(2).unwrap().unwrap().to[0].as_str(), "b@x.org");
        // A forgotten delivery may be recorded again.
        store.commit(&[seen("m1", 400)]).unwrap();
        assert!(store.seen(b"m1").unwrap());
    });
}

#[test]
fn what_was_kept_for_an_object_goes_with_it() {
    on_each("kept-for", |store| {
        let proposal = |uid: &str| Change::Proposal {
            account: "bob".into(),
            uid: uid.into(),
            text: format!("COUNTER of {uid}"),
        };
        let refreshed = |uid: &str| Change::Refreshed {
            account: "bob".into(),
            uid: uid.into(),
            attendee: "mailto:a@x.org".into(),
            at: 5,
        };
        store
            .commit(&[
                put("gone", "x", Expect::Absent),
                put("stays", "y", Expect::Absent),
                proposal("gone"),
                proposal("stays"),
                refreshed("gone"),
                refreshed("stays"),
            ])
            .unwrap();
        store
            .commit(&[Change::Delete {
                account: "bob".into(),
                uid: "gone".into(),
                expect: Expect::Any,
            }])
            .unwrap();
        let counters = store.counters("bob").unwrap();
        assert_eq!(counters.len(), 1, "{counters:?}");
        assert_eq!(counters[0].0, "stays");
        assert_eq!(
            store.refreshed("bob", "gone", "mailto:a@x.org").unwrap(),
            None
        );
        assert_eq!(
            store.refreshed("bob", "stays", "mailto:a@x.org").unwrap(),
            Some(5)
        );
        // Kept in the same commit before the removal: it goes too (sled scanned before the
        // commit and kept it); for an object that is not there: it goes too (PostgreSQL kept
        // it). Both found by tests/store_model.rs.
        let remove = |uid: &str, expect| Change::Delete {
            account: "bob".into(),
            uid: uid.into(),
            expect,
        };
        store
            .commit(&[proposal("stays"), remove("stays", Expect::Any)])
            .unwrap();
        assert_eq!(store.counters("bob").unwrap(), Vec::new());
        store.commit(&[refreshed("never")]).unwrap();
        store.commit(&[remove("never", Expect::Absent)]).unwrap();
        assert_eq!(
            store.refreshed("bob", "never", "mailto:a@x.org").unwrap(),
            None
        );
    });
}

#[test]
fn objects_keep_the_names_clients_gave_them() {
    on_each("names", |store| {
        let name = |uid: &str, name: Option<&str>| Change::Name {
            account: "bob".into(),
            uid: uid.into(),
            name: name.map(Into::into),
        };
        let names = |store: &dyn Store| store.names("bob").unwrap();
        store
            .commit(&[put("u1", "x", Expect::Absent), name("u1", Some("a.ics"))])
            .unwrap();
        assert_eq!(store.named("bob", "a.ics").unwrap().as_deref(), Some("u1"));
        assert_eq!(
            store.name_of("bob", "u1").unwrap().as_deref(),
            Some("a.ics")
        );
        assert!(store.named("alice", "a.ics").unwrap().is_none());
        // Renamed: the old name is free.
        store.commit(&[name("u1", Some("b.ics"))]).unwrap();
        assert!(store.named("bob", "a.ics").unwrap().is_none());
        assert_eq!(names(store), [("u1".to_string(), "b.ics".to_string())]);
        // The name given to another object leaves the first.
        store
            .commit(&[put("u2", "y", Expect::Absent), name("u2", Some("b.ics"))])
            .unwrap();
        assert_eq!(store.named("bob", "b.ics").unwrap().as_deref(), Some("u2"));
        assert!(store.name_of("bob", "u1").unwrap().is_none());
        assert_eq!(names(store), [("u2".to_string(), "b.ics".to_string())]);
        // The name outlives the object (a sync reports the removal under it).
        store
            .commit(&[Change::Delete {
                account: "bob".into(),
                uid: "u2".into(),
                expect: Expect::Any,
            }])
            .unwrap();
        assert_eq!(store.named("bob", "b.ics").unwrap().as_deref(), Some("u2"));
        // Back to UID.ics.
        store.commit(&[name("u2", None)]).unwrap();
        assert!(names(store).is_empty());
        assert!(store.named("bob", "b.ics").unwrap().is_none());
    });
}

/// A database of schema format 1 (no dates on deliveries and sent messages), as the first
/// release with PostgreSQL made it: `imipd migrate` upgrades it, dating what it holds to the
/// upgrade.
#[test]
fn migrate_upgrades_a_format_1_database() {
    let section = common::store_section("upgrade");
    let Some(url) = section.split('"').nth(1) else {
        return common::skip_postgres("migrate_upgrades_a_format_1_database");
    };
    let (ok, out) = migrate("upgrade", &section);
    assert!(ok && out.contains("schema created"), "{out}");
    let format_1 = "DROP INDEX imipd.seen_by_time; DROP INDEX imipd.sent_by_time; \
        ALTER TABLE imipd.seen DROP COLUMN at; ALTER TABLE imipd.sent DROP COLUMN at; \
        INSERT INTO imipd.seen VALUES ('old', 1); \
        INSERT INTO imipd.sent VALUES (7, convert_to('{\"trace\":\"t\",\"account\":\"bob\",\
        \"uid\":\"u\",\"method\":\"REQUEST\",\"from\":\"bob@example.com\",\
        \"to\":[\"c@x.org\"],\"calendar\":\"\",\"queued_at\":0}', 'UTF8')); \
        DROP TRIGGER count_usage ON imipd.objects; DROP TABLE imipd.usage; \
        DROP TABLE imipd.tallies; DROP TABLE imipd.footprints; \
        DROP TABLE imipd.footprint_positions; \
        INSERT INTO imipd.objects VALUES ('bob', 'x', 1, 1, 'hello'); \
        DROP TRIGGER count_inbox ON imipd.inbox; DROP TABLE imipd.inbox_held; \
        INSERT INTO imipd.inbox SELECT 'bob', nextval('imipd.ids'), 'first' FROM generate_series(1, 3); \
        UPDATE imipd.meta SET value = 'imipd-1' WHERE key = 'format'";
    let status = std::process::Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", url, "-c", format_1])
        .status()
        .unwrap();
    assert!(status.success());
    let parsed = imipd::store::Database::parse(url).unwrap();
    assert!(matches!(
        PgStore::open(&parsed, 1),
        Err(StoreError::Format { .. })
    ));
    let (ok, out) = migrate("upgrade", &section);
    assert!(ok && out.contains("schema upgraded from imipd-1"), "{out}");
    let (ok, out) = migrate("upgrade", &section);
    assert!(ok && out.contains("schema up to date"), "{out}");
    let store = PgStore::open(&parsed, 1).unwrap();
    assert!(store.seen(b"old").unwrap());
    assert_eq!(store.sent(7).unwrap().unwrap().uid, "u");
    // Format 4 files footprints.
    let kept = vec![("x".to_string(), vec![(4, vec![1, 2])])];
    store.keep_footprints("bob", 2, &kept).unwrap();
    assert_eq!(
        store.footprints_in("bob", &[4]).unwrap(),
        [("x".to_string(), vec![1, 2])]
    );
    assert_eq!(store.footprint_position("bob").unwrap(), 2);
    // Format 3 counted what the database held, and counts from then on.
    assert_eq!(
        store.usage("bob").unwrap(),
        Usage {
            objects: 1,
            bytes: 5
        }
    );
    store.commit(&[put("y", "ab", Expect::Absent)]).unwrap();
    assert_eq!(
        store.usage("bob").unwrap(),
        Usage {
            objects: 2,
            bytes: 7
        }
    );
    // Format 6 counted each schedule inbox: one more item than `keep` allows, the oldest goes.
    let held = store.inbox_ids("bob").unwrap();
    assert_eq!(held.len(), 3);
    let inbox = Change::Inbox {
        account: "bob".into(),
        text: "new".into(),
        keep: 3,
        keep_bytes: 1000,
    };
    let new = store.commit(&[inbox]).unwrap()[0];
    assert_eq!(
        store.inbox_ids("bob").unwrap(),
        [held[1], held[2], (new, 3)]
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(
        store.expire(Expiry::all_before(now - 3600), 10).unwrap(),
        Expired::default()
    );
    let gone = store.expire(Expiry::all_before(now + 3600), 10).unwrap();
    assert_eq!(
        gone,
        Expired {
            seen: 1,
            sent: 1,
            tallies: 0
        }
    );
    drop(store);
    common::drop_database("upgrade");
}

fn migrate(name: &str, store: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("imipd-migrate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("imipd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n{store}",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imipd"))
        .args(["migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn migrate_makes_the_schema_once_and_refuses_a_newer_one() {
    let (ok, out) = migrate("sled", "");
    assert!(ok && out.contains("store up to date"), "{out}");
    // Nothing listens there: a clear failure, not a hang.
    let (ok, out) = migrate(
        "down",
        "[store]\nurl = \"postgres://imipd@127.0.0.1:1/imipd\"\n",
    );
    assert!(!ok && out.contains("127.0.0.1:1/imipd"), "{out}");
    let section = common::store_section("migrate");
    if section.is_empty() {
        return common::skip_postgres("migrate_makes_the_schema_once_and_refuses_a_newer_one");
    }
    let (ok, out) = migrate("pg", &section);
    assert!(ok && out.contains("schema created"), "{out}");
    let (ok, out) = migrate("pg", &section);
    assert!(ok && out.contains("schema up to date"), "{out}");
    // A newer imipd wrote this database: refused, and left as it is.
    let url = section.split('"').nth(1).unwrap();
    let status = std::process::Command::new("psql")
        .args([
            "-q",
            url,
            "-c",
            "UPDATE imipd.meta SET value = 'imipd-99' WHERE key = 'format'",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, out) = migrate("pg", &section);
    assert!(
        !ok && out.contains("imipd-99") && out.contains("newer"),
        "{out}"
    );
    let url = imipd::store::Database::parse(url).unwrap();
    assert!(matches!(
        PgStore::open(&url, 1),
        Err(StoreError::Format { .. })
    ));
    common::drop_database("migrate");
}

/// `sslmode=require`: TLS, the server's certificate checked against `store.ca_file` (the test
/// cluster's own certificate) or the public roots, which do not know it.
#[test]
fn the_database_connection_is_encrypted_when_the_url_asks() {
    let Some(ca) = std::env::var_os("TEST_POSTGRES_CA").filter(|_| common::on_postgres()) else {
        eprintln!("skipped: TEST_POSTGRES and TEST_POSTGRES_CA are not set");
        return;
    };
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let section = common::store_section("tls");
    let required = format!("{}?sslmode=require", section.split('"').nth(1).unwrap());
    let public = imipd::store::Database::parse(&required).unwrap();
    match PgStore::migrate(&public) {
        Err(StoreError::Unavailable(e)) => assert!(e.contains("certificate"), "{e}"),
        other => panic!("an unknown certificate was trusted: {other:?}"),
    }
    let roots: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&ca)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let trusted = imipd::store::Database::parse(&required)
        .unwrap()
        .with_roots(roots);
    PgStore::migrate(&trusted).unwrap();
    let store = PgStore::open(&trusted, 2).unwrap();
    store
        .commit(&[put("t", "over TLS", Expect::Absent)])
        .unwrap();
    let admin = std::env::var("TEST_POSTGRES").unwrap();
    let out = std::process::Command::new("psql")
        .args(["-At", &admin, "-c"])
        .arg(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND application_name = 'imipd'",
        )
        .output()
        .unwrap();
    let encrypted: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(encrypted >= 1, "no encrypted connection of imipd");
    drop(store);
    common::drop_database("tls");
}

/// A transaction a dead host left open ends within a minute: its locks would hold up every
/// other host's deliveries to that account until TCP noticed, which takes hours. imipd's
/// sessions are set so; a session set the same way with a second instead shows the server end
/// a transaction left open.
#[tokio::test]
async fn sessions_end_transactions_left_open() {
    let section = common::store_section("session");
    let Some(url) = section.split('"').nth(1) else {
        return common::skip_postgres("sessions_end_transactions_left_open");
    };
    let url = imipd::store::Database::parse(url).unwrap();
    let (client, connection) = url.session().connect(tokio_postgres::NoTls).await.unwrap();
    let running = tokio::spawn(connection);
    for (setting, want) in [
        ("idle_in_transaction_session_timeout", "1min"),
        ("application_name", "imipd"),
    ] {
        let row = client
            .query_one(&format!("SHOW {setting}"), &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), want, "{setting}");
    }
    drop(client);
    let _ = running.await;
    let short = url.session_ending_idle_after(std::time::Duration::from_secs(1));
    let (client, connection) = short.connect(tokio_postgres::NoTls).await.unwrap();
    let running = tokio::spawn(connection);
    client.batch_execute("BEGIN; SELECT 1").await.unwrap();
    // Left open: the server ends the session, and the connection with it.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(30), running).await;
    assert!(
        ended.is_ok(),
        "the transaction left open still holds its session"
    );
    assert!(client.is_closed());
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    common::drop_database("session");
}

/// What an account holds is counted with every write and removal, in the same commit: what
/// its quotas are checked against, and what RFC 4331's properties show.
#[test]
fn usage_is_counted_with_every_write() {
    on_each("usage", |store| {
        assert_eq!(store.usage("bob").unwrap(), Usage::default());
        store
            .commit(&[
                put("a", "12345", Expect::Absent),
                put("b", "123", Expect::Absent),
            ])
            .unwrap();
        assert_eq!(
            store.usage("bob").unwrap(),
            Usage {
                objects: 2,
                bytes: 8
            }
        );
        store.commit(&[put("a", "1", Expect::Any)]).unwrap();
        assert_eq!(
            store.usage("bob").unwrap(),
            Usage {
                objects: 2,
                bytes: 4
            }
        );
        store
            .commit(&[Change::Delete {
                account: "bob".into(),
                uid: "b".into(),
                expect: Expect::Any,
            }])
            .unwrap();
        assert_eq!(
            store.usage("bob").unwrap(),
            Usage {
                objects: 1,
                bytes: 1
            }
        );
        // A commit that fails counts nothing.
        assert!(
            store
                .commit(&[
                    put("c", "xyz", Expect::Absent),
                    put("a", "2", Expect::Absent)
                ])
                .is_err()
        );
        assert_eq!(
            store.usage("bob").unwrap(),
            Usage {
                objects: 1,
                bytes: 1
            }
        );
        assert_eq!(store.usage("alice").unwrap(), Usage::default());
    });
}

/// Two deliveries that counted from the same tally at once: the second commit is a conflict
/// (its decision runs again and counts from the first's), not a count written over the first's.
/// Without it a sender past `limits.max_new_per_sender`, or two echoes to one address, got in
/// by sending at once.
#[test]
fn a_tally_is_written_over_what_was_counted_only() {
    on_each("tally-race", |store| {
        let (a, b) = (
            Count {
                since: 100,
                count: 1,
            },
            Count {
                since: 100,
                count: 2,
            },
        );
        let tally = |count, was| Change::Tally {
            account: "bob".into(),
            tally: Tally::NewFrom,
            address: "x@evil.test".into(),
            count,
            was,
        };
        let read = || store.tally("bob", Tally::NewFrom, "x@evil.test").unwrap();
        // Both read no tally; the first writes 1, the second's 1 meets it.
        store.commit(&[tally(a, Was::Read(None))]).unwrap();
        let late = [put("late", "x", Expect::Absent), tally(a, Was::Read(None))];
        assert!(matches!(store.commit(&late), Err(StoreError::Conflict)));
        assert!(
            store.get("bob", "late").unwrap().is_none(),
            "nothing of it kept"
        );
        // Counted again from what is there, it goes in.
        store.commit(&[tally(b, Was::Read(Some(a)))]).unwrap();
        assert_eq!(read(), Some(b));
        assert!(matches!(
            store.commit(&[tally(b, Was::Read(Some(a)))]),
            Err(StoreError::Conflict)
        ));
        // A correspondent made known expects nothing.
        store.commit(&[tally(a, Was::Anything)]).unwrap();
        assert_eq!(read(), Some(a));
    });
}

/// A commit that grows an account past its quota, because another grew it since the decision
/// read what it held, is a conflict; one that stays within, or grows what is not asked, goes in.
#[test]
fn a_quota_is_checked_again_at_the_commit_that_grows_an_account() {
    on_each("quota-race", |store| {
        let within = |objects, bytes| Change::Within {
            account: "bob".into(),
            objects,
            bytes,
        };
        // Two objects of 3 bytes each: within 2 objects and 6 bytes.
        store
            .commit(&[put("a", "one", Expect::Absent), within(Some(2), None)])
            .unwrap();
        store
            .commit(&[put("b", "two", Expect::Absent), within(Some(2), Some(6))])
            .unwrap();
        // Both admitted while the account held two of three: the third object is one too many.
        let third = [put("c", "333", Expect::Absent), within(Some(2), None)];
        assert!(matches!(store.commit(&third), Err(StoreError::Conflict)));
        assert!(store.get("bob", "c").unwrap().is_none());
        assert_eq!(
            store.usage("bob").unwrap(),
            Usage {
                objects: 2,
                bytes: 6
            }
        );
        // The check is judged after the commit's writes, wherever it stands among them.
        let grown = [within(None, Some(6)), put("a", "one more", Expect::Any)];
        assert!(matches!(store.commit(&grown), Err(StoreError::Conflict)));
        assert_eq!(store.get("bob", "a").unwrap().unwrap().text, "one");
        let freed = [
            within(None, Some(6)),
            put("a", "1", Expect::Any),
            put("b", "22222", Expect::Any),
        ];
        store.commit(&freed).unwrap();
        // An account no store has counted yet is within anything.
        store
            .commit(&[Change::Within {
                account: "nobody".into(),
                objects: Some(0),
                bytes: Some(0),
            }])
            .unwrap();
    });
}

/// Answers kept for an organizer, counted against `limits.max_uninvited` by two decisions at
/// once: the second commit finds another count than its decision did, and is a conflict.
#[test]
fn kept_proposals_are_counted_again_at_the_commit() {
    on_each("proposals-race", |store| {
        let kept = |count| Change::ProposalsKept {
            account: "bob".into(),
            uid: "meet".into(),
            count,
        };
        let proposal = |text: &str| Change::Proposal {
            account: "bob".into(),
            uid: "meet".into(),
            text: text.into(),
        };
        store.commit(&[kept(0), proposal("first")]).unwrap();
        // Decided when there was none: one is there now.
        let late = [proposal("second"), kept(0)];
        assert!(matches!(store.commit(&late), Err(StoreError::Conflict)));
        assert_eq!(store.proposals("bob", "meet").unwrap().len(), 1);
        // Counted again, it goes in; the check reads what was there before the commit.
        store.commit(&[proposal("second"), kept(1)]).unwrap();
        assert_eq!(store.proposals("bob", "meet").unwrap().len(), 2);
        // Another object's answers are counted apart.
        store
            .commit(&[Change::ProposalsKept {
                account: "bob".into(),
                uid: "other".into(),
                count: 0,
            }])
            .unwrap();
    });
}

/// Tallies per account and outside address, markers, and proposals one by one; windowed
/// tallies are forgotten once old, the others stay.
#[test]
fn tallies_markers_and_proposals_round_trip() {
    on_each("tallies", |store| {
        let tally = |tally, address: &str, since, count| Change::Tally {
            account: "bob".into(),
            tally,
            address: address.into(),
            count: Count { since, count },
            was: Was::Anything,
        };
        store
            .commit(&[
                tally(Tally::Echo, "x@evil.test", 100, 1),
                tally(Tally::NewFrom, "x@evil.test", 100, 7),
                tally(Tally::Known, "olga@partner.example", 100, 1),
            ])
            .unwrap();
        let read = |t, a: &str| store.tally("bob", t, a).unwrap();
        assert_eq!(
            read(Tally::NewFrom, "x@evil.test"),
            Some(Count {
                since: 100,
                count: 7
            })
        );
        assert_eq!(read(Tally::Known, "x@evil.test"), None);
        assert_eq!(
            store.tally("carol", Tally::Echo, "x@evil.test").unwrap(),
            None
        );
        store
            .commit(&[tally(Tally::NewFrom, "x@evil.test", 200, 1)])
            .unwrap();
        assert_eq!(
            read(Tally::NewFrom, "x@evil.test"),
            Some(Count {
                since: 200,
                count: 1
            })
        );
        let gone = store.expire(Expiry::all_before(150), 10).unwrap();
        assert_eq!(gone.tallies, 1, "the echo tally of 100");
        assert_eq!(read(Tally::Echo, "x@evil.test"), None);
        assert!(
            read(Tally::Known, "olga@partner.example").is_some(),
            "not windowed"
        );
        assert!(
            read(Tally::NewFrom, "x@evil.test").is_some(),
            "its window began at 200"
        );

        assert!(!store.marked(Marker::CorrespondentsGathered).unwrap());
        store
            .commit(&[Change::Mark(Marker::CorrespondentsGathered)])
            .unwrap();
        store
            .commit(&[Change::Mark(Marker::CorrespondentsGathered)])
            .unwrap();
        assert!(store.marked(Marker::CorrespondentsGathered).unwrap());

        let proposal = |text: &str| Change::Proposal {
            account: "bob".into(),
            uid: "u".into(),
            text: text.into(),
        };
        let ids = store.commit(&[proposal("one"), proposal("two")]).unwrap();
        assert_eq!(
            store.proposals("bob", "u").unwrap(),
            [(ids[0], "one".to_string()), (ids[1], "two".to_string())]
        );
        store
            .commit(&[Change::DropProposal {
                account: "bob".into(),
                uid: "u".into(),
                id: ids[0],
            }])
            .unwrap();
        assert_eq!(
            store.proposals("bob", "u").unwrap(),
            [(ids[1], "two".to_string())]
        );
        assert!(store.proposals("bob", "v").unwrap().is_empty());
    });
}

/// Reads asked for together answer as the same reads one by one, and a commit that does not
/// hold the caller's thread is a commit, conflicts included: intake's path on PostgreSQL, one
/// round trip for the reads before a decision and one for its commit (issue 24).
#[test]
fn reads_made_ahead_answer_as_reads_one_by_one() {
    on_each("ahead", |store| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let count = Count {
            since: 100,
            count: 2,
        };
        let changes = vec![
            put("a", "one", Expect::Absent),
            Change::Put {
                account: "alice".into(),
                uid: "x".into(),
                text: "hers".into(),
                expect: Expect::Absent,
                tag: Tag::New,
            },
            Change::Tally {
                account: "bob".into(),
                tally: Tally::NewFrom,
                address: "mailto:olga@partner.example".into(),
                count,
                was: Was::Read(None),
            },
        ];
        let ids = runtime.block_on(store.commit_later(changes)).unwrap();
        assert_eq!(ids.len(), 3);
        let object = |uid: &str| Read::Object {
            account: "bob".into(),
            uid: uid.into(),
        };
        // Keys of several accounts: each read gets its own account's answer.
        let hers = |uid: &str| Read::Object {
            account: "alice".into(),
            uid: uid.into(),
        };
        let usage = |account: &str| Read::Usage {
            account: account.into(),
        };
        let tally = |address: &str| Read::Tally {
            account: "bob".into(),
            tally: Tally::NewFrom,
            address: address.into(),
        };
        let reads = vec![
            object("a"),
            object("none"),
            hers("a"),
            hers("x"),
            object("x"),
            usage("bob"),
            usage("nobody"),
            tally("mailto:olga@partner.example"),
            tally("mailto:eve@evil.test"),
        ];
        let ahead = runtime.block_on(store.read_ahead(reads)).unwrap();
        let stored = store.get("bob", "a").unwrap();
        assert_eq!(stored.as_ref().unwrap().revision, ids[0]);
        assert_eq!(ahead.object("bob", "a"), Some(stored));
        assert_eq!(ahead.object("bob", "none"), Some(None));
        assert_eq!(ahead.object("alice", "a"), Some(None));
        assert_eq!(ahead.object("bob", "x"), Some(None));
        let theirs = ahead.object("alice", "x").unwrap().unwrap();
        assert_eq!((theirs.text.as_str(), theirs.revision), ("hers", ids[1]));
        assert_eq!(ahead.usage("bob"), Some(store.usage("bob").unwrap()));
        assert_eq!(ahead.usage("bob").unwrap().objects, 1);
        assert_eq!(ahead.usage("nobody"), Some(Usage::default()));
        let olga = ahead.tally("bob", Tally::NewFrom, "mailto:olga@partner.example");
        assert_eq!(olga, Some(Some(count)));
        let eve = ahead.tally("bob", Tally::NewFrom, "mailto:eve@evil.test");
        assert_eq!(eve, Some(None));
        assert_eq!(ahead.missed(), 0);

        let again = runtime.block_on(store.commit_later(vec![put("a", "two", Expect::Absent)]));
        assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
        assert_eq!(store.get("bob", "a").unwrap().unwrap().text, "one");
    });
}
