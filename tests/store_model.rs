//! The store against a model, by generated cases: random sequences of commits (objects put
//! and removed under every kind of precondition, names, placements, calendars, their
//! properties, what is kept for an object, the change log clients sync from, listings) applied to each backend and to a few maps, and
//! every read compared after each commit. A commit whose precondition fails changes nothing.
//! sled always; PostgreSQL when `TEST_POSTGRES` names a cluster. Each case works in accounts
//! of its own, so one store serves every case.

mod common;

use imipd::store::{Change, Expect, Listed, PgStore, SledStore, Store, StoreError, Tag};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

const UIDS: usize = 3;
const CALENDARS: [&str; 2] = ["work", "home"];
const NAMES: [&str; 2] = ["first.ics", "second.ics"];
const KEYS: [&str; 2] = ["{DAV:}displayname", "{urn:x}order"];

/// A precondition, resolved against the store when the commit is made.
#[derive(Debug, Clone, Copy)]
enum Pre {
    Any,
    Absent,
    /// The object's revision before the commit.
    Current,
    /// A revision it never had.
    Stale,
}

#[derive(Debug, Clone)]
enum Op {
    Put {
        uid: usize,
        size: usize,
        pre: Pre,
    },
    Delete {
        uid: usize,
        pre: Pre,
    },
    Name {
        uid: usize,
        name: Option<usize>,
    },
    Place {
        uid: usize,
        calendar: Option<usize>,
    },
    Calendar {
        calendar: usize,
        exists: bool,
    },
    Property {
        calendar: usize,
        key: usize,
        value: Option<usize>,
    },
    Proposal {
        uid: usize,
    },
    Refreshed {
        uid: usize,
        attendee: usize,
    },
}

fn pre() -> impl Strategy<Value = Pre> {
    prop_oneof![
        Just(Pre::Any),
        Just(Pre::Absent),
        Just(Pre::Current),
        Just(Pre::Stale)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let uid = 0..UIDS;
    prop_oneof![
        3 => (uid.clone(), 0..4usize, pre()).prop_map(|(uid, size, pre)| Op::Put { uid, size, pre }),
        2 => (uid.clone(), pre()).prop_map(|(uid, pre)| Op::Delete { uid, pre }),
        1 => (uid.clone(), proptest::option::of(0..NAMES.len()))
            .prop_map(|(uid, name)| Op::Name { uid, name }),
        1 => (uid.clone(), proptest::option::of(0..CALENDARS.len()))
            .prop_map(|(uid, calendar)| Op::Place { uid, calendar }),
        1 => (0..CALENDARS.len(), any::<bool>())
            .prop_map(|(calendar, exists)| Op::Calendar { calendar, exists }),
        1 => (0..CALENDARS.len() + 1, 0..KEYS.len(), proptest::option::of(0..3usize))
            .prop_map(|(calendar, key, value)| Op::Property { calendar, key, value }),
        1 => uid.clone().prop_map(|uid| Op::Proposal { uid }),
        1 => (uid, 0..2usize).prop_map(|(uid, attendee)| Op::Refreshed { uid, attendee }),
    ]
}

/// Commits of one to three changes.
fn history() -> impl Strategy<Value = Vec<Vec<Op>>> {
    proptest::collection::vec(proptest::collection::vec(op(), 1..4), 1..12)
}

fn uid(n: usize) -> String {
    format!("uid-{n}")
}

fn text(size: usize) -> String {
    format!("BEGIN:VCALENDAR{}", "x".repeat(size * 37))
}

/// The calendar a property is on: the default one or a further one.
fn property_calendar(n: usize) -> &'static str {
    match n {
        0 => "calendar",
        n => CALENDARS[n - 1],
    }
}

/// What the store should hold for one account.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    objects: BTreeMap<String, String>,
    names: BTreeMap<String, String>,
    placements: BTreeMap<String, String>,
    calendars: BTreeSet<String>,
    properties: BTreeMap<(String, String), String>,
    proposals: BTreeMap<String, usize>,
    refreshed: BTreeSet<(String, String)>,
    /// The change log a calendar client syncs from: each object's latest change, in order,
    /// and whether it removed the object.
    log: Vec<(String, bool)>,
}

impl Model {
    fn logged(&mut self, uid: String, removed: bool) {
        self.log.retain(|(u, _)| *u != uid);
        self.log.push((uid, removed));
    }

