//! A commit as one pipelined batch: BEGIN, the accounts' locks, one statement per change,
//! COMMIT, sent together and answered together, so that a delivery costs one round trip to the
//! database (and one wake-up of the waiting thread) instead of one per statement.
//!
//! Each statement checks its own precondition and raises `serialization_failure` (through
//! `imipd.expect`) when it does not hold: the transaction is then aborted, the statements after
//! it fail, the COMMIT rolls back, and the first error is the conflict. Each statement that makes
//! something takes its id from the sequence itself, after the account's lock (taken by an
//! earlier statement of the batch), so an account's change log grows in commit order.

use super::{encoded, failed};
use crate::store::{CalendarWas, Change, Count, Expect, StoreError, Tag, Was};
use tokio_postgres::types::ToSql;

type Param = Box<dyn ToSql + Sync + Send>;

/// One statement of a batch: SQL and parameters; its first column, when it has one, is the id.
struct Statement {
    sql: &'static str,
    params: Vec<Param>,
}

fn statement(sql: &'static str, params: Vec<Param>) -> Statement {
    Statement { sql, params }
}

const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

const PUT_REVISION: &str = "WITH n AS (SELECT nextval('imipd.ids') AS id), \
     w AS (UPDATE imipd.objects SET revision = (SELECT id FROM n), \
     schedule_tag = CASE WHEN $4 THEN schedule_tag ELSE (SELECT id FROM n) END, body = $3 \
     WHERE account = $1 AND uid = $2 AND revision = $5 RETURNING 1), \
     c AS (INSERT INTO imipd.changes SELECT $1, $2, n.id, false FROM n, w \
     ON CONFLICT (account, uid) DO UPDATE SET id = EXCLUDED.id, removed = false) \
     SELECT n.id, imipd.expect((SELECT count(*) FROM w) = 1) FROM n";
const PUT_ABSENT: &str = "WITH n AS (SELECT nextval('imipd.ids') AS id), \
     w AS (INSERT INTO imipd.objects SELECT $1, $2, id, id, $3 FROM n \
     ON CONFLICT DO NOTHING RETURNING 1), \
     c AS (INSERT INTO imipd.changes SELECT $1, $2, n.id, false FROM n, w \
     ON CONFLICT (account, uid) DO UPDATE SET id = EXCLUDED.id, removed = false) \
     SELECT n.id, imipd.expect((SELECT count(*) FROM w) = 1) FROM n";
const PUT_ANY: &str = "WITH n AS (SELECT nextval('imipd.ids') AS id), \
     w AS (INSERT INTO imipd.objects SELECT $1, $2, id, id, $3 FROM n \
     ON CONFLICT (account, uid) DO UPDATE SET revision = EXCLUDED.revision, \
     schedule_tag = CASE WHEN $4 THEN imipd.objects.schedule_tag ELSE EXCLUDED.revision END, \
     body = EXCLUDED.body RETURNING 1), \
     c AS (INSERT INTO imipd.changes SELECT $1, $2, n.id, false FROM n, w \
     ON CONFLICT (account, uid) DO UPDATE SET id = EXCLUDED.id, removed = false) \
     SELECT n.id FROM n";
// What was kept for an object goes with it (a failed precondition undoes it with the rest).
const DELETE_REVISION: &str = "WITH n AS (SELECT nextval('imipd.ids') AS id), \
     w AS (DELETE FROM imipd.objects WHERE account = $1 AND uid = $2 AND revision = $3 \
     RETURNING 1), \
     p AS (DELETE FROM imipd.counters WHERE account = $1 AND uid = $2), \
     r AS (DELETE FROM imipd.refreshed WHERE account = $1 AND uid = $2), \
     c AS (INSERT INTO imipd.changes SELECT $1, $2, n.id, true FROM n, w \
     ON CONFLICT (account, uid) DO UPDATE SET id = EXCLUDED.id, removed = true) \
     SELECT n.id, imipd.expect((SELECT count(*) FROM w) = 1) FROM n";
