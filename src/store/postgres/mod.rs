//! The store several imipd hosts share: PostgreSQL.
//!
//! Every write is one transaction, sent as one pipelined batch (`writes`) and acknowledged only
//! after its COMMIT (the server's `synchronous_commit`, which must not be off). Preconditions are
//! part of the statements' WHERE, so they are checked on the newest row version; the change log
//! of an account is written under an advisory lock on the account, so that its ids grow in
//! commit order and a calendar client's sync token never skips a change committed late.
//!
//! The `Store` trait is synchronous (the engine decides inside a plain closure), the driver is
//! asynchronous: the pool and its connections live on a runtime of their own, and a call blocks
//! the calling thread, letting the daemon's runtime move its other tasks away meanwhile.

use super::{Ahead, Pending, Read};
use super::{
    Change, Changed, Changes, Claim, Contents, Coordination, Count, Database, Durable, Expired,
    Expiry, Filed, Listed, Marker, Notice, OutboundMessage, Store, StoreError, StoredObject, Tally,
    Usage,
};
mod ahead;
mod commit;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// The schema this build writes; a newer one is refused, an older one upgraded.
const FORMAT: i32 = 6;

/// Largest value a commit may carry: PostgreSQL takes a gigabyte in a column, but one commit is
/// one batch held in memory on both sides; sixteen times sled's leaves room for large objects
/// (`limits.max_object_size`) without letting one request take the server's memory.
pub const MAX_VALUE: usize = 16 * 1024 * 1024;

/// The steps from each older schema to the next, run before `SCHEMA` (which makes what is
/// missing): `UPGRADES[0]` takes format 1 to 2, and so on.
const UPGRADES: &[&str] = &[
    // Format 2 dates deliveries and sent messages, to forget them after a while; what a
    // format 1 database holds is dated to the upgrade.
    "ALTER TABLE imipd.seen ADD COLUMN IF NOT EXISTS at bigint NOT NULL \
         DEFAULT extract(epoch FROM now())::bigint;
     ALTER TABLE imipd.seen ALTER COLUMN at DROP DEFAULT;
     ALTER TABLE imipd.sent ADD COLUMN IF NOT EXISTS at bigint NOT NULL \
         DEFAULT extract(epoch FROM now())::bigint;
     ALTER TABLE imipd.sent ALTER COLUMN at DROP DEFAULT;",
    // Format 3 keeps what each account holds, for its quotas (a trigger counts from then on):
    // what a format 2 database holds is counted.
    "CREATE TABLE IF NOT EXISTS imipd.usage (
         account text PRIMARY KEY, objects bigint NOT NULL, bytes bigint NOT NULL);
     INSERT INTO imipd.usage SELECT account, count(*), coalesce(sum(octet_length(body)), 0)
         FROM imipd.objects GROUP BY account ON CONFLICT (account) DO NOTHING;",
    // Format 4 keeps where objects' instances lie, filed by queries.
    "CREATE TABLE IF NOT EXISTS imipd.footprints (
         account text, bucket bigint, uid bytea, footprint bytea NOT NULL,
         PRIMARY KEY (account, bucket, uid));
     CREATE INDEX IF NOT EXISTS footprints_by_uid ON imipd.footprints (account, uid);
     CREATE TABLE IF NOT EXISTS imipd.footprint_positions (
         account text PRIMARY KEY, position bigint NOT NULL);",
    // Format 5 files every object's listing with its footprints (`http::dav::footprint`): what
    // format 4 filed lacks it and is forgotten, to be filed again by the next query.
    "TRUNCATE imipd.footprints, imipd.footprint_positions;",
    // Format 6 counts each schedule inbox (a trigger counts from then on), so that keeping it
    // within its bounds reads only the items that go: what a format 5 database holds is counted.
    "CREATE TABLE IF NOT EXISTS imipd.inbox_held (
         account text PRIMARY KEY, items bigint NOT NULL, bytes bigint NOT NULL);
     INSERT INTO imipd.inbox_held SELECT account, count(*), sum(octet_length(body))
         FROM imipd.inbox GROUP BY account ON CONFLICT (account) DO NOTHING;",
];

/// The advisory lock held while the schema is made or upgraded, so that hosts starting
/// together do not race ("imipd" in ASCII).
const SCHEMA_LOCK: i64 = 0x0069_6d69_7064;

/// Every object, and the queue: read alone, or together in a snapshot.
const EVERY_OBJECT: &str = "SELECT account, uid, revision, schedule_tag, body FROM imipd.objects \
     ORDER BY account, uid";
const THE_QUEUE: &str = "SELECT id, message FROM imipd.outbox ORDER BY id";

/// Forgetting the oldest deliveries and sent messages, a batch at a time.
const EXPIRE_SEEN: &str = "DELETE FROM imipd.seen WHERE key IN \
     (SELECT key FROM imipd.seen WHERE at < $1 ORDER BY at LIMIT $2)";
