//! The daemon's shared core: the accounts, the store with its one transaction path (decide,
//! commit, wait until durable), the clock, and the engine's context for an account. The fronts
//! (LMTP/SMTP, HTTP) and the outbound worker build on it; it knows none of them.

use crate::config::Config;
use crate::itip::{CalAddress, Context};
use crate::store::{Change, Durability, Durable, Store, StoreError};
use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;

/// Attempts at a read-decide-commit cycle before giving up on concurrent writers.
const ATTEMPTS: usize = 8;

/// Opens the store the configuration names: the shared database when `store.url` is set
/// (its schema made or upgraded first), else sled in `server.data_dir`.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match &config.store.url {
        Some(url) => {
            crate::store::PgStore::migrate(url)?;
            Arc::new(crate::store::PgStore::open(url, config.store.pool_size)?)
        }
        None => Arc::new(crate::store::SledStore::open_with(
            &config.server.data_dir,
            config.store.cache_size,
        )?),
    })
}

/// Where the configuration keeps the store, for messages.
pub fn store_place(config: &Config) -> String {
    match &config.store.url {
        Some(url) => format!("database {}", url.describe()),
        None => config.server.data_dir.display().to_string(),
    }
}

/// The time, as the daemon sees it: seconds since the epoch.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> i64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// The configuration in force, with the address book made from its accounts.
pub struct Settings {
    /// The configuration.
    pub config: Config,
    book: BTreeMap<CalAddress, String>,
    /// The policies of the accounts that set their own, by account name.
    policies: BTreeMap<String, Policy>,
    /// The languages of the accounts that set their own, by account name.
    languages: BTreeMap<String, crate::wording::Language>,
}

impl Settings {
    fn new(config: Config) -> Self {
        let book = config.address_book();
        let server = Policy::of_server(&config);
        let policies = (config.accounts.iter())
            .map(|(name, own)| {
                let policy = Policy {
                    auto_add: own.auto_add.unwrap_or(server.auto_add),
                    invitations_calendar: own.invitations_calendar.clone(),
                    cancelled: own.cancelled,
                };
                (name.to_lowercase(), policy)
            })
            .filter(|(_, policy)| *policy != server)
            .collect();
        let languages = (config.accounts.iter())
            .filter_map(|(name, own)| Some((name.to_lowercase(), own.language?)))
            .collect();
        Settings {
            config,
            book,
            policies,
            languages,
        }
    }
}

impl std::ops::Deref for Settings {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

/// The state every listener shares.
pub struct Gateway {
    /// The configuration in force and what is derived from it; replaced whole on reload.
    settings: ArcSwap<Settings>,
    /// The PRODID the daemon started with: the engine borrows it for every message.
    prodid: String,
    /// The store.
    pub store: Arc<dyn Store>,
    /// What clients see of the store's counters, sealed with its secret.
    pub tags: crate::tags::Tags,
    /// One-click answers' tokens, sealed with its secret.
    pub links: crate::rsvp::Links,
    durability: Durability,
    clock: Arc<dyn Clock>,
    /// Woken when messages are queued.
    pub outbox_ready: Notify,
    /// Counters for `GET /metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Held shared by every commit, and exclusively by a snapshot (a backup), so that a
    /// snapshot sees the store between two commits.
    commits: tokio::sync::RwLock<()>,
    /// The last commit that failed for the store's sake, and when (seconds since the epoch);
    /// none once one succeeds.
    write_failure: std::sync::Mutex<Option<(i64, String)>>,
}

/// How long a failed commit makes the daemon unhealthy without one succeeding since: long
/// enough for a monitor to see it, short enough that a load balancer that stopped sending
/// because of it tries again.
const UNHEALTHY_FOR: i64 = 60;

/// An account's policy for the mail it receives (`accounts."ADDRESS"`, else `[inbound]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Whether a stranger's new object enters the calendar.
    pub auto_add: crate::config::AutoAdd,
    /// The further calendar new invitations go into; none: the default one.
    pub invitations_calendar: Option<String>,
    /// What a cancellation leaves of an event.
    pub cancelled: crate::config::Cancelled,
}

impl Policy {
    /// The server's, for accounts that set none of their own.
    fn of_server(config: &Config) -> Policy {
        Policy {
            auto_add: config.inbound.auto_add,
            invitations_calendar: None,
            cancelled: Default::default(),
        }
    }
}

/// What a read-decide-commit cycle decided: the changes to commit and what to return once they
/// are on disk.
#[derive(Debug)]
pub struct Decision<T> {
    /// Applied together or not at all.
    pub changes: Vec<Change>,
    /// Returned when they are durable.
    pub outcome: T,
}

impl<T> Decision<T> {
    /// A decision to commit `changes` and then return `outcome`.
    pub fn new(changes: Vec<Change>, outcome: T) -> Self {
        Decision { changes, outcome }
    }
}