// A removal is logged even when nothing was there, as with sled.
const DELETE_ANY: &str = "WITH n AS (SELECT nextval('imipd.ids') AS id), \
     w AS (DELETE FROM imipd.objects WHERE account = $1 AND uid = $2), \
     p AS (DELETE FROM imipd.counters WHERE account = $1 AND uid = $2), \
     r AS (DELETE FROM imipd.refreshed WHERE account = $1 AND uid = $2), \
     c AS (INSERT INTO imipd.changes SELECT $1, $2, n.id, true FROM n \
     ON CONFLICT (account, uid) DO UPDATE SET id = EXCLUDED.id, removed = true) \
     SELECT n.id FROM n";
// Nothing to remove, but what was kept for the object goes all the same, as with sled.
const DELETE_ABSENT: &str = "WITH n AS (SELECT nextval('imipd.ids') AS id), \
     p AS (DELETE FROM imipd.counters WHERE account = $1 AND uid = $2), \
     r AS (DELETE FROM imipd.refreshed WHERE account = $1 AND uid = $2), \
     c AS (INSERT INTO imipd.changes SELECT $1, $2, n.id, true FROM n \
     ON CONFLICT (account, uid) DO UPDATE SET id = EXCLUDED.id, removed = true) \
     SELECT n.id, imipd.expect(NOT EXISTS (SELECT 1 FROM imipd.objects \
     WHERE account = $1 AND uid = $2)) FROM n";
// The item, after the oldest items that must make way for it (`imipd.to_inbox`).
const INBOX: &str = "SELECT imipd.to_inbox($1, $2, $3, $4)";
const ENQUEUE: &str = "INSERT INTO imipd.outbox (id, message) \
     SELECT nextval('imipd.ids'), $1 RETURNING id";
// Released for the next attempt, by whichever host is free then.
const REQUEUE: &str =
    "UPDATE imipd.outbox SET message = $2, holder = NULL, lease_until = 0 WHERE id = $1";
// An earlier pending notice keeps its time and gains the repliers, in their order.
const NOTIFY: &str = "INSERT INTO imipd.notices VALUES ($1, $2, $3, $4) ON CONFLICT (account, uid) \
     DO UPDATE SET repliers = ARRAY(SELECT r FROM unnest(imipd.notices.repliers || \
     EXCLUDED.repliers) WITH ORDINALITY AS t(r, n) GROUP BY r ORDER BY min(n))";
// Another host sent it first: this decision is stale.
const NOTIFIED: &str = "WITH d AS (DELETE FROM imipd.notices WHERE account = $1 AND uid = $2 \
     RETURNING 1) SELECT 0::bigint, imipd.expect(count(*) > 0) FROM d";
// Recorded by another host meanwhile: a unique violation, so a conflict, and the decision runs
// again and finds the message delivered.
const SEEN: &str =
    "INSERT INTO imipd.seen (key, id, at) SELECT $1, nextval('imipd.ids'), $2 RETURNING id";
const PROPOSAL: &str = "INSERT INTO imipd.counters SELECT $1, $2, nextval('imipd.ids'), $3 \
     RETURNING id";

const TALLY_ANY: &str = "INSERT INTO imipd.tallies VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (account, kind, address) DO UPDATE SET since = EXCLUDED.since, \
     count = EXCLUDED.count";
// A tally counted from nothing: another delivery's first count meanwhile is a conflict.
const TALLY_NEW: &str = "WITH w AS (INSERT INTO imipd.tallies VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (account, kind, address) DO NOTHING RETURNING 1) \
     SELECT 0::bigint, imipd.expect((SELECT count(*) FROM w) = 1)";
// A tally counted from what the decision read ($6, $7): written over that state only.
const TALLY_OVER: &str = "WITH w AS (UPDATE imipd.tallies SET since = $4, count = $5 \
     WHERE account = $1 AND kind = $2 AND address = $3 AND since = $6 AND count = $7 \
     RETURNING 1) SELECT 0::bigint, imipd.expect((SELECT count(*) FROM w) = 1)";
// Run after the commit's writes (`batch`), which the usage trigger has counted; under the
// account's lock, so another commit's growth is counted too.
const WITHIN: &str = "SELECT 0::bigint, imipd.expect(coalesce((SELECT \
     ($2::bigint IS NULL OR objects <= $2) AND ($3::bigint IS NULL OR bytes <= $3) \
     FROM imipd.usage WHERE account = $1), true))";

