//! Who a request speaks for: HTTP Basic credentials of an account, or the admin Bearer token.
//!
//! argon2 costs tens of milliseconds and 19 MiB per check by design, so checks run on a small
//! blocking pool, never on the async threads that serve LMTP and HTTP. Every failure is logged
//! with the account and the peer, and a peer that keeps failing is slowed down (429 with
//! Retry-After, doubling from 1 s up to 15 min). An unknown account is checked against a hash
//! of the same cost, so that timing tells nothing of which accounts exist.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
// tokio's clock, so that tests can move it.
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// argon2 checks running at once: each holds a core and 19 MiB.
const HASHING: usize = 2;
/// Failures a peer may have before it is slowed down.
const FREE_FAILURES: u32 = 5;
/// The longest a peer is made to wait.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// Peers remembered at most; the oldest are forgotten first.
const MAX_PEERS: usize = 10_000;

/// What a credential check came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The password is the account's.
    Valid,
    /// Wrong password or unknown account.
    Invalid,
    /// The peer failed too often; try again after this long.
    SlowDown(Duration),
}

/// Failures of one peer address.
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// Password checks, their cache and the peers' failures.
pub struct Authenticator {
    /// Credentials argon2 accepted lately, as a keyed BLAKE2 digest: a client sending Basic
    /// credentials with every request must not pay argon2 each time.
    verified: Mutex<HashMap<String, ([u8; 32], Instant)>>,
    hashing: Semaphore,
    /// The hash an unknown account's password is checked against.
    decoy: String,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    /// argon2 verifications run (for `GET /metrics` and tests).
    pub argon2_checks: AtomicU64,
}