impl Gateway {
    /// Builds the shared state on the system clock; starts the group-commit flusher (needs a
    /// tokio runtime).
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        Self::with_clock(config, store, Arc::new(SystemClock))
    }

    /// As [`Gateway::new`], on another clock (tests).
    pub fn with_clock(config: Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let durability = Durability::start(store.clone());
        Gateway {
            prodid: config.server.prodid.clone(),
            settings: ArcSwap::from_pointee(Settings::new(config)),
            tags: crate::tags::Tags::new(&store.secret()),
            links: crate::rsvp::Links::new(&store.secret()),
            store,
            durability,
            clock,
            outbox_ready: Notify::new(),
            metrics: Default::default(),
            commits: tokio::sync::RwLock::new(()),
            write_failure: std::sync::Mutex::new(None),
        }
    }

    /// Why commits failed in the last minute, when none succeeded since (a full disk, the
    /// database gone): what `GET /health` says besides a read.
    pub fn failing_writes(&self) -> Option<String> {
        let failure = self.write_failure.lock().unwrap_or_else(|e| e.into_inner());
        failure
            .as_ref()
            .filter(|(at, _)| self.now() - at < UNHEALTHY_FOR)
            .map(|(_, why)| why.clone())
    }

    fn wrote(&self, failure: Option<&StoreError>) {
        let mut recorded = self.write_failure.lock().unwrap_or_else(|e| e.into_inner());
        *recorded = failure.map(|e| (self.now(), e.to_string()));
    }

    /// Runs `read` with every commit held back: what it reads is one state of the store.
    pub async fn between_commits<T>(&self, read: impl FnOnce() -> T) -> T {
        let _alone = self.commits.write().await;
        read()
    }

    /// Seconds since the epoch.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The configuration in force: a snapshot that a reload does not change under the holder.
    pub fn config(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// Puts a new configuration in force (SIGHUP). What only a restart can change (listeners,
    /// the data folder, the store's cache, the PRODID) keeps its old value; the keys named in
    /// the answer differ in the new file and wait for a restart.
    pub fn reload(&self, mut new: Config) -> Vec<&'static str> {
        let old = self.config();
        let waiting = new.keep_fixed(&old.config);
        self.settings.store(Arc::new(Settings::new(new)));
        waiting
    }

    /// The account an email address belongs to.
    pub fn account_for(&self, email: &str) -> Option<String> {
        let address = CalAddress::from_email(email.trim().trim_matches(['<', '>']))?;
        self.settings.load().book.get(&address).cloned()
    }

    /// What an account's settings decide about mail it receives, the server's where it sets
    /// nothing (read again after a reload, like the rest).
    pub fn policy(&self, account: &str) -> Policy {
        let settings = self.settings.load();
        (settings.policies.get(account).cloned())
            .unwrap_or_else(|| Policy::of_server(&settings.config))
    }

    /// The language of the mail an account sends.
    pub fn language(&self, account: &str) -> crate::wording::Language {
        let settings = self.settings.load();
        (settings.languages.get(account).copied()).unwrap_or(settings.config.server.language)
    }

    /// Every address of an account.
    pub fn addresses(&self, account: &str) -> Vec<CalAddress> {
        self.settings
            .load()
            .book
            .iter()
            .filter(|(_, a)| a.as_str() == account)
            .map(|(address, _)| address.clone())
            .collect()
    }

    /// The change that puts an applied scheduling message into an account's schedule inbox;
    /// the store removes the oldest items past `limits.max_inbox_items` and
    /// `limits.max_inbox_size` in the same commit, so that an account no client reads does not
    /// grow without end.
    pub fn to_inbox(&self, account: &str, text: &str) -> Change {
        let limits = &self.config().limits;
        Change::Inbox {
            account: account.into(),
            text: text.into(),
            keep: limits.max_inbox_items,
            keep_bytes: limits.max_inbox_size,
        }
    }

    /// The engine's context for an account.
    pub fn context<'a>(&'a self, addresses: &'a [CalAddress]) -> Context<'a> {
        Context {
            now: self.now(),
            prodid: &self.prodid,
            addresses,
            vouched_domain: None,
        }
    }

    /// The one way anything is written. `decide` reads what it needs and decides what to
    /// change; the changes are committed atomically (and `decide` runs again when a concurrent
    /// writer changed what it read, up to a few times); then this waits until the commit is on
    /// disk and wakes the outbound worker when messages or notices were queued. Returns the decision's
    /// outcome with the ids the store gave the changes (a `Put`'s is its revision). An empty
    /// decision commits nothing.
    pub async fn transact<T, E: From<StoreError>>(
        &self,
        mut decide: impl FnMut() -> Result<Decision<T>, E>,
    ) -> Result<(T, Vec<u64>), E> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Decision { changes, outcome } = decide()?;
            if changes.is_empty() {
                return Ok((outcome, Vec::new()));
            }
            #[cfg(debug_assertions)]
            for change in &changes {
                if let Change::Put {
                    account, uid, text, ..
                } = change
                    && let Some(flaw) = crate::itip::stored_copy_flaw(text)
                {
                    panic!("an invalid copy of {uid} for {account}: {flaw}\n{text}");
                }
            }
            // The worker sleeps until the next due entry or notice it knew of: a new one may be
            // due sooner.
            let queued = changes.iter().any(|c| {
                matches!(
                    c,
                    Change::Enqueue(_) | Change::Requeue(..) | Change::Notify { .. }
                )
            });
            let generation = self.generation();
            let committing = self.commits.read().await;
            let started = std::time::Instant::now();
            let committed = self.store.commit_later(changes).await;
            drop(committing);
            match committed {
                Ok(ids) => {
                    let durable = self.durable(generation).await;
                    self.wrote(durable.as_ref().err());
                    durable?;
                    self.metrics.commit(started.elapsed());
                    if queued {
                        self.outbox_ready.notify_one();
                    }
                    return Ok((outcome, ids));
                }
                Err(StoreError::Conflict) if attempt < ATTEMPTS => {
                    self.metrics.conflict();
                    continue;
                }
                Err(e) => {
                    if let StoreError::Unavailable(_) = e {
                        self.wrote(Some(&e));
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// The store's generation, to read before a commit (see `GroupSync::generation`).
    fn generation(&self) -> u64 {
        match self.store.durable() {
            Durable::BySync(store) => store.generation(),
            Durable::OnCommit => 0,
        }
    }

    /// Waits until everything committed since `generation` was read is on disk.
    async fn durable(&self, generation: u64) -> Result<(), StoreError> {
        match self.store.durable() {
            Durable::OnCommit => Ok(()),
            Durable::BySync(_) => self.durability.wait(generation).await,
        }
    }

    /// Waits until everything committed so far is on disk (before a process ends).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.durable(self.generation()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Expect, SledStore, Tag};

    /// A stored object named by its SUMMARY (commits check stored copies in debug builds).
    fn object(label: &str) -> String {
        format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:u\r\n\
DTSTAMP:20260101T000000Z\r\nDTSTART:20260101T100000Z\r\nSUMMARY:{label}\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n"
        )
    }

    fn put(label: &str, expect: Expect) -> Change {
        Change::Put {
            account: "bob".into(),
            uid: "u".into(),
            text: object(label),
            expect,
            tag: Tag::New,
        }
    }

    struct Hands(std::sync::atomic::AtomicI64);

    impl Clock for Hands {
        fn now(&self) -> i64 {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// A failed commit makes the daemon unhealthy until one succeeds, or for a minute.
    #[tokio::test]
    async fn failed_writes_are_reported_for_a_minute_or_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let clock = Arc::new(Hands(std::sync::atomic::AtomicI64::new(1000)));
        let gateway = Gateway::with_clock(Config::default(), store, clock.clone());
        assert_eq!(gateway.failing_writes(), None);
        let full = StoreError::Unavailable("No space left on device".into());
        gateway.wrote(Some(&full));
        assert!(gateway.failing_writes().unwrap().contains("No space"));
        clock
            .0
            .store(1000 + UNHEALTHY_FOR, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(gateway.failing_writes(), None, "a minute later");
        gateway.wrote(Some(&full));
        assert!(gateway.failing_writes().is_some());
        gateway
            .transact(|| Ok::<_, StoreError>(Decision::new(vec![put("x", Expect::Any)], ())))
            .await
            .unwrap();
        assert_eq!(gateway.failing_writes(), None, "a commit went through");
    }

    /// Another writer commits between a decision's read and its commit: the decision is made
    /// again on what it wrote, and the metric counts it.
    #[tokio::test]
    async fn a_decision_is_made_again_when_its_read_went_stale() {
        let dir = std::env::temp_dir().join(format!("imipd-transact-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
        store.commit(&[put("first", Expect::Absent)]).unwrap();
        let gateway = Gateway::new(Config::default(), store.clone());
        let mut decisions = 0;
        let (seen, _) = gateway
            .transact(|| {
                decisions += 1;
                let current = gateway.store.get("bob", "u")?.expect("stored");
                if decisions == 1 {
                    gateway.store.commit(&[put("meanwhile", Expect::Any)])?;
                }
                let change = put("mine", Expect::Revision(current.revision));
                Ok::<_, StoreError>(Decision::new(vec![change], current.text))
            })
            .await
            .unwrap();
        assert_eq!((decisions, seen), (2, object("meanwhile")));
        assert_eq!(
            gateway.store.get("bob", "u").unwrap().unwrap().text,
            object("mine")
        );
        assert_eq!(gateway.metrics.conflicts(), 1);
        drop(gateway);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