const EXPIRE_SENT: &str = "DELETE FROM imipd.sent WHERE id IN \
     (SELECT id FROM imipd.sent WHERE at < $1 ORDER BY at LIMIT $2)";

/// Forgetting windowed tallies (`Tally::windowed`) whose window is long past.
const EXPIRE_TALLIES: &str = "DELETE FROM imipd.tallies WHERE (account, kind, address) IN \
     (SELECT account, kind, address FROM imipd.tallies WHERE kind = ANY($3) AND since < $1 \
     LIMIT $2)";

/// Footprints filed by a query: by bucket; another host filing the same meanwhile is replaced.
const FILE_FOOTPRINTS: &str = "INSERT INTO imipd.footprints \
     SELECT $1, * FROM unnest($2::bigint[], $3::bytea[], $4::bytea[]) \
     ON CONFLICT (account, bucket, uid) DO UPDATE SET footprint = EXCLUDED.footprint";
const FOOTPRINTS_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('imipd footprints ' || $1))";
const FOOTPRINT_POSITION: &str = "INSERT INTO imipd.footprint_positions VALUES ($1, $2) \
     ON CONFLICT (account) DO UPDATE SET position = EXCLUDED.position";

/// The record of a relay's acceptance.
const RELAYED: &str = "UPDATE imipd.outbox SET relayed = true WHERE id = $1";