// Run before the commit's writes (`batch`), under the account's lock.
const PROPOSALS_KEPT: &str = "SELECT 0::bigint, imipd.expect((SELECT count(*) FROM imipd.counters \
     WHERE account = $1 AND uid = $2) = $3)";

// The checks of a further calendar, run before the commit's writes (`batch`), under the
// account's lock.
const CALENDAR_ABSENT_BELOW: &str = "SELECT 0::bigint, imipd.expect(NOT EXISTS (SELECT 1 FROM \
     imipd.calendars WHERE account = $1 AND name = $2) AND (SELECT count(*) FROM imipd.calendars \
     WHERE account = $1) < $3)";
const CALENDAR_THERE: &str = "SELECT 0::bigint, imipd.expect(EXISTS (SELECT 1 FROM \
     imipd.calendars WHERE account = $1 AND name = $2))";
const CALENDAR_EMPTY: &str = "SELECT 0::bigint, imipd.expect(EXISTS (SELECT 1 FROM \
     imipd.calendars WHERE account = $1 AND name = $2) AND NOT EXISTS (SELECT 1 FROM \
     imipd.placements p JOIN imipd.objects o ON o.account = p.account AND o.uid = p.uid \
     WHERE p.account = $1 AND p.calendar = $2))";

fn counted(count: Count) -> Param {
    Box::new(count.count.min(i32::MAX as u32) as i32)
}

fn bytes(text: &str) -> Param {
    Box::new(text.as_bytes().to_vec())
}

fn owned(text: &str) -> Param {
    Box::new(text.to_string())
}

/// An object's write, by its precondition.
fn put(account: &str, uid: &str, text: &str, expect: Expect, tag: Tag) -> Statement {
    let mut params = vec![owned(account), bytes(uid), bytes(text)];
    let kept: Param = Box::new(tag == Tag::Kept);
    match expect {
        Expect::Revision(revision) => {
            params.extend([kept, Box::new(revision as i64) as Param]);
            statement(PUT_REVISION, params)
        }
        Expect::Absent => statement(PUT_ABSENT, params),
        Expect::Any => {
            params.push(kept);
            statement(PUT_ANY, params)
        }
    }
}

/// An object's removal, by its precondition.
fn delete(account: &str, uid: &str, expect: Expect) -> Statement {
    let mut params = vec![owned(account), bytes(uid)];
    match expect {
        Expect::Revision(revision) => {
            params.push(Box::new(revision as i64));
            statement(DELETE_REVISION, params)
        }
        Expect::Any => statement(DELETE_ANY, params),
        Expect::Absent => statement(DELETE_ABSENT, params),
    }
}

/// The statement of one change to an object or to an account's calendars.
fn of_object(change: &Change) -> Option<Statement> {
    Some(match change {
        Change::Put {
            account,
            uid,
            text,
            expect,
            tag,
        } => put(account, uid, text, *expect, *tag),
        Change::Delete {
            account,
            uid,
            expect,
        } => delete(account, uid, *expect),
        Change::Inbox {
            account,
            text,
            keep,
            keep_bytes,
        } => statement(
            INBOX,
            vec![
                owned(account),
                bytes(text),
                Box::new(*keep as i64),
                Box::new(*keep_bytes as i64),
            ],
        ),
        Change::InboxRemove { account, id } => statement(
            "DELETE FROM imipd.inbox WHERE account = $1 AND id = $2",
            vec![owned(account), Box::new(*id as i64)],
        ),
        Change::Calendar {
            account,
            name,
            exists,
        } => statement(
            match exists {
                true => "INSERT INTO imipd.calendars VALUES ($1, $2) ON CONFLICT DO NOTHING",
                // A removed calendar's properties go with it.
                false => {
                    "WITH p AS (DELETE FROM imipd.properties WHERE account = $1 AND calendar = $2) \
                     DELETE FROM imipd.calendars WHERE account = $1 AND name = $2"
                }
            },
            vec![owned(account), bytes(name)],
        ),
        Change::Place {
            account,
            uid,
            calendar: Some(calendar),
        } => statement(
            "INSERT INTO imipd.placements VALUES ($1, $2, $3) ON CONFLICT (account, uid) \
             DO UPDATE SET calendar = EXCLUDED.calendar",
            vec![owned(account), bytes(uid), bytes(calendar)],
        ),
        Change::Place {
            account,
            uid,
            calendar: None,
        } => statement(
            "DELETE FROM imipd.placements WHERE account = $1 AND uid = $2",
            vec![owned(account), bytes(uid)],
        ),
        // The object's old name, and the object the name stood for before, make way.
        Change::Name {
            account,
            uid,
            name: Some(name),
        } => statement(
            "SELECT imipd.name($1, $2, $3)",
            vec![owned(account), bytes(uid), bytes(name)],
        ),
        Change::Name {
            account,
            uid,
            name: None,
        } => statement(
            "DELETE FROM imipd.names WHERE account = $1 AND uid = $2",
            vec![owned(account), bytes(uid)],
        ),
        Change::Property {
            account,
            calendar,
            name,
            value: Some(value),
        } => statement(
            "INSERT INTO imipd.properties VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account, calendar, name) DO UPDATE SET value = EXCLUDED.value",
            vec![owned(account), bytes(calendar), bytes(name), bytes(value)],
        ),
        Change::Property {
            account,
            calendar,
            name,
            value: None,
        } => statement(
            "DELETE FROM imipd.properties WHERE account = $1 AND calendar = $2 AND name = $3",
            vec![owned(account), bytes(calendar), bytes(name)],
        ),
        _ => return None,
    })
}

