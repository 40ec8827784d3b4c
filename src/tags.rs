//! What clients see of the store's counters: ETags, Schedule-Tags, sync tokens and the names
//! of schedule inbox items. The store numbers every write of every account with one counter;
//! shown as they are, those numbers would tell each user how much everyone else writes. Each
//! is sealed with a key made from the store's secret, per account: a tag is a keyed hash (it
//! is only ever compared), a position (a sync token, an inbox item's name) a keyed permutation
//! of 64 bits (it is read back), so that nothing of the counter shows.

use blake2::{Blake2s256, Digest};

/// The key the tags of one store are sealed with.
#[derive(Clone)]
pub struct Tags {
    key: [u8; 32],
}

impl std::fmt::Debug for Tags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tags(..)")
    }
}

/// Rounds of the permutation: four make a pseudorandom permutation of a balanced Feistel
/// network (Luby-Rackoff).
const ROUNDS: u8 = 4;

impl Tags {
    /// The tags of a store with this secret.
    pub fn new(secret: &[u8; 32]) -> Tags {
        let mut hasher = Blake2s256::new();
        hasher.update(b"imipd tags\0");
        hasher.update(secret);
        Tags {
            key: hasher.finalize().into(),
        }
    }

    /// An object's ETag at a revision (RFC 7232 2.3: quoted).
    pub fn etag(&self, account: &str, revision: u64) -> String {
        quoted("", self.hash(b"etag", account, revision))
    }

    /// An object's Schedule-Tag (RFC 6638 3.2.10).
    pub fn schedule_tag(&self, account: &str, tag: u64) -> String {
        quoted("s", self.hash(b"schedule", account, tag))
    }

    /// A position in an account's records (its change log, its inbox) as clients see it.
    pub fn seal(&self, account: &str, position: u64) -> u64 {
        let (mut left, mut right) = ((position >> 32) as u32, position as u32);
        for round in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(account, round, right));
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    /// The position a sealed one stands for.
    pub fn open(&self, account: &str, sealed: u64) -> u64 {
        let (mut left, mut right) = ((sealed >> 32) as u32, sealed as u32);
        for round in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(account, round, left), left);
        }
        (u64::from(left) << 32) | u64::from(right)
    }

    fn round(&self, account: &str, round: u8, half: u32) -> u32 {
        let mut hasher = Blake2s256::new();
        hasher.update(self.key);
        hasher.update(account.as_bytes());
        hasher.update([0, round]);
        hasher.update(half.to_be_bytes());
        let out = hasher.finalize();
        u32::from_be_bytes([out[0], out[1], out[2], out[3]])
    }

    fn hash(&self, what: &[u8], account: &str, value: u64) -> u64 {
        let mut hasher = Blake2s256::new();
        hasher.update(self.key);
        hasher.update(what);
        hasher.update([0]);
        hasher.update(account.as_bytes());
        hasher.update([0]);
        hasher.update(value.to_be_bytes());
        let out = hasher.finalize();
        u64::from_be_bytes(out[..8].try_into().unwrap_or_default())
    }
}

/// `"{prefix}{hash:016x}"`, written without the formatting machinery: a listing writes one
/// per object.
fn quoted(prefix: &str, hash: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(prefix.len() + 18);
    out.push('"');
    out.push_str(prefix);
    for shift in (0..16).rev() {
        out.push(char::from(HEX[(hash >> (shift * 4)) as usize & 15]));
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Sealing is a permutation: every position comes back, per account and store.
        #[test]
        fn sealed_positions_open_again(position: u64, account in "[a-z]{1,12}@x\\.org") {
            let tags = Tags::new(&[7; 32]);
            proptest::prop_assert_eq!(tags.open(&account, tags.seal(&account, position)), position);
        }

        /// Tags read as they always have (clients compare them across upgrades).
        #[test]
        fn tags_are_sixteen_hex_digits_quoted(hash: u64) {
            proptest::prop_assert_eq!(quoted("", hash), format!("\"{hash:016x}\""));
            proptest::prop_assert_eq!(quoted("s", hash), format!("\"s{hash:016x}\""));
        }
    }

    /// Nothing of the counter shows: consecutive revisions give unrelated tags, another
    /// account or another store other ones.
    #[test]
    fn tags_tell_nothing_of_the_counter() {
        let tags = Tags::new(&[1; 32]);
        let other_store = Tags::new(&[2; 32]);
        let (a, b) = (tags.seal("a@x.org", 1000), tags.seal("a@x.org", 1001));
        assert!((a as i128 - b as i128).unsigned_abs() > 1 << 20, "{a} {b}");
        assert_ne!(tags.seal("a@x.org", 1000), tags.seal("b@x.org", 1000));
        assert_ne!(
            tags.seal("a@x.org", 1000),
            other_store.seal("a@x.org", 1000)
        );
        assert_ne!(tags.etag("a@x.org", 5), tags.etag("a@x.org", 6));
        assert_ne!(tags.etag("a@x.org", 5), tags.etag("b@x.org", 5));
        assert_ne!(tags.etag("a@x.org", 5), tags.schedule_tag("a@x.org", 5));
        assert!(tags.etag("a@x.org", 5).starts_with('"'));
    }
}