/// Longest wait for the database on one call: a connection that hangs answers 451, not never.
const TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS imipd;
CREATE SEQUENCE IF NOT EXISTS imipd.ids;
CREATE TABLE IF NOT EXISTS imipd.meta (key text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS imipd.objects (
    account text, uid bytea, revision bigint NOT NULL, schedule_tag bigint NOT NULL,
    body bytea NOT NULL, PRIMARY KEY (account, uid));
CREATE TABLE IF NOT EXISTS imipd.footprints (
    account text, bucket bigint, uid bytea, footprint bytea NOT NULL,
    PRIMARY KEY (account, bucket, uid));
CREATE INDEX IF NOT EXISTS footprints_by_uid ON imipd.footprints (account, uid);
CREATE TABLE IF NOT EXISTS imipd.footprint_positions (
    account text PRIMARY KEY, position bigint NOT NULL);
CREATE TABLE IF NOT EXISTS imipd.changes (
    account text, uid bytea, id bigint NOT NULL, removed boolean NOT NULL,
    PRIMARY KEY (account, uid));
CREATE INDEX IF NOT EXISTS changes_by_id ON imipd.changes (account, id);
CREATE TABLE IF NOT EXISTS imipd.inbox (
    account text, id bigint, body bytea NOT NULL, PRIMARY KEY (account, id));
CREATE TABLE IF NOT EXISTS imipd.inbox_held (
    account text PRIMARY KEY, items bigint NOT NULL, bytes bigint NOT NULL);
CREATE TABLE IF NOT EXISTS imipd.properties (
    account text, calendar bytea, name bytea, value bytea NOT NULL,
    PRIMARY KEY (account, calendar, name));
CREATE TABLE IF NOT EXISTS imipd.calendars (account text, name bytea, PRIMARY KEY (account, name));
CREATE TABLE IF NOT EXISTS imipd.placements (
    account text, uid bytea, calendar bytea NOT NULL, PRIMARY KEY (account, uid));
CREATE TABLE IF NOT EXISTS imipd.names (
    account text, name bytea, uid bytea NOT NULL, PRIMARY KEY (account, name));
CREATE UNIQUE INDEX IF NOT EXISTS names_by_uid ON imipd.names (account, uid);
CREATE TABLE IF NOT EXISTS imipd.outbox (
    id bigint PRIMARY KEY, message bytea NOT NULL, holder text,
    lease_until bigint NOT NULL DEFAULT 0, relayed boolean NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS imipd.sent (id bigint PRIMARY KEY, message bytea NOT NULL, at bigint NOT NULL);
CREATE INDEX IF NOT EXISTS sent_by_time ON imipd.sent (at);
CREATE TABLE IF NOT EXISTS imipd.notices (
    account text, uid bytea, due bigint NOT NULL, repliers text[] NOT NULL,
    PRIMARY KEY (account, uid));
CREATE TABLE IF NOT EXISTS imipd.refreshed (
    account text, uid bytea, attendee bytea, at bigint NOT NULL,
    PRIMARY KEY (account, uid, attendee));
CREATE TABLE IF NOT EXISTS imipd.seen (key bytea PRIMARY KEY, id bigint NOT NULL, at bigint NOT NULL);
CREATE INDEX IF NOT EXISTS seen_by_time ON imipd.seen (at);
CREATE TABLE IF NOT EXISTS imipd.counters (
    account text, uid bytea, id bigint, body bytea NOT NULL, PRIMARY KEY (account, uid, id));
CREATE TABLE IF NOT EXISTS imipd.tallies (
    account text, kind smallint, address bytea, since bigint NOT NULL, count integer NOT NULL,
    PRIMARY KEY (account, kind, address));
CREATE TABLE IF NOT EXISTS imipd.usage (
    account text PRIMARY KEY, objects bigint NOT NULL, bytes bigint NOT NULL);
-- What each account holds, counted in the transaction that writes its objects.
CREATE OR REPLACE FUNCTION imipd.count_usage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO imipd.usage VALUES (OLD.account, -1, -octet_length(OLD.body))
        ON CONFLICT (account) DO UPDATE SET objects = imipd.usage.objects + EXCLUDED.objects,
            bytes = imipd.usage.bytes + EXCLUDED.bytes;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO imipd.usage VALUES (NEW.account, 1, octet_length(NEW.body))
        ON CONFLICT (account) DO UPDATE SET objects = imipd.usage.objects + EXCLUDED.objects,
            bytes = imipd.usage.bytes + EXCLUDED.bytes;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER count_usage AFTER INSERT OR UPDATE OR DELETE ON imipd.objects
    FOR EACH ROW EXECUTE FUNCTION imipd.count_usage();
-- What each schedule inbox holds, counted in the transaction that adds or removes its items.
CREATE OR REPLACE FUNCTION imipd.count_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE imipd.inbox_held SET items = items - 1, bytes = bytes - octet_length(OLD.body)
            WHERE account = OLD.account;
    ELSE
        INSERT INTO imipd.inbox_held VALUES (NEW.account, 1, octet_length(NEW.body))
        ON CONFLICT (account) DO UPDATE SET items = imipd.inbox_held.items + 1,
            bytes = imipd.inbox_held.bytes + EXCLUDED.bytes;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER count_inbox AFTER INSERT OR DELETE ON imipd.inbox
    FOR EACH ROW EXECUTE FUNCTION imipd.count_inbox();
-- An item into an account's schedule inbox (its id returned), after the oldest items that must
-- make way for it: at most `keep` items and `keep_bytes` bytes with it. Reads only the items
-- that go, and the count, which it locks, so that deliveries to one inbox take turns.
CREATE OR REPLACE FUNCTION imipd.to_inbox(a text, item bytea, keep bigint, keep_bytes bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    made bigint := nextval('imipd.ids');
    held record;
    items bigint := 0;
    bytes bigint := 0;
    oldest record;
BEGIN
    SELECT h.items, h.bytes INTO held FROM imipd.inbox_held h WHERE h.account = a FOR UPDATE;
    IF FOUND THEN
        items := held.items - keep + 1;
        bytes := held.bytes + octet_length(item) - keep_bytes;
    END IF;
    IF items > 0 OR bytes > 0 THEN
        FOR oldest IN SELECT i.id, octet_length(i.body) AS length FROM imipd.inbox i
                WHERE i.account = a ORDER BY i.id LOOP
            EXIT WHEN items <= 0 AND bytes <= 0;
            DELETE FROM imipd.inbox i WHERE i.account = a AND i.id = oldest.id;
            items := items - 1;
            bytes := bytes - oldest.length;
        END LOOP;
    END IF;
    INSERT INTO imipd.inbox VALUES (a, made, item);
    RETURN made;
END $$;
-- One statement of a commit's batch; its DELETE must come before its INSERT, which the two
-- unique keys would refuse in one statement's snapshot.
CREATE OR REPLACE FUNCTION imipd.name(a text, u bytea, n bytea) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM imipd.names WHERE account = a AND (uid = u OR name = n);
    INSERT INTO imipd.names VALUES (a, n, u);
END $$;
CREATE OR REPLACE FUNCTION imipd.expect(holds boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF NOT holds THEN
        RAISE EXCEPTION 'the object changed meanwhile' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END $$;
";

/// What `migrate` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// The schema was made.
    Created,
    /// The schema was already this build's.
    Current,
    /// The schema was upgraded from this format.
    Upgraded(i32),
}

/// PostgreSQL with the daemon's tables.
pub struct PgStore {
    /// The runtime the pool's connections run on; shut down without waiting when dropped
    /// (a runtime may not be dropped inside another's context).
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// Connections of their own for the relay's acceptances: written the moment the relay
    /// answers, they must not wait behind inbound mail for a connection of the pool.
    journal: Pool,
    secret: [u8; 32],
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `work`, given at most [`TIMEOUT`]: a connection that hangs answers 451, not never.
async fn bounded<T>(work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unavailable(format!(
            "the database did not answer within {} s",
            TIMEOUT.as_secs()
        ))),
    }
}

fn failed(e: tokio_postgres::Error) -> StoreError {
    let retry = [
        SqlState::UNIQUE_VIOLATION,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
    ];
    match (e.code(), e.as_db_error()) {
        (Some(code), _) if retry.contains(code) => StoreError::Conflict,
        (_, Some(db)) => StoreError::Unavailable(format!("database: {}", db.message())),
        // The driver's own text is short ("error performing TLS handshake"): the causes say why.
        _ => {
            let mut text = format!("database: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            StoreError::Unavailable(text)
        }
    }
}

fn unreachable(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => failed(e),
        other => StoreError::Unavailable(format!("database unreachable: {other}")),
    }
}

/// Ids and revisions are u64 in the daemon and bigint (signed) in the database; the sequence
/// starts at 1, so they never differ.
fn id(value: i64) -> u64 {
    value.max(0) as u64
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn message(bytes: &[u8], id: i64) -> Option<OutboundMessage> {
    serde_json::from_slice(bytes)
        .inspect_err(|error| tracing::error!(id, %error, "outbound message unreadable; skipped"))
        .ok()
}

fn encoded(message: &OutboundMessage) -> Vec<u8> {
    serde_json::to_vec(message).expect("a message serializes")
}

impl PgStore {
    /// Connects to the database and checks its schema, which `migrate` must have made.
    pub fn open(url: &Database, pool_size: usize) -> Result<PgStore, StoreError> {
        let mut store = Self::connect(url, pool_size)?;
        store.secret = store.block(store.check())?;
        // Connected and prepared before the first relay answers: its record must be quick.
        store.block(async {
            let client = store.journal.get().await.map_err(unreachable)?;
            client
                .prepare_cached(RELAYED)
                .await
                .map_err(failed)
                .map(drop)
        })?;
        Ok(store)
    }

    /// Makes or upgrades the schema (under an advisory lock: hosts may start together).
    pub fn migrate(url: &Database) -> Result<Migration, StoreError> {
        let store = Self::connect(url, 1)?;
        store.block(store.make_schema())
    }

    fn connect(url: &Database, pool_size: usize) -> Result<PgStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("imipd-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("database runtime: {e}")))?;
        let connect = url.session();
        let tls = url.tls();
        let pool = |size: usize| {
            let recycling = ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            };
            let manager = match &tls {
                Some(tls) => Manager::from_config(
                    connect.clone(),
                    tokio_postgres_rustls::MakeRustlsConnect::new(tls.clone()),
                    recycling,
                ),
                None => Manager::from_config(connect.clone(), NoTls, recycling),
            };
            Pool::builder(manager)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(TIMEOUT))
                .create_timeout(Some(Duration::from_secs(5)))
                .recycle_timeout(Some(Duration::from_secs(5)))
                .build()
                .map_err(|e| StoreError::Unavailable(format!("database pool: {e}")))
        };
        Ok(PgStore {
            runtime: Some(runtime),
            pool: pool(pool_size)?,
            journal: pool(2)?,
            secret: [0; 32],
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("runtime until dropped")
            .handle()
    }

    /// Runs `work` on the store's runtime and waits for it, at most [`TIMEOUT`].
    fn block<T: Send>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        let handle = self.handle();
        let bounded = bounded(work);
        use tokio::runtime::RuntimeFlavor;
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            // The daemon: the worker hands its other tasks to another thread while this waits.
            Ok(RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| handle.block_on(bounded))
            }
            // A single-threaded runtime (tests) cannot do that; a thread of its own waits.
            Ok(_) => std::thread::scope(|scope| {
                scope
                    .spawn(|| handle.block_on(bounded))
                    .join()
                    .unwrap_or_else(|_| {
                        Err(StoreError::Unavailable("database call panicked".into()))
                    })
            }),
            Err(_) => handle.block_on(bounded),
        }
    }

    /// Runs `work` on the store's runtime, at most [`TIMEOUT`]; its answer is awaited without
    /// holding the caller's thread (the caller may be on another runtime).
    fn later<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Pending<T> {
        let task = self.handle().spawn(bounded(work));
        Box::pin(async move {
            task.await.unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "database call panicked or the store closed".into(),
                ))
            })
        })
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unreachable)
    }

    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(failed)?;
        client.query(&statement, params).await.map_err(failed)
    }

    /// Runs a read and maps each row.
    fn read<T: Send>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        each: impl Fn(&tokio_postgres::Row) -> T,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.block(self.query(sql, params))?;
        Ok(rows.iter().map(each).collect())
    }

    async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let statement = client.prepare_cached(sql).await.map_err(failed)?;
        client.execute(&statement, params).await.map_err(failed)
    }

    async fn make_schema(&self) -> Result<Migration, StoreError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK])
            .await
            .map_err(failed)?;
        let made = async {
            let found = recorded_format(&client).await?;
            match found {
                Some(FORMAT) => return Ok(Migration::Current),
                Some(found) if found > FORMAT => return Err(newer(found)),
                _ => {}
            }
            let first = FORMAT - UPGRADES.len() as i32;
            if let Some(found) = found
                && found < first
            {
                return Err(StoreError::Format {
                    found: format!("imipd-{found}"),
                    expected: format!("imipd-{FORMAT} (older than any this imipd can upgrade)"),
                });
            }
            let tx = client.transaction().await.map_err(failed)?;
            if let Some(found) = found {
                for step in &UPGRADES[(found - first) as usize..] {
                    tx.batch_execute(step).await.map_err(failed)?;
                }
            }
            tx.batch_execute(SCHEMA).await.map_err(failed)?;
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret)
                .map_err(|e| StoreError::Unavailable(format!("no randomness: {e}")))?;
            tx.execute(
                "INSERT INTO imipd.meta VALUES ('secret', $1) ON CONFLICT DO NOTHING",
                &[&secret.as_slice()],
            )
            .await
            .map_err(failed)?;
            tx.execute(
                "INSERT INTO imipd.meta VALUES ('format', $1) ON CONFLICT (key) \
                 DO UPDATE SET value = EXCLUDED.value",
                &[&format!("imipd-{FORMAT}").into_bytes()],
            )
            .await
            .map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok(found.map_or(Migration::Created, Migration::Upgraded))
        }
        .await;
        // Ends with the session otherwise; the pool would keep it.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK])
            .await;
        made
    }

    /// Checks the schema and the server's settings; returns the store's secret.
    async fn check(&self) -> Result<[u8; 32], StoreError> {
        let client = self.client().await?;
        match recorded_format(&client).await? {
            Some(FORMAT) => {}
            Some(found) if found > FORMAT => return Err(newer(found)),
            Some(found) => {
                return Err(StoreError::Format {
                    found: format!("imipd-{found}"),
                    expected: format!("imipd-{FORMAT} (run imipd migrate)"),
                });
            }
            None => {
                return Err(StoreError::Format {
                    found: "no imipd schema".into(),
                    expected: format!("imipd-{FORMAT} (run imipd migrate)"),
                });
            }
        }
        let row = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .map_err(failed)?;
        if row.get::<_, String>(0) == "off" {
            return Err(StoreError::Unavailable(
                "the database has synchronous_commit = off: imipd acknowledges mail only after \
                 a durable commit; set it to on (or remote_write, remote_apply)"
                    .into(),
            ));
        }
        let row = client
            .query_one("SELECT value FROM imipd.meta WHERE key = 'secret'", &[])
            .await
            .map_err(failed)?;
        let bytes: Vec<u8> = row.get(0);
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| StoreError::Unavailable("the store's secret is damaged".into()))
    }
}