/// The statement of one change to the queue or to the records kept beside the objects.
fn of_record(change: &Change) -> Statement {
    match change {
        Change::Enqueue(message) => statement(ENQUEUE, vec![Box::new(encoded(message))]),
        Change::Dequeue(id) => statement(
            "DELETE FROM imipd.outbox WHERE id = $1",
            vec![Box::new(*id as i64)],
        ),
        Change::Requeue(id, message) => statement(
            REQUEUE,
            vec![Box::new(*id as i64), Box::new(encoded(message))],
        ),
        Change::Sent(id, message, at) => statement(
            "INSERT INTO imipd.sent (id, message, at) VALUES ($1, $2, $3) ON CONFLICT (id) \
             DO UPDATE SET message = EXCLUDED.message, at = EXCLUDED.at",
            vec![
                Box::new(*id as i64),
                Box::new(encoded(message)),
                Box::new(*at),
            ],
        ),
        Change::ForgetSent(id) => statement(
            "DELETE FROM imipd.sent WHERE id = $1",
            vec![Box::new(*id as i64)],
        ),
        Change::Notify {
            account,
            uid,
            due,
            repliers,
        } => statement(
            NOTIFY,
            vec![
                owned(account),
                bytes(uid),
                Box::new(*due),
                Box::new(repliers.clone()),
            ],
        ),
        Change::Refreshed {
            account,
            uid,
            attendee,
            at,
        } => statement(
            "INSERT INTO imipd.refreshed VALUES ($1, $2, $3, $4) \
             ON CONFLICT (account, uid, attendee) DO UPDATE SET at = EXCLUDED.at",
            vec![owned(account), bytes(uid), bytes(attendee), Box::new(*at)],
        ),
        Change::Notified { account, uid } => statement(NOTIFIED, vec![owned(account), bytes(uid)]),
        Change::Seen(key, at) => statement(SEEN, vec![Box::new(key.clone()), Box::new(*at)]),
        Change::Proposal { account, uid, text } => {
            statement(PROPOSAL, vec![owned(account), bytes(uid), bytes(text)])
        }
        Change::DropProposal { account, uid, id } => statement(
            "DELETE FROM imipd.counters WHERE account = $1 AND uid = $2 AND id = $3",
            vec![owned(account), bytes(uid), Box::new(*id as i64)],
        ),
        Change::Tally {
            account,
            tally,
            address,
            count,
            was,
        } => {
            let mut params = vec![
                owned(account),
                Box::new(i16::from(tally.code())) as Param,
                bytes(address),
                Box::new(count.since),
                counted(*count),
            ];
            match was {
                Was::Anything => statement(TALLY_ANY, params),
                Was::Read(None) => statement(TALLY_NEW, params),
                Was::Read(Some(read)) => {
                    params.extend([Box::new(read.since) as Param, counted(*read)]);
                    statement(TALLY_OVER, params)
                }
            }
        }
        Change::ProposalsKept {
            account,
            uid,
            count,
        } => statement(
            PROPOSALS_KEPT,
            vec![
                owned(account),
                bytes(uid),
                Box::new((*count).min(i64::MAX as u64) as i64),
            ],
        ),
        Change::CalendarAsFound { account, name, was } => {
            let mut params = vec![owned(account), bytes(name)];
            let sql = match was {
                CalendarWas::AbsentBelow(most) => {
                    params.push(Box::new((*most).min(i64::MAX as u64) as i64));
                    CALENDAR_ABSENT_BELOW
                }
                CalendarWas::There => CALENDAR_THERE,
                CalendarWas::Empty => CALENDAR_EMPTY,
            };
            statement(sql, params)
        }
        Change::Within {
            account,
            objects,
            bytes,
        } => statement(
            WITHIN,
            vec![
                owned(account),
                Box::new(objects.map(|n| n.min(i64::MAX as u64) as i64)),
                Box::new(bytes.map(|n| n.min(i64::MAX as u64) as i64)),
            ],
        ),
        Change::Mark(marker) => statement(
            "INSERT INTO imipd.meta VALUES ($1, '\\x01') ON CONFLICT (key) DO NOTHING",
            vec![owned(marker.key())],
        ),
        other => of_object(other).expect("every change has a statement"),
    }
}

