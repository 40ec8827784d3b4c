//! What an account may hold and take in, whoever writes it: objects and their bytes (RFC 4331
//! quota: `limits.max_objects`, `limits.max_account_size`), calendars, answers kept for an
//! organizer, new objects per outside sender. A write over one is refused whole (HTTP 507
//! with `DAV:quota-not-exceeded`, LMTP `452 4.2.2` for the part).

use crate::config::Limits;
use crate::store::{Change, Count, Usage};

/// Which quota a write would pass, with its configured value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverQuota {
    /// `limits.max_objects`.
    #[error("the account holds limits.max_objects ({0}) objects")]
    Objects(usize),
    /// `limits.max_account_size`.
    #[error("the account's objects would pass limits.max_account_size ({0} bytes)")]
    Bytes(u64),
    /// `limits.max_new_per_sender`.
    #[error("{0} put limits.max_new_per_sender ({1}) new objects into the account this hour")]
    NewFromSender(String, usize),
    /// `limits.max_uninvited`.
    #[error("the object keeps limits.max_uninvited ({0}) answers of people not invited")]
    Uninvited(usize),
    /// `limits.max_calendars`.
    #[error("the account has limits.max_calendars ({0}) further calendars")]
    Calendars(usize),
}

/// What a write adds to what an account holds (negative: frees).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Growth {
    /// Objects.
    pub objects: i64,
    /// Bytes of their text.
    pub bytes: i64,
}

impl Growth {
    /// An object that held `before` bytes (none: new) and holds `after`.
    pub fn of_object(before: Option<usize>, after: usize) -> Growth {
        Growth {
            objects: i64::from(before.is_none()),
            bytes: after as i64 - before.unwrap_or(0) as i64,
        }
    }

    /// Both added up.
    pub fn and(self, other: Growth) -> Growth {
        Growth {
            objects: self.objects + other.objects,
            bytes: self.bytes + other.bytes,
        }
    }
}

/// Whether an account holding `held` may grow by `growth`: only growth is refused, so that an
/// account over its quota (a lowered limit) may still shrink and change in place.
pub fn admits(limits: &Limits, held: Usage, growth: Growth) -> Result<(), OverQuota> {
    let after = |now: u64, by: i64| now.saturating_add_signed(by);
    if growth.objects > 0 && after(held.objects, growth.objects) > limits.max_objects as u64 {
        return Err(OverQuota::Objects(limits.max_objects));
    }
    if growth.bytes > 0 && after(held.bytes, growth.bytes) > limits.max_account_size {
        return Err(OverQuota::Bytes(limits.max_account_size));
    }
    Ok(())
}

/// The check a commit that grows an account by `growth` repeats against the store (none when
/// it does not grow): the quotas, for what grows.
pub fn within(limits: &Limits, account: &str, growth: Growth) -> Option<Change> {
    let objects = (growth.objects > 0).then_some(limits.max_objects as u64);
    let bytes = (growth.bytes > 0).then_some(limits.max_account_size);
    (objects.is_some() || bytes.is_some()).then(|| Change::Within {
        account: account.into(),
        objects,
        bytes,
    })
}

/// What an account may still take: RFC 4331's `quota-available-bytes`.
pub fn available_bytes(limits: &Limits, held: Usage) -> u64 {
    limits.max_account_size.saturating_sub(held.bytes)
}

/// The tally of new objects from one outside sender after one more at `now`, or the refusal:
/// `limits.max_new_per_sender` per hour.
pub fn one_more_from(
    limits: &Limits,
    sender: &str,
    tally: Option<Count>,
    now: i64,
) -> Result<Count, OverQuota> {
    const HOUR: i64 = 3600;
    match tally {
        Some(count) if now - count.since < HOUR => {
            if count.count as usize >= limits.max_new_per_sender {
                return Err(OverQuota::NewFromSender(
                    sender.to_string(),
                    limits.max_new_per_sender,
                ));
            }
            Ok(Count {
                since: count.since,
                count: count.count + 1,
            })
        }
        _ => Ok(Count {
            since: now,
            count: 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_objects: 3,
            max_account_size: 100,
            max_new_per_sender: 2,
            ..Limits::default()
        }
    }

    #[test]
    fn growth_is_refused_past_a_quota_and_shrinking_never() {
        let held = Usage {
            objects: 3,
            bytes: 90,
        };
        let new = Growth::of_object(None, 5);
        assert_eq!(admits(&limits(), held, new), Err(OverQuota::Objects(3)));
        let bigger = Growth::of_object(Some(10), 30);
        assert_eq!(admits(&limits(), held, bigger), Err(OverQuota::Bytes(100)));
        let same = Growth::of_object(Some(10), 20);
        assert_eq!(admits(&limits(), held, same), Ok(()));
        let over = Usage {
            objects: 9,
            bytes: 900,
        };
        assert_eq!(
            admits(&limits(), over, Growth::of_object(Some(50), 10)),
            Ok(())
        );
        assert_eq!(available_bytes(&limits(), over), 0);
        assert_eq!(available_bytes(&limits(), held), 10);
    }

    #[test]
    fn new_objects_per_sender_and_hour() {
        let first = one_more_from(&limits(), "x", None, 1000).unwrap();
        let second = one_more_from(&limits(), "x", Some(first), 1500).unwrap();
        assert_eq!(
            second,
            Count {
                since: 1000,
                count: 2
            }
        );
        assert!(one_more_from(&limits(), "x", Some(second), 4599).is_err());
        let next_hour = one_more_from(&limits(), "x", Some(second), 4600).unwrap();
        assert_eq!(
            next_hour,
            Count {
                since: 4600,
                count: 1
            }
        );
    }
}