impl Default for Authenticator {
    fn default() -> Self {
        let mut secret = [0u8; 16];
        let _ = getrandom::fill(&mut secret);
        let salt = SaltString::encode_b64(&secret).expect("16 bytes make a salt");
        let decoy = argon2::Argon2::default()
            .hash_password(&secret, &salt)
            .expect("argon2 hashes 16 bytes")
            .to_string();
        Authenticator {
            verified: Mutex::default(),
            hashing: Semaphore::new(HASHING),
            decoy,
            failures: Mutex::default(),
            argon2_checks: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Authenticator {
    const LIFETIME: Duration = Duration::from_secs(600);

    fn digest(hash: &str, password: &str) -> [u8; 32] {
        use blake2::digest::{Update, VariableOutput};
        let mut hasher = blake2::Blake2bVar::new(32).expect("32 is a valid BLAKE2b length");
        // The argon2 hash (with its random salt) keys the digest: a changed hash voids it.
        hasher.update(hash.as_bytes());
        hasher.update(&[0]);
        hasher.update(password.as_bytes());
        let mut out = [0u8; 32];
        hasher
            .finalize_variable(&mut out)
            .expect("the buffer has the requested length");
        out
    }

    /// Checks the password `user` gave for `account` (name and argon2 hash; `None`: no such
    /// account) in a request from `peer`.
    pub async fn check(
        &self,
        peer: Option<IpAddr>,
        user: &str,
        account: Option<(&str, &str)>,
        password: &str,
    ) -> Checked {
        if let Some(wait) = peer.and_then(|p| self.waiting(p)) {
            return Checked::SlowDown(wait);
        }
        let valid = match account {
            Some((name, hash)) if !hash.is_empty() => self.verify(name, hash, password).await,
            // Same cost as a wrong password, and false whatever was sent.
            _ => {
                let decoy = self.decoy.clone();
                self.argon2(decoy, password.to_string()).await;
                false
            }
        };
        if valid {
            if let Some(peer) = peer {
                lock(&self.failures).remove(&peer);
            }
            return Checked::Valid;
        }
        self.failed(peer, user);
        Checked::Invalid
    }

    /// Records a failure of `user` (as the client named it; the admin token is "admin").
    pub fn failed(&self, peer: Option<IpAddr>, user: &str) {
        let shown = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        tracing::warn!(user = %crate::escape::escaped(user), peer = %shown, "authentication failed");
        let Some(peer) = peer else { return };
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        if failures.len() >= MAX_PEERS && !failures.contains_key(&peer) {
            let oldest = failures.iter().min_by_key(|(_, f)| f.last).map(|(p, _)| *p);
            if let Some(oldest) = oldest {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(peer).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        // A peer quiet for as long as the longest wait starts afresh.
        if now.duration_since(entry.last) > MAX_BACKOFF {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
        if entry.count > FREE_FAILURES {
            let doublings = (entry.count - FREE_FAILURES - 1).min(20);
            let wait = Duration::from_secs(1 << doublings).min(MAX_BACKOFF);
            entry.blocked_until = Some(now + wait);
        }
    }

    /// How long the peer must still wait before it may try again, if it must.
    pub fn waiting(&self, peer: IpAddr) -> Option<Duration> {
        let failures = lock(&self.failures);
        let until = failures.get(&peer)?.blocked_until?;
        until.checked_duration_since(Instant::now())
    }

    async fn verify(&self, account: &str, hash: &str, password: &str) -> bool {
        let digest = Self::digest(hash, password);
        if let Some((known, at)) = lock(&self.verified).get(account)
            && at.elapsed() < Self::LIFETIME
            && bool::from(subtle::ConstantTimeEq::ct_eq(&known[..], &digest[..]))
        {
            return true;
        }
        let valid = self.argon2(hash.to_string(), password.to_string()).await;
        if valid {
            lock(&self.verified).insert(account.to_string(), (digest, Instant::now()));
        }
        valid
    }

    /// One argon2 verification on the blocking pool, a few at a time.
    async fn argon2(&self, hash: String, password: String) -> bool {
        let _slot = self
            .hashing
            .acquire()
            .await
            .expect("the hashing semaphore is never closed");
        self.argon2_checks.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(password: &str) -> String {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn verified_credentials_are_remembered_only_for_their_password_and_hash() {
        let auth = Authenticator::default();
        let hash = hash("secret");
        let alice = Some(("a@x.org", hash.as_str()));
        assert_eq!(
            auth.check(None, "a@x.org", alice, "wrong").await,
            Checked::Invalid
        );
        assert_eq!(
            auth.check(None, "a@x.org", alice, "secret").await,
            Checked::Valid
        );
        let runs = auth.argon2_checks.load(Ordering::Relaxed);
        assert_eq!(
            auth.check(None, "a@x.org", alice, "secret").await,
            Checked::Valid
        );
        assert_eq!(auth.argon2_checks.load(Ordering::Relaxed), runs, "cached");
        assert_eq!(
            auth.check(None, "a@x.org", alice, "wrong").await,
            Checked::Invalid
        );
        let broken = Some(("a@x.org", "not a hash"));
        assert_eq!(
            auth.check(None, "a@x.org", broken, "secret").await,
            Checked::Invalid
        );
    }

    #[tokio::test]
    async fn an_unknown_account_costs_one_argon2_check_like_a_wrong_password() {
        let auth = Authenticator::default();
        let hash = hash("secret");
        let before = auth.argon2_checks.load(Ordering::Relaxed);
        auth.check(None, "nobody@x.org", None, "guess").await;
        let unknown = auth.argon2_checks.load(Ordering::Relaxed) - before;
        auth.check(None, "a@x.org", Some(("a@x.org", &hash)), "guess")
            .await;
        let wrong = auth.argon2_checks.load(Ordering::Relaxed) - before - unknown;
        auth.check(None, "b@x.org", Some(("b@x.org", "")), "guess")
            .await;
        let passwordless = auth.argon2_checks.load(Ordering::Relaxed) - before - unknown - wrong;
        assert_eq!((unknown, wrong, passwordless), (1, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_keeps_failing_is_slowed_down_and_others_are_not() {
        let auth = Authenticator::default();
        let hash = hash("secret");
        let account = Some(("a@x.org", hash.as_str()));
        let guesser: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(
                auth.check(Some(guesser), "a@x.org", account, "x").await,
                Checked::Invalid
            );
        }
        assert_eq!(
            auth.check(Some(guesser), "a@x.org", account, "x").await,
            Checked::Invalid
        );
        let Checked::SlowDown(wait) = auth
            .check(Some(guesser), "a@x.org", account, "secret")
            .await
        else {
            panic!("not slowed down");
        };
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            auth.check(Some(other), "a@x.org", account, "secret").await,
            Checked::Valid
        );
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        assert_eq!(
            auth.check(Some(guesser), "a@x.org", account, "secret")
                .await,
            Checked::Valid
        );
        assert!(auth.waiting(guesser).is_none(), "a success forgives");
    }
}