    /// Applies a commit's changes; false when a precondition fails (nothing changes then).
    /// `written` holds the objects an earlier change of the commit wrote or removed: their
    /// revision before the commit is no longer theirs.
    fn apply(&mut self, ops: &[Op]) -> bool {
        let mut next = self.clone();
        let mut written = BTreeSet::new();
        for op in ops {
            if !next.apply_one(op, &mut written, self) {
                return false;
            }
        }
        *self = next;
        true
    }

    fn holds(&self, pre: Pre, uid: &str, written: &BTreeSet<String>, before: &Model) -> bool {
        let exists = self.objects.contains_key(uid);
        match pre {
            Pre::Any => true,
            Pre::Absent => !exists,
            Pre::Current => exists && before.objects.contains_key(uid) && !written.contains(uid),
            Pre::Stale => false,
        }
    }

    fn apply_one(&mut self, op: &Op, written: &mut BTreeSet<String>, before: &Model) -> bool {
        match op {
            Op::Put { uid: n, size, pre } => {
                if !self.holds(*pre, &uid(*n), written, before) {
                    return false;
                }
                self.objects.insert(uid(*n), text(*size));
                self.logged(uid(*n), false);
                written.insert(uid(*n));
            }
            Op::Delete { uid: n, pre } => {
                if !self.holds(*pre, &uid(*n), written, before) {
                    return false;
                }
                // What was kept for it goes, whether or not it was there.
                self.objects.remove(&uid(*n));
                self.proposals.remove(&uid(*n));
                self.refreshed.retain(|(u, _)| *u != uid(*n));
                self.logged(uid(*n), true);
                written.insert(uid(*n));
            }
            Op::Name { uid: n, name } => {
                self.names.remove(&uid(*n));
                if let Some(name) = name {
                    self.names.retain(|_, given| given != NAMES[*name]);
                    self.names.insert(uid(*n), NAMES[*name].into());
                }
            }
            Op::Place { uid: n, calendar } => match calendar {
                Some(c) => {
                    self.placements.insert(uid(*n), CALENDARS[*c].into());
                }
                None => {
                    self.placements.remove(&uid(*n));
                }
            },
            Op::Calendar { calendar, exists } => match exists {
                true => {
                    self.calendars.insert(CALENDARS[*calendar].into());
                }
                false => {
                    let name = CALENDARS[*calendar];
                    self.calendars.remove(name);
                    // Its properties go with it.
                    self.properties.retain(|(of, _), _| of != name);
                }
            },
            Op::Property {
                calendar,
                key,
                value,
            } => {
                let at = (property_calendar(*calendar).into(), KEYS[*key].into());
                match value {
                    Some(v) => self.properties.insert(at, format!("value {v}")),
                    None => self.properties.remove(&at),
                };
            }
            Op::Proposal { uid: n } => *self.proposals.entry(uid(*n)).or_default() += 1,
            Op::Refreshed { uid: n, attendee } => {
                self.refreshed
                    .insert((uid(*n), format!("mailto:a{attendee}@x.org")));
            }
        }
        true
    }
}

/// The change an op stands for in `account`, its precondition resolved against the store.
fn change(store: &dyn Store, account: &str, op: &Op) -> Change {
    let expect = |n: usize, pre: Pre| match pre {
        Pre::Any => Expect::Any,
        Pre::Absent => Expect::Absent,
        Pre::Current => match store.get(account, &uid(n)).unwrap() {
            Some(found) => Expect::Revision(found.revision),
            None => Expect::Revision(u64::MAX),
        },
        Pre::Stale => Expect::Revision(u64::MAX),
    };
    let account = account.to_string();
    match op {
        Op::Put { uid: n, size, pre } => Change::Put {
            account,
            uid: uid(*n),
            text: text(*size),
            expect: expect(*n, *pre),
            tag: Tag::New,
        },
        Op::Delete { uid: n, pre } => Change::Delete {
            account,
            uid: uid(*n),
            expect: expect(*n, *pre),
        },
        Op::Name { uid: n, name } => Change::Name {
            account,
            uid: uid(*n),
            name: name.map(|name| NAMES[name].to_string()),
        },
        Op::Place { uid: n, calendar } => Change::Place {
            account,
            uid: uid(*n),
            calendar: calendar.map(|c| CALENDARS[c].to_string()),
        },
        Op::Calendar { calendar, exists } => Change::Calendar {
            account,
            name: CALENDARS[*calendar].into(),
            exists: *exists,
        },
        Op::Property {
            calendar,
            key,
            value,
        } => Change::Property {
            account,
            calendar: property_calendar(*calendar).into(),
            name: KEYS[*key].into(),
            value: value.map(|v| format!("value {v}")),
        },
        Op::Proposal { uid: n } => Change::Proposal {
            account,
            uid: uid(*n),
            text: "BEGIN:VCALENDAR\r\nMETHOD:COUNTER\r\nEND:VCALENDAR\r\n".into(),
        },
        Op::Refreshed { uid: n, attendee } => Change::Refreshed {
            account,
            uid: uid(*n),
            attendee: format!("mailto:a{attendee}@x.org"),
            at: 1_800_000_000,
        },
    }
}

