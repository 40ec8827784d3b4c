//! Reads asked for before a decision and answered together. A store across a network
//! (PostgreSQL) answers them in one round trip, where the decision meeting them one by one
//! waited for one round trip each; the decision takes its answers from here and reads itself
//! only what was not asked for.

use super::{Count, Store, StoreError, StoredObject, Tally, Usage};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

/// A store's answer that comes later, without holding the caller's thread meanwhile.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// One read a decision will make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// An object of an account (`Store::get`).
    Object { account: String, uid: String },
    /// What an account holds (`Store::usage`).
    Usage { account: String },
    /// A tally (`Store::tally`).
    Tally {
        account: String,
        tally: Tally,
        address: String,
    },
}

/// What one read found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Object(Option<StoredObject>),
    Usage(Usage),
    Tally(Option<Count>),
}

/// Answers to reads made ahead; `missed` counts what was asked of it and not there (the
/// decision then reads the store itself). One decision's: a decision made again after a
/// conflict reads afresh.
#[derive(Debug, Default)]
pub struct Ahead {
    objects: BTreeMap<(String, String), Option<StoredObject>>,
    usage: BTreeMap<String, Usage>,
    tallies: BTreeMap<(String, Tally, String), Option<Count>>,
    missed: Cell<usize>,
}

impl Ahead {
    /// The answers, in the order of their reads.
    pub fn of(reads: Vec<Read>, found: Vec<Found>) -> Ahead {
        let mut ahead = Ahead::default();
        for (read, found) in reads.into_iter().zip(found) {
            match (read, found) {
                (Read::Object { account, uid }, Found::Object(object)) => {
                    ahead.objects.insert((account, uid), object);
                }
                (Read::Usage { account }, Found::Usage(usage)) => {
                    ahead.usage.insert(account, usage);
                }
                (
                    Read::Tally {
                        account,
                        tally,
                        address,
                    },
                    Found::Tally(count),
                ) => {
                    ahead.tallies.insert((account, tally, address), count);
                }
                // A store answers each read with its own kind.
                _ => {}
            }
        }
        ahead
    }

    /// The object, when it was read ahead.
    pub fn object(&self, account: &str, uid: &str) -> Option<Option<StoredObject>> {
        let key = (account.to_string(), uid.to_string());
        self.counted(self.objects.get(&key).cloned())
    }

    /// What the account holds, when it was read ahead.
    pub fn usage(&self, account: &str) -> Option<Usage> {
        self.counted(self.usage.get(account).copied())
    }

    /// The tally, when it was read ahead.
    pub fn tally(&self, account: &str, tally: Tally, address: &str) -> Option<Option<Count>> {
        let key = (account.to_string(), tally, address.to_string());
        self.counted(self.tallies.get(&key).copied())
    }

    /// How many reads the decision had to make itself.
    pub fn missed(&self) -> usize {
        self.missed.get()
    }

    fn counted<T>(&self, found: Option<T>) -> Option<T> {
        if found.is_none() {
            self.missed.set(self.missed.get() + 1);
        }
        found
    }
}

/// One read, made on its own (stores that gain nothing from asking together).
pub fn read<S: Store + ?Sized>(store: &S, read: &Read) -> Result<Found, StoreError> {
    Ok(match read {
        Read::Object { account, uid } => Found::Object(store.get(account, uid)?),
        Read::Usage { account } => Found::Usage(store.usage(account)?),
        Read::Tally {
            account,
            tally,
            address,
        } => Found::Tally(store.tally(account, *tally, address)?),
    })
}

/// An answer there already.
pub fn ready<T: Send + 'static>(answer: Result<T, StoreError>) -> Pending<T> {
    Box::pin(std::future::ready(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_not_read_ahead_is_counted() {
        let reads = vec![
            Read::Object {
                account: "bob".into(),
                uid: "u".into(),
            },
            Read::Usage {
                account: "bob".into(),
            },
            Read::Tally {
                account: "bob".into(),
                tally: Tally::NewFrom,
                address: "mailto:eve@example.net".into(),
            },
        ];
        let usage = Usage {
            objects: 3,
            bytes: 900,
        };
        let found = vec![Found::Object(None), Found::Usage(usage), Found::Tally(None)];
        let ahead = Ahead::of(reads, found);
        assert_eq!(ahead.object("bob", "u"), Some(None));
        assert_eq!(ahead.usage("bob"), Some(usage));
        let tally = ahead.tally("bob", Tally::NewFrom, "mailto:eve@example.net");
        assert_eq!(tally, Some(None));
        assert_eq!(ahead.missed(), 0);
        assert_eq!(ahead.object("bob", "v"), None);
        assert_eq!(
            ahead.tally("bob", Tally::Known, "mailto:eve@example.net"),
            None
        );
        assert_eq!(ahead.missed(), 2);
    }
}
