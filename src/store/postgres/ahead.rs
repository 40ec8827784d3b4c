//! The reads before a decision (`Store::read_ahead`), asked in one statement: one round trip
//! and one transaction on the server for all of them.

use super::{failed, id, object, text, unreachable};
use crate::store::{Count, Found, Read, StoreError, StoredObject, Usage};
use deadpool_postgres::Pool;
use std::collections::HashMap;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

pub(super) const OBJECT: &str =
    "SELECT revision, schedule_tag, body FROM imipd.objects WHERE account = $1 AND uid = $2";
pub(super) const USAGE: &str = "SELECT objects, bytes FROM imipd.usage WHERE account = $1";
pub(super) const TALLY: &str =
    "SELECT since, count FROM imipd.tallies WHERE account = $1 AND kind = $2 AND address = $3";

pub(super) fn object_in(rows: &[Row]) -> Option<StoredObject> {
    rows.first().map(|row| object(row, 0))
}

pub(super) fn usage_in(rows: &[Row]) -> Usage {
    rows.first().map_or(Usage::default(), |row| Usage {
        objects: id(row.get(0)),
        bytes: id(row.get(1)),
    })
}

pub(super) fn count_in(rows: &[Row]) -> Option<Count> {
    rows.first().map(|row| Count {
        since: row.get(0),
        count: row.get::<_, i32>(1).max(0) as u32,
    })
}

/// Every read in one statement, so one snapshot and one transaction on the server: each
/// kind of read with its keys as arrays (`= ANY` on each key column, which the primary keys'
/// indexes answer; a key's combination not asked for is left out on this side).
const TOGETHER: &str = "\
    SELECT 0::smallint, account, uid, NULL::smallint, revision, schedule_tag, body \
        FROM imipd.objects WHERE account = ANY($1) AND uid = ANY($2) \
    UNION ALL SELECT 1::smallint, account, NULL, NULL, objects, bytes, NULL \
        FROM imipd.usage WHERE account = ANY($3) \
    UNION ALL SELECT 2::smallint, account, address, kind, since, count::bigint, NULL \
        FROM imipd.tallies WHERE account = ANY($4) AND kind = ANY($5) AND address = ANY($6)";

/// The keys of the reads, by kind, as the statement's arrays.
#[derive(Default)]
struct Keys {
    object_accounts: Vec<String>,
    uids: Vec<Vec<u8>>,
    usage_accounts: Vec<String>,
    tally_accounts: Vec<String>,
    kinds: Vec<i16>,
    addresses: Vec<Vec<u8>>,
}

impl Keys {
    fn of(reads: &[Read]) -> Keys {
        let mut keys = Keys::default();
        for read in reads {
            match read {
                Read::Object { account, uid } => {
                    keys.object_accounts.push(account.clone());
                    keys.uids.push(uid.as_bytes().to_vec());
                }
                Read::Usage { account } => keys.usage_accounts.push(account.clone()),
                Read::Tally {
                    account,
                    tally,
                    address,
                } => {
                    keys.tally_accounts.push(account.clone());
                    keys.kinds.push(i16::from(tally.code()));
                    keys.addresses.push(address.as_bytes().to_vec());
                }
            }
        }
        keys
    }
}

/// What the statement found, by key.
#[derive(Default)]
struct Rows {
    objects: HashMap<(String, Vec<u8>), StoredObject>,
    usage: HashMap<String, Usage>,
    tallies: HashMap<(String, i16, Vec<u8>), Count>,
}

impl Rows {
    fn of(rows: &[Row]) -> Rows {
        let mut found = Rows::default();
        for row in rows {
            let account: String = row.get(1);
            let (a, b) = (row.get::<_, i64>(4), row.get::<_, i64>(5));
            match row.get::<_, i16>(0) {
                0 => {
                    let object = StoredObject {
                        revision: id(a),
                        schedule_tag: id(b),
                        text: text(row.get(6)),
                    };
                    found.objects.insert((account, row.get(2)), object);
                }
                1 => {
                    let usage = Usage {
                        objects: id(a),
                        bytes: id(b),
                    };
                    found.usage.insert(account, usage);
                }
                _ => {
                    let count = Count {
                        since: a,
                        count: b.clamp(0, i64::from(u32::MAX)) as u32,
                    };
                    found
                        .tallies
                        .insert((account, row.get(3), row.get(2)), count);
                }
            }
        }
        found
    }

    fn answer(&self, read: &Read) -> Found {
        match read {
            Read::Object { account, uid } => {
                let key = (account.clone(), uid.as_bytes().to_vec());
                Found::Object(self.objects.get(&key).cloned())
            }
            Read::Usage { account } => {
                Found::Usage(self.usage.get(account).copied().unwrap_or_default())
            }
            Read::Tally {
                account,
                tally,
                address,
            } => {
                let key = (
                    account.clone(),
                    i16::from(tally.code()),
                    address.as_bytes().to_vec(),
                );
                Found::Tally(self.tallies.get(&key).copied())
            }
        }
    }
}

/// Every read's answer, in order: one statement, one round trip.
pub(super) async fn read_together(pool: &Pool, reads: &[Read]) -> Result<Vec<Found>, StoreError> {
    let client = pool.get().await.map_err(unreachable)?;
    let statement = client.prepare_cached(TOGETHER).await.map_err(failed)?;
    let keys = Keys::of(reads);
    let params: [&(dyn ToSql + Sync); 6] = [
        &keys.object_accounts,
        &keys.uids,
        &keys.usage_accounts,
        &keys.tally_accounts,
        &keys.kinds,
        &keys.addresses,
    ];
    let rows = client.query(&statement, &params).await.map_err(failed)?;
    let rows = Rows::of(&rows);
    Ok(reads.iter().map(|read| rows.answer(read)).collect())
}