/// What the store holds for the account, read as the model keeps it.
fn read(store: &dyn Store, account: &str) -> Model {
    let objects: BTreeMap<String, String> = store
        .list(account)
        .unwrap()
        .into_iter()
        .map(|(uid, object)| (uid, object.text))
        .collect();
    let mut properties = BTreeMap::new();
    for calendar in (0..=CALENDARS.len()).map(property_calendar) {
        for (key, value) in store.properties(account, calendar).unwrap() {
            properties.insert((calendar.to_string(), key), value);
        }
    }
    let mut proposals = BTreeMap::new();
    let mut refreshed = BTreeSet::new();
    for n in 0..UIDS {
        let kept = store.proposals(account, &uid(n)).unwrap().len();
        if kept > 0 {
            proposals.insert(uid(n), kept);
        }
        for attendee in 0..2 {
            let address = format!("mailto:a{attendee}@x.org");
            if store
                .refreshed(account, &uid(n), &address)
                .unwrap()
                .is_some()
            {
                refreshed.insert((uid(n), address));
            }
        }
    }
    Model {
        objects,
        names: store.names(account).unwrap().into_iter().collect(),
        placements: store.placements(account).unwrap().into_iter().collect(),
        calendars: store.calendars(account).unwrap().into_iter().collect(),
        properties,
        proposals,
        refreshed,
        log: store
            .changes_since(account, 0)
            .unwrap()
            .changed
            .into_iter()
            .map(|changed| (changed.uid, changed.removed))
            .collect(),
    }
}

/// One case: the history committed in a fresh account, the store compared with the model
/// after each commit (and the names both ways, and what the account holds).
fn run_case(store: &dyn Store, account: &str, history: &[Vec<Op>]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    for ops in history {
        let changes: Vec<Change> = ops.iter().map(|op| change(store, account, op)).collect();
        let expected = model.apply(ops);
        match store.commit(&changes) {
            Ok(_) => prop_assert!(expected, "committed, the model refused: {:?}", ops),
            Err(StoreError::Conflict) => prop_assert!(!expected, "refused: {:?}", ops),
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        }
        prop_assert_eq!(&read(store, account), &model, "after {:?}", ops);
        for (uid, name) in &model.names {
            prop_assert_eq!(store.named(account, name).unwrap(), Some(uid.clone()));
            prop_assert_eq!(store.name_of(account, uid).unwrap(), Some(name.clone()));
        }
        // A listing says of each object what the whole object says.
        let listing: Vec<(String, Listed)> = store
            .list(account)
            .unwrap()
            .into_iter()
            .map(|(uid, o)| {
                let listed = Listed {
                    revision: o.revision,
                    schedule_tag: o.schedule_tag,
                    length: o.text.len(),
                };
                (uid, listed)
            })
            .collect();
        prop_assert_eq!(store.listing(account).unwrap(), listing);
        let usage = store.usage(account).unwrap();
        prop_assert_eq!(usage.objects, model.objects.len() as u64);
        let bytes: usize = model.objects.values().map(String::len).sum();
        prop_assert_eq!(usage.bytes, bytes as u64);
    }
    Ok(())
}

fn run_on(store: &dyn Store, backend: &str, cases: u32) {
    let case = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&history(), |history| {
        let account = format!("{backend}-{}@x.org", case.fetch_add(1, Ordering::Relaxed));
        run_case(store, &account, &history)
    });
    if let Err(failure) = outcome {
        panic!("{backend}: {failure}");
    }
}

#[test]
fn sled_holds_what_the_model_holds() {
    let dir = std::env::temp_dir().join(format!("imipd-store-model-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SledStore::open(&dir).unwrap();
    run_on(&store, "sled", 256);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn postgres_holds_what_the_model_holds() {
    let section = common::store_section("store-model");
    let Some(url) = section.split('"').nth(1) else {
        return common::skip_postgres("postgres_holds_what_the_model_holds");
    };
    let url = imipd::store::Database::parse(url).unwrap();
    PgStore::migrate(&url).unwrap();
    let store = PgStore::open(&url, 4).unwrap();
    run_on(&store, "postgres", 64);
    drop(store);
    common::drop_database("store-model");
}