/// The batch for a commit: BEGIN, the locks of the accounts whose change logs it writes or whose
/// counts it checks (sorted, so that two commits never wait for each other in a circle), the
/// checks of what the decision found, the changes, the quota checks (after every write they
/// judge), COMMIT. Beside it, the statement of each change (none for a check, which makes
/// nothing).
fn batch(changes: &[Change]) -> (Vec<Statement>, Vec<Option<usize>>) {
    let mut locked: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Put { account, .. }
            | Change::Delete { account, .. }
            | Change::ProposalsKept { account, .. }
            | Change::CalendarAsFound { account, .. }
            | Change::Within { account, .. } => Some(account.as_str()),
            _ => None,
        })
        .collect();
    locked.sort_unstable();
    locked.dedup();
    let mut statements = vec![statement("BEGIN", Vec::new())];
    statements.extend(locked.iter().map(|a| statement(LOCK, vec![owned(a)])));
    let before = |c: &&Change| {
        matches!(
            c,
            Change::ProposalsKept { .. } | Change::CalendarAsFound { .. }
        )
    };
    let after = |c: &&Change| matches!(c, Change::Within { .. });
    statements.extend(changes.iter().filter(before).map(of_record));
    let mut slots = Vec::with_capacity(changes.len());
    for change in changes {
        slots.push((!before(&change) && !after(&change)).then(|| {
            statements.push(of_record(change));
            statements.len() - 1
        }));
    }
    statements.extend(changes.iter().filter(after).map(of_record));
    statements.push(statement("COMMIT", Vec::new()));
    (statements, slots)
}

/// Runs the commit; returns the id each change got (0 for what makes nothing new: a removal
/// from the queue, a calendar's property...).
pub(super) async fn commit(
    client: &deadpool_postgres::Object,
    changes: &[Change],
) -> Result<Vec<u64>, StoreError> {
    let (statements, slots) = batch(changes);
    let mut prepared = Vec::with_capacity(statements.len());
    for s in &statements {
        prepared.push(client.prepare_cached(s.sql).await.map_err(failed)?);
    }
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = statements
        .iter()
        .map(|s| {
            s.params
                .iter()
                .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                .collect()
        })
        .collect();
    // Every request goes out when its future is first polled, in this order.
    let answers = futures_util::future::join_all(
        prepared
            .iter()
            .zip(&params)
            .map(|(statement, params)| client.query(statement, params)),
    )
    .await;
    let mut made = Vec::with_capacity(answers.len());
    for answer in answers {
        let rows = answer.map_err(failed)?;
        made.push(
            rows.first()
                .and_then(|row| row.try_get::<_, i64>(0).ok())
                .unwrap_or(0),
        );
    }
    Ok(slots
        .into_iter()
        .map(|slot| super::id(slot.map_or(0, |at| made[at])))
        .collect())
}