/// A commit on a connection of `pool`.
async fn commit_on(pool: &Pool, changes: &[Change]) -> Result<Vec<u64>, StoreError> {
    super::check_sizes(changes, MAX_VALUE)?;
    let client = pool.get().await.map_err(unreachable)?;
    // Dropped before its answers are in (the call's time ran out), the connection may be
    // inside the transaction: it leaves the pool, and the server rolls back as it closes.
    let mut unfinished = Unfinished(Some(client));
    let ids = commit::commit(unfinished.0.as_ref().expect("held"), changes).await;
    drop(unfinished.0.take());
    ids
}

/// A connection in the middle of a batch.
struct Unfinished(Option<deadpool_postgres::Object>);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

fn newer(found: i32) -> StoreError {
    StoreError::Format {
        found: format!("imipd-{found}"),
        expected: format!("imipd-{FORMAT} (a newer imipd wrote this database)"),
    }
}

async fn recorded_format(client: &tokio_postgres::Client) -> Result<Option<i32>, StoreError> {
    let exists = client
        .query_one("SELECT to_regclass('imipd.meta') IS NOT NULL", &[])
        .await
        .map_err(failed)?;
    if !exists.get::<_, bool>(0) {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT value FROM imipd.meta WHERE key = 'format'", &[])
        .await
        .map_err(failed)?;
    let Some(row) = row else { return Ok(None) };
    let value: Vec<u8> = row.get(0);
    let text = String::from_utf8_lossy(&value);
    match text.strip_prefix("imipd-").and_then(|n| n.parse().ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(StoreError::Format {
            found: text.into_owned(),
            expected: format!("imipd-{FORMAT} (this is no imipd database)"),
        }),
    }
}

/// A row of `EVERY_OBJECT`: account, UID, object.
fn located(row: &tokio_postgres::Row) -> (String, String, StoredObject) {
    (row.get(0), text(row.get(1)), object(row, 2))
}

/// A row of two byte strings, as text.
fn texts(row: &tokio_postgres::Row) -> (String, String) {
    (text(row.get(0)), text(row.get(1)))
}

/// A row of the queue: id and message (an unreadable one is logged and skipped).
fn queued(row: &tokio_postgres::Row) -> Option<(u64, OutboundMessage)> {
    let key: i64 = row.get(0);
    Some((id(key), message(row.get(1), key)?))
}

fn object(row: &tokio_postgres::Row, at: usize) -> StoredObject {
    StoredObject {
        revision: id(row.get(at)),
        schedule_tag: id(row.get(at + 1)),
        text: text(row.get(at + 2)),
    }
}

impl Store for PgStore {
    fn get(&self, account: &str, uid: &str) -> Result<Option<StoredObject>, StoreError> {
        let rows = self.block(self.query(ahead::OBJECT, &[&account, &uid.as_bytes()]))?;
        Ok(ahead::object_in(&rows))
    }

    fn list(&self, account: &str) -> Result<Vec<(String, StoredObject)>, StoreError> {
        self.read(
            "SELECT uid, revision, schedule_tag, body FROM imipd.objects \
             WHERE account = $1 ORDER BY uid",
            &[&account],
            |row| (text(row.get(0)), object(row, 1)),
        )
    }

    fn listing(&self, account: &str) -> Result<Vec<(String, Listed)>, StoreError> {
        // octet_length reads a stored body's length without taking it out of its TOAST.
        self.read(
            "SELECT uid, revision, schedule_tag, octet_length(body) FROM imipd.objects \
             WHERE account = $1 ORDER BY uid",
            &[&account],
            |row| {
                let listed = Listed {
                    revision: id(row.get(1)),
                    schedule_tag: id(row.get(2)),
                    length: row.get::<_, i32>(3).max(0) as usize,
                };
                (text(row.get(0)), listed)
            },
        )
    }

    fn all(&self) -> Result<Vec<(String, String, StoredObject)>, StoreError> {
        self.read(EVERY_OBJECT, &[], located)
    }

    fn footprint_position(&self, account: &str) -> Result<u64, StoreError> {
        let found = self.read(
            "SELECT position FROM imipd.footprint_positions WHERE account = $1",
            &[&account],
            |row| id(row.get(0)),
        )?;
        Ok(found.first().copied().unwrap_or(0))
    }

    fn footprints_in(
        &self,
        account: &str,
        buckets: &[i64],
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(
            "SELECT uid, footprint FROM imipd.footprints WHERE account = $1 AND bucket = ANY($2)",
            &[&account, &buckets],
            |row| (text(row.get(0)), row.get(1)),
        )
    }

    /// In one transaction, so that what is filed and its position agree, under a lock on the
    /// account's footprints, so that hosts filing at once do not leave each other's entries
    /// behind: the last leaves its position, and the change log then brings up to date what
    /// it filed from an older state.
    fn keep_footprints(
        &self,
        account: &str,
        position: u64,
        objects: &[Filed],
    ) -> Result<(), StoreError> {
        let named: Vec<&[u8]> = objects.iter().map(|(uid, _)| uid.as_bytes()).collect();
        let filed = objects
            .iter()
            .flat_map(|(uid, by_bucket)| by_bucket.iter().map(move |(b, f)| (uid, *b, f)));
        let (mut uids, mut buckets, mut footprints) = (Vec::new(), Vec::new(), Vec::new());
        for (uid, bucket, footprint) in filed {
            uids.push(uid.as_bytes());
            buckets.push(bucket);
            footprints.push(footprint.as_slice());
        }
        let position = position as i64;
        self.block(async {
            let mut client = self.client().await?;
            let transaction = client.transaction().await.map_err(failed)?;
            transaction
                .execute(FOOTPRINTS_LOCK, &[&account])
                .await
                .map_err(failed)?;
            let forget = "DELETE FROM imipd.footprints WHERE account = $1 AND uid = ANY($2)";
            transaction
                .execute(forget, &[&account, &named])
                .await
                .map_err(failed)?;
            transaction
                .execute(FILE_FOOTPRINTS, &[&account, &buckets, &uids, &footprints])
                .await
                .map_err(failed)?;
            transaction
                .execute(FOOTPRINT_POSITION, &[&account, &position])
                .await
                .map_err(failed)?;
            transaction.commit().await.map_err(failed)
        })
    }

    /// Both reads in one REPEATABLE READ transaction: what other hosts commit meanwhile is
    /// not half in it.
    fn snapshot(&self) -> Result<Contents, StoreError> {
        self.block(async {
            let mut client = self.client().await?;
            let tx = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(failed)?;
            let objects = tx.query(EVERY_OBJECT, &[]).await.map_err(failed)?;
            let queue = tx.query(THE_QUEUE, &[]).await.map_err(failed)?;
            tx.commit().await.map_err(failed)?;
            Ok((
                objects.iter().map(located).collect(),
                queue.iter().filter_map(queued).collect(),
            ))
        })
    }

    fn properties(
        &self,
        account: &str,
        calendar: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.read(
            "SELECT name, value FROM imipd.properties WHERE account = $1 AND calendar = $2 \
             ORDER BY name",
            &[&account, &calendar.as_bytes()],
            texts,
        )
    }

    fn calendars(&self, account: &str) -> Result<Vec<String>, StoreError> {
        self.read(
            "SELECT name FROM imipd.calendars WHERE account = $1 ORDER BY name",
            &[&account],
            |row| text(row.get(0)),
        )
    }

    fn placements(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.read(
            "SELECT uid, calendar FROM imipd.placements WHERE account = $1 ORDER BY uid",
            &[&account],
            texts,
        )
    }

    fn named(&self, account: &str, name: &str) -> Result<Option<String>, StoreError> {
        let found = self.read(
            "SELECT uid FROM imipd.names WHERE account = $1 AND name = $2",
            &[&account, &name.as_bytes()],
            |row| text(row.get(0)),
        )?;
        Ok(found.into_iter().next())
    }

    fn name_of(&self, account: &str, uid: &str) -> Result<Option<String>, StoreError> {
        let found = self.read(
            "SELECT name FROM imipd.names WHERE account = $1 AND uid = $2",
            &[&account, &uid.as_bytes()],
            |row| text(row.get(0)),
        )?;
        Ok(found.into_iter().next())
    }

    fn names(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.read(
            "SELECT uid, name FROM imipd.names WHERE account = $1 ORDER BY uid",
            &[&account],
            texts,
        )
    }

    fn inbox(&self, account: &str) -> Result<Vec<(u64, String)>, StoreError> {
        self.read(
            "SELECT id, body FROM imipd.inbox WHERE account = $1 ORDER BY id",
            &[&account],
            |row| (id(row.get(0)), text(row.get(1))),
        )
    }

    fn inbox_ids(&self, account: &str) -> Result<Vec<(u64, usize)>, StoreError> {
        self.read(
            "SELECT id, octet_length(body) FROM imipd.inbox WHERE account = $1 ORDER BY id",
            &[&account],
            |row| (id(row.get(0)), row.get::<_, i32>(1).max(0) as usize),
        )
    }

    fn usage(&self, account: &str) -> Result<Usage, StoreError> {
        let rows = self.block(self.query(ahead::USAGE, &[&account]))?;
        Ok(ahead::usage_in(&rows))
    }

    fn tally(
        &self,
        account: &str,
        tally: Tally,
        address: &str,
    ) -> Result<Option<Count>, StoreError> {
        let kind = i16::from(tally.code());
        let rows = self.block(self.query(ahead::TALLY, &[&account, &kind, &address.as_bytes()]))?;
        Ok(ahead::count_in(&rows))
    }

    fn marked(&self, marker: Marker) -> Result<bool, StoreError> {
        let rows =
            self.block(self.query("SELECT 1 FROM imipd.meta WHERE key = $1", &[&marker.key()]))?;
        Ok(!rows.is_empty())
    }

    fn proposals(&self, account: &str, uid: &str) -> Result<Vec<(u64, String)>, StoreError> {
        self.read(
            "SELECT id, body FROM imipd.counters WHERE account = $1 AND uid = $2 ORDER BY id",
            &[&account, &uid.as_bytes()],
            |row| (id(row.get(0)), text(row.get(1))),
        )
    }

    fn changes_since(&self, account: &str, since: u64) -> Result<Changes, StoreError> {
        let since = since.min(i64::MAX as u64) as i64;
        // One statement, so one snapshot: the token and the list agree.
        let rows = self.block(self.query(
            "WITH top AS (SELECT max(id) AS m FROM imipd.changes WHERE account = $1) \
             SELECT top.m, c.id, c.uid, c.removed FROM top LEFT JOIN imipd.changes c \
             ON c.account = $1 AND c.id >= $2 ORDER BY c.id",
            &[&account, &since],
        ))?;
        let mut out = Changes::default();
        for row in &rows {
            if let Some(latest) = row.get::<_, Option<i64>>(0) {
                out.latest = id(latest) + 1;
            }
            if let Some(change) = row.get::<_, Option<i64>>(1) {
                out.changed.push(Changed {
                    id: id(change),
                    uid: text(row.get(2)),
                    removed: row.get(3),
                });
            }
        }
        Ok(out)
    }

    fn seen(&self, key: &[u8]) -> Result<bool, StoreError> {
        let rows = self.block(self.query("SELECT 1 FROM imipd.seen WHERE key = $1", &[&key]))?;
        Ok(!rows.is_empty())
    }

    fn commit(&self, changes: &[Change]) -> Result<Vec<u64>, StoreError> {
        self.block(commit_on(&self.pool, changes))
    }

    fn commit_later(&self, changes: Vec<Change>) -> Pending<Vec<u64>> {
        let pool = self.pool.clone();
        self.later(async move { commit_on(&pool, &changes).await })
    }

    fn reads_ahead(&self) -> bool {
        true
    }

    fn read_ahead(&self, reads: Vec<Read>) -> Pending<Ahead> {
        let pool = self.pool.clone();
        self.later(async move {
            let found = ahead::read_together(&pool, &reads).await?;
            Ok(Ahead::of(reads, found))
        })
    }

    fn outbox(&self) -> Result<Vec<(u64, OutboundMessage)>, StoreError> {
        let rows = self.block(self.query(THE_QUEUE, &[]))?;
        Ok(rows.iter().filter_map(queued).collect())
    }

    fn outbox_remove(&self, queued: u64) -> Result<(), StoreError> {
        self.block(self.execute(
            "DELETE FROM imipd.outbox WHERE id = $1",
            &[&(queued as i64)],
        ))
        .map(drop)
    }

    fn notices(&self) -> Result<Vec<Notice>, StoreError> {
        self.read(
            "SELECT account, uid, due, repliers FROM imipd.notices ORDER BY due",
            &[],
            |row| Notice {
                account: row.get(0),
                uid: text(row.get(1)),
                due: row.get(2),
                repliers: row.get(3),
            },
        )
    }

    fn refreshed(
        &self,
        account: &str,
        uid: &str,
        attendee: &str,
    ) -> Result<Option<i64>, StoreError> {
        let rows = self.block(self.query(
            "SELECT at FROM imipd.refreshed WHERE account = $1 AND uid = $2 AND attendee = $3",
            &[&account, &uid.as_bytes(), &attendee.as_bytes()],
        ))?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    fn sent(&self, queued: u64) -> Result<Option<OutboundMessage>, StoreError> {
        let key = queued as i64;
        let rows =
            self.block(self.query("SELECT message FROM imipd.sent WHERE id = $1", &[&key]))?;
        Ok(rows.first().and_then(|row| message(row.get(0), key)))
    }

    fn counters(&self, account: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.read(
            "SELECT uid, body FROM imipd.counters WHERE account = $1 ORDER BY uid, id",
            &[&account],
            texts,
        )
    }

    fn expire(&self, expiry: Expiry, limit: usize) -> Result<Expired, StoreError> {
        let limit = limit as i64;
        self.block(async {
            let client = self.client().await?;
            let mut gone = [0; 2];
            for (n, (sql, before)) in [
                (EXPIRE_SEEN, expiry.seen_before),
                (EXPIRE_SENT, expiry.sent_before),
            ]
            .into_iter()
            .enumerate()
            {
                let statement = client.prepare_cached(sql).await.map_err(failed)?;
                gone[n] = client
                    .execute(&statement, &[&before, &limit])
                    .await
                    .map_err(failed)? as usize;
            }
            let windowed: Vec<i16> = [Tally::Echo, Tally::NewFrom]
                .iter()
                .map(|t| i16::from(t.code()))
                .collect();
            let statement = client
                .prepare_cached(EXPIRE_TALLIES)
                .await
                .map_err(failed)?;
            let tallies = client
                .execute(&statement, &[&expiry.tallies_before, &limit, &windowed])
                .await
                .map_err(failed)? as usize;
            Ok(Expired {
                seen: gone[0],
                sent: gone[1],
                tallies,
            })
        })
    }

    fn connections(&self) -> Option<super::Connections> {
        let status = self.pool.status();
        Some(super::Connections {
            busy: status.size.saturating_sub(status.available),
            idle: status.available,
            waiting: status.waiting,
            max: status.max_size,
        })
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        let rows = self.block(self.query("SELECT pg_database_size(current_database())", &[]))?;
        Ok(rows.first().map(|row| id(row.get(0))).unwrap_or(0))
    }

    fn secret(&self) -> [u8; 32] {
        self.secret
    }

    fn sync_position(&self, account: &str) -> Result<u64, StoreError> {
        let rows = self.block(self.query(
            "SELECT max(id) FROM imipd.changes WHERE account = $1",
            &[&account],
        ))?;
        let latest = rows.first().and_then(|row| row.get::<_, Option<i64>>(0));
        Ok(latest.map_or(0, |latest| id(latest) + 1))
    }

    fn max_value(&self) -> usize {
        MAX_VALUE
    }

    /// Every commit is durable when it returns (synchronous commit).
    fn durable(&self) -> Durable<'_> {
        Durable::OnCommit
    }

    fn coordination(&self) -> Option<&dyn Coordination> {
        Some(self)
    }
}

impl Coordination for PgStore {
    fn claim(&self, queued: u64, holder: &str, now: i64, until: i64) -> Result<Claim, StoreError> {
        let rows = self.block(self.query(
            "UPDATE imipd.outbox SET holder = $2, lease_until = $4 WHERE id = $1 \
             AND (holder IS NULL OR holder = $2 OR lease_until < $3) RETURNING relayed",
            &[&(queued as i64), &holder, &now, &until],
        ))?;
        Ok(match rows.first().map(|row| row.get::<_, bool>(0)) {
            Some(true) => Claim::Relayed,
            Some(false) => Claim::Taken,
            None => Claim::Elsewhere,
        })
    }

    fn relayed(&self, queued: u64) -> Result<(), StoreError> {
        self.block(async {
            let client = self.journal.get().await.map_err(unreachable)?;
            let statement = client.prepare_cached(RELAYED).await.map_err(failed)?;
            client
                .execute(&statement, &[&(queued as i64)])
                .await
                .map_err(failed)
        })?;
        Ok(())
    }
}
