//! Where an object's instances lie, kept in the store and filed by buckets of time, so that a
//! time-range query reads only what is filed under the buckets its range meets, and decides
//! most of it without reading or parsing a text; nothing is built again after a restart.
//!
//! Footprints follow the account's change log: before a query reads them, every object
//! written since the position they are up to date with is made again and every removed one
//! forgotten (`refresh`), so a write costs nothing on its own path, and each object is parsed
//! once per revision. They are a cache, written outside the commits and not synced: what is
//! lost is made again from the change log.

use super::instances::{self, Budget, OverBudget, WIDEST_OFFSET};
use super::query::is_undated_todo;
use crate::store::{Filed, Listed, Store, StoreError, StoredObject};
use calcard::common::timezone::Tz;
use calcard::icalendar::{ICalendar, ICalendarComponentType};
use calcard::{Entry, Parser};
use std::collections::HashMap;

/// Instances of its rules a footprint is made from: past them, its span reaches the end of
/// time and only the text can tell. No more than fit in what one object may file
/// (`MAX_FILED`): making a footprint costs no more than filing it can use.
const MAX_INSTANCES: usize = (MAX_FILED / INSTANCE_BYTES) as usize;

/// The first start and the last end of an object's instances, seconds since the epoch.
pub type Span = (i64, i64);

/// The kinds of component a footprint tells apart; any other kind is `OTHER`.
const EVENT: u8 = 1;
const TODO: u8 = 2;
const JOURNAL: u8 = 4;
const FREEBUSY: u8 = 8;
const OTHER: u8 = 16;

/// Where an object's instances lie, and what kinds of component it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    /// The kinds of component in the object (`EVENT`, ...).
    kinds: u8,
    /// The first start and last end of its instances, widened by `WIDEST_OFFSET` (any zone
    /// its floating times may be read in); the end of time for a rule that goes on past
    /// `MAX_INSTANCES`; none when it has no instance.
    pub span: Option<Span>,
    /// Every instance (its kind, start and end), when they are known whatever zone a query
    /// reads floating times in, and no undated to-do leaves its place to CREATED and
    /// COMPLETED: then a time range is decided from them alone.
    exact: Option<Vec<(u8, i64, i64)>>,
}

/// A component kind as a footprint records it.
pub fn kind_bit(kind: &ICalendarComponentType) -> u8 {
    match kind {
        ICalendarComponentType::VEvent => EVENT,
        ICalendarComponentType::VTodo => TODO,
        ICalendarComponentType::VJournal => JOURNAL,
        ICalendarComponentType::VFreebusy => FREEBUSY,
        _ => OTHER,
    }
}

impl Footprint {
    /// Nothing: no component, no instance.
    const NONE: Footprint = Footprint {
        kinds: 0,
        span: None,
        exact: None,
    };

    /// The footprint of a parsed object; none when the budget ran out before it was made.
    pub fn of(calendar: &ICalendar, budget: &mut Budget) -> Option<Footprint> {
        let kinds = calendar
            .components
            .iter()
            .fold(0, |kinds, c| kinds | kind_bit(&c.component_type));
        // A to-do with no date of its own is placed by its CREATED and COMPLETED, or everywhere.
        if calendar.components.iter().any(is_undated_todo) {
            return Some(Footprint {
                kinds,
                span: Some((i64::MIN, i64::MAX)),
                exact: None,
            });
        }
        let expansion = instances::expand_at_most(calendar, Tz::UTC, None, budget, MAX_INSTANCES);
        if budget.spent() {
            return None;
        }
        let kind_of = |component: u32| {
            calendar
                .components
                .get(component as usize)
                .map_or(OTHER, |c| kind_bit(&c.component_type))
        };
        let placed: Vec<(u8, i64, i64)> = expansion
            .instances
            .iter()
            .map(|i| (kind_of(i.component), i.start, i.end))
            .collect();
        let span = placed
            .iter()
            .map(|(_, start, end)| (*start, *end))
            .reduce(|(s, e), (start, end)| (s.min(start), e.max(end)))
            .map(|(s, e)| (s - WIDEST_OFFSET, e + WIDEST_OFFSET));
        if !expansion.covers(None) {
            let from = span.map_or(i64::MIN, |(s, _)| s);
            return Some(Footprint {
                kinds,
                span: Some((from, i64::MAX)),
                exact: None,
            });
        }
        let exact = zone_free(calendar, &expansion.instances, budget).then_some(placed);
        Some(Footprint { kinds, span, exact })
    }

    /// True when the object holds a component of the kind (`None`: any kind).
    pub fn holds(&self, kind: Option<u8>) -> bool {
        kind.map_or(self.kinds != 0, |k| self.kinds & k != 0)
    }

    /// Its instances of the kind (`None`: any), when known exactly.
    pub fn instances(&self, kind: Option<u8>) -> Option<impl Iterator<Item = Span> + '_> {
        let exact = self.exact.as_ref()?;
        Some(
            exact
                .iter()
                .filter(move |(k, _, _)| kind.is_none_or(|wanted| *k == wanted))
                .map(|(_, start, end)| (*start, *end)),
        )
    }

    /// Bytes to keep: a format byte, the kinds, then the span and the instances if any.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![1, self.kinds];
        let flags = u8::from(self.span.is_some()) | (u8::from(self.exact.is_some()) << 1);
        out.push(flags);
        if let Some((start, end)) = self.span {
            out.extend_from_slice(&start.to_be_bytes());
            out.extend_from_slice(&end.to_be_bytes());
        }
        if let Some(exact) = &self.exact {
            out.extend_from_slice(&(exact.len() as u32).to_be_bytes());
            for (kind, start, end) in exact {
                out.push(*kind);
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&end.to_be_bytes());
            }
        }
        out
    }

    /// What `encode` made; none for anything else (another format: made again).
    pub fn decode(bytes: &[u8]) -> Option<Footprint> {
        let mut reader = Reader(bytes);
        if reader.byte()? != 1 {
            return None;
        }
        let kinds = reader.byte()?;
        let flags = reader.byte()?;
        let span = match flags & 1 {
            0 => None,
            _ => Some((reader.number()?, reader.number()?)),
        };
        let exact = match flags & 2 {
            0 => None,
            _ => {
                let count = u32::from_be_bytes(reader.take()?) as usize;
                let mut exact = Vec::with_capacity(count.min(MAX_INSTANCES));
                for _ in 0..count {
                    exact.push((reader.byte()?, reader.number()?, reader.number()?));
                }
                Some(exact)
            }
        };
        reader
            .0
            .is_empty()
            .then_some(Footprint { kinds, span, exact })
    }
}

/// True when the object's instances are the same whatever zone its floating times (and
/// dates) are read in: expanded again in the zone farthest from UTC, nothing moves.
fn zone_free(calendar: &ICalendar, in_utc: &[instances::Instance], budget: &mut Budget) -> bool {
    let farthest = Tz::Tz(chrono_tz::Tz::Etc__GMTMinus14);
    let again = instances::expand_at_most(calendar, farthest, None, budget, MAX_INSTANCES);
    again.covers(None) && again.instances == in_utc
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_at_checked(N)?;
        self.0 = rest;
        head.try_into().ok()
    }

    fn byte(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn number(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

/// Buckets of time the kept footprints are filed under (28 days): a query reads the buckets
/// its range meets, a month two or three of them.
const BUCKET: i64 = 28 * 86_400;

/// The bucket of what has no place in time that a query could name: endless rules, undated
/// to-dos; read by every query.
const EVERYWHERE: i64 = i64::MIN;

/// The bucket every object is filed under with its listing (revision, Schedule-Tag, length):
/// a Depth 1 PROPFIND lists a calendar from it without reading the objects' texts. No time
/// is in it (a range's buckets are quotients by `BUCKET`). A store that holds an older
/// build's filing, without these entries, forgets it (sled's `FOOTPRINT_FORMAT`, PostgreSQL's
/// schema format 5): whatever changes what is filed must do the same.
const LISTING: i64 = i64::MAX;

/// Most buckets, and bytes, one object is filed under (`Footprint::by_bucket`); an entry's
/// bytes besides its instances, and an instance's.
const MAX_FILED_BUCKETS: i64 = 32;
const MAX_FILED: i64 = 4_096;
const ENTRY_BYTES: i64 = 48;
const INSTANCE_BYTES: i64 = 17;

/// Most objects `refresh` files in one write: the filing of 100,000 imported objects is kept
/// a thousand at a time, so that it holds no more than that in memory (one read of every
/// text would hold hundreds of megabytes) and what was filed stays filed if it stops.
const KEPT_AT_ONCE: usize = 1_000;

/// Most buckets a query reads; a wider range reads every object instead.
const MAX_BUCKETS: i64 = 40;

/// The buckets from the one holding `start` to the one holding `end`, both included.
fn buckets(start: i64, end: i64) -> std::ops::RangeInclusive<i64> {
    start.div_euclid(BUCKET)..=end.max(start).div_euclid(BUCKET)
}

impl Footprint {
    /// The footprint filed under each bucket it has instances in: its span and kinds whole,
    /// its exact instances those that meet the bucket (a range that meets an instance meets
    /// one of its buckets, so the buckets a range meets hold every instance that decides it).
    /// What would file more than `MAX_FILED` bytes or buckets is filed without its instances
    /// under the buckets of its span, and past `MAX_FILED_BUCKETS` of them under `EVERYWHERE`:
    /// an object of a few lines (a rule of a thousand monthly instances, an event across
    /// centuries) then costs its queries a parse, not the store a thousand entries.
    fn by_bucket(&self) -> Vec<(i64, Footprint)> {
        let Some((start, end)) = self.span else {
            return Vec::new();
        };
        if let Some(filed) = self.exact.as_ref().and_then(|e| self.filed_exactly(e)) {
            return filed;
        }
        let general = Footprint {
            exact: None,
            ..self.clone()
        };
        let spread = end
            .div_euclid(BUCKET)
            .saturating_sub(start.div_euclid(BUCKET));
        match end == i64::MAX || start == i64::MIN || spread >= MAX_FILED_BUCKETS {
            true => vec![(EVERYWHERE, general)],
            false => buckets(start, end).map(|b| (b, general.clone())).collect(),
        }
    }

    /// Each instance under the buckets it meets, when that stays within `MAX_FILED` bytes and
    /// `MAX_FILED_BUCKETS` buckets.
    fn filed_exactly(&self, exact: &[(u8, i64, i64)]) -> Option<Vec<(i64, Footprint)>> {
        let mut filed: std::collections::BTreeMap<i64, Vec<(u8, i64, i64)>> = Default::default();
        let mut placed = 0;
        for &(kind, start, end) in exact {
            // An instance without length meets a range by its start (RFC 4791 9.9).
            let spread =
                end.saturating_sub(1).max(start).div_euclid(BUCKET) - start.div_euclid(BUCKET);
            placed += spread.saturating_add(1);
            let bytes = filed.len() as i64 * ENTRY_BYTES + placed * INSTANCE_BYTES;
            if spread >= MAX_FILED_BUCKETS || bytes > MAX_FILED {
                return None;
            }
            for bucket in buckets(start, end.saturating_sub(1)) {
                filed.entry(bucket).or_default().push((kind, start, end));
            }
            if filed.len() as i64 > MAX_FILED_BUCKETS {
                return None;
            }
        }
        let part = |instances| Footprint {
            exact: Some(instances),
            ..self.clone()
        };
        Some(filed.into_iter().map(|(b, i)| (b, part(i))).collect())
    }

    /// The footprint of an object filed under several buckets, made whole again from what
    /// the buckets a query read hold of it.
    fn merge(mut self, other: Footprint) -> Footprint {
        self.exact = match (self.exact, other.exact) {
            (Some(mut mine), Some(theirs)) => {
                mine.extend(theirs);
                Some(mine)
            }
            _ => None,
        };
        self
    }
}

/// An object a query's range may meet: its listing, and its footprint as far as the buckets
/// read hold it.
pub struct Candidate {
    /// The object's UID.
    pub uid: String,
    /// Its revision, Schedule-Tag and length.
    pub listed: Listed,
    /// Where its instances lie.
    pub footprint: Footprint,
}

/// A kept footprint: the listing of the object it was made from, then the footprint.
fn entry(listed: Listed, footprint: &Footprint) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&listed.revision.to_be_bytes());
    out.extend_from_slice(&listed.schedule_tag.to_be_bytes());
    out.extend_from_slice(&(listed.length as u64).to_be_bytes());
    out.extend_from_slice(&footprint.encode());
    out
}

fn read_entry(bytes: &[u8]) -> Option<(Listed, Footprint)> {
    let mut reader = Reader(bytes);
    let revision = u64::from_be_bytes(reader.take()?);
    let schedule_tag = u64::from_be_bytes(reader.take()?);
    let length = usize::try_from(u64::from_be_bytes(reader.take()?)).ok()?;
    let listed = Listed {
        revision,
        schedule_tag,
        length,
    };
    Some((listed, Footprint::decode(reader.0)?))
}

/// A lock per account on bringing its footprints up to date: one account's first query
/// after an import (seconds at 100,000 objects) keeps no other account's queries waiting.
#[derive(Default)]
pub struct Refreshing {
    accounts: std::sync::Mutex<HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>>,
}

impl Refreshing {
    fn of(&self, account: &str) -> std::sync::Arc<std::sync::Mutex<()>> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.entry(account.to_string()).or_default().clone()
    }
}

/// Brings an account's kept footprints up to date with its change log: each object written
/// since is made again (from the request's budget), each removed one forgotten. Progress is
/// kept even when the budget runs out first, so that the next request goes on from there.
/// Two requests do not do it for one account at once (`Refreshing`).
pub fn refresh(
    store: &dyn Store,
    account: &str,
    refreshing: &Refreshing,
    budget: &mut Budget,
) -> Result<Result<(), OverBudget>, StoreError> {
    let lock = refreshing.of(account);
    let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut position = store.footprint_position(account)?;
    let mut changes = store.changes_since(account, position)?;
    if position > changes.latest {
        // Filed past the end of the change log: the store was put back (its files restored
        // from a copy taken while it ran, the footprints' newer than the store's), and what is
        // filed describes objects it does not hold so. Forgotten, and filed from the start.
        forget_all(store, account)?;
        position = 0;
        changes = store.changes_since(account, position)?;
    }
    let mut made = Vec::new();
    let mut reached = changes.latest;
    for change in &changes.changed {
        if made.len() == KEPT_AT_ONCE {
            store.keep_footprints(account, change.id, &made)?;
            made.clear();
        }
        if budget.spent() {
            reached = change.id;
            break;
        }
        let object = match change.removed {
            true => None,
            false => store.get(account, &change.uid)?,
        };
        let filed = match &object {
            Some(object) => match filed(object, budget) {
                Some(filed) => filed,
                None => {
                    reached = change.id;
                    break;
                }
            },
            None => Vec::new(),
        };
        made.push((change.uid.clone(), filed));
    }
    if reached != position {
        store.keep_footprints(account, reached, &made)?;
    }
    Ok(match reached == changes.latest {
        true => Ok(()),
        false => Err(OverBudget),
    })
}

/// Forgets every object filed for the account (each has its listing filed), back to position 0.
fn forget_all(store: &dyn Store, account: &str) -> Result<(), StoreError> {
    let filed: Vec<Filed> = store
        .footprints_in(account, &[LISTING])?
        .into_iter()
        .map(|(uid, _)| (uid, Vec::new()))
        .collect();
    store.keep_footprints(account, 0, &filed)
}

/// An object's footprint, filed by bucket; none when the budget ran out first.
fn filed(object: &StoredObject, budget: &mut Budget) -> Option<Vec<(i64, Vec<u8>)>> {
    let listed = Listed {
        revision: object.revision,
        schedule_tag: object.schedule_tag,
        length: object.text.len(),
    };
    let footprint = match Parser::new(&object.text).entry() {
        Entry::ICalendar(calendar) => Footprint::of(&calendar, budget)?,
        // What does not parse matches nothing: it has no place in time.
        _ => Footprint::NONE,
    };
    let listing = Footprint {
        kinds: footprint.kinds,
        ..Footprint::NONE
    };
    let by_bucket = footprint.by_bucket();
    Some(
        by_bucket
            .iter()
            .map(|(bucket, part)| (*bucket, entry(listed, part)))
            .chain(std::iter::once((LISTING, entry(listed, &listing))))
            .collect(),
    )
}

/// The objects whose instances may meet `[from, until)`, by the footprints kept (brought up to
/// date first: see `refresh`); none when the range is too wide for the buckets, and the
/// caller reads every object instead.
pub fn candidates(
    store: &dyn Store,
    account: &str,
    (from, until): Span,
) -> Result<Option<Vec<Candidate>>, StoreError> {
    let read = buckets(from, until.saturating_sub(1));
    if read.end() - read.start() >= MAX_BUCKETS {
        return Ok(None);
    }
    let wanted: Vec<i64> = std::iter::once(EVERYWHERE).chain(read).collect();
    let mut filed = store.footprints_in(account, &wanted)?;
    // Each bucket comes in order of UID (on sled): a stable sort merges the runs, and an
    // object filed under several buckets lies in one stretch, made whole again there.
    filed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut candidates: Vec<Candidate> = Vec::with_capacity(filed.len());
    for (uid, bytes) in filed {
        let Some((listed, footprint)) = read_entry(&bytes) else {
            continue;
        };
        match candidates.last_mut() {
            Some(last) if last.uid == uid => {
                let earlier = std::mem::replace(&mut last.footprint, Footprint::NONE);
                last.footprint = earlier.merge(footprint);
                last.listed = listed;
            }
            _ => candidates.push(Candidate {
                uid,
                listed,
                footprint,
            }),
        }
    }
    Ok(Some(candidates))
}

/// Files what changed of each account at once, without a request's budget: after an import,
/// which the operator asked for, so that the first query or listing of the imported objects
/// does not file them a budget at a time.
pub fn file_at_once<'a>(
    store: &dyn Store,
    accounts: impl IntoIterator<Item = &'a str>,
    refreshing: &Refreshing,
) -> Result<(), StoreError> {
    let accounts: std::collections::BTreeSet<&str> = accounts.into_iter().collect();
    for account in accounts {
        let _ = refresh(store, account, refreshing, &mut Budget::unlimited())?;
    }
    Ok(())
}

/// Every object of the account with its listing, by UID, from what is filed: none when
/// bringing the filing up to date ran out of the budget (the store's own listing then reads
/// each object; the filing goes on from where it stopped).
pub fn listing(
    store: &dyn Store,
    account: &str,
    refreshing: &Refreshing,
    budget: &mut Budget,
) -> Result<Option<Vec<(String, Listed)>>, StoreError> {
    if refresh(store, account, refreshing, budget)?.is_err() {
        return Ok(None);
    }
    let mut listing: Vec<(String, Listed)> = store
        .footprints_in(account, &[LISTING])?
        .into_iter()
        .filter_map(|(uid, bytes)| Some((uid, read_entry(&bytes)?.0)))
        .collect();
    listing.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(listing))
}

/// The UIDs and texts of an account's objects whose instances may lie within `[from, until)`: what
/// free/busy reads (the others cannot make it busy). Every object's when the range is too
/// wide for the footprints' buckets, or their refresh ran out of the budget.
pub fn meeting(
    store: &dyn Store,
    account: &str,
    refreshing: &Refreshing,
    range: Span,
    budget: &mut Budget,
) -> Result<Vec<(String, String)>, StoreError> {
    let current = refresh(store, account, refreshing, budget)?.is_ok();
    let candidates = match current {
        true => candidates(store, account, range)?,
        false => None,
    };
    let Some(candidates) = candidates else {
        let all = store.list(account)?;
        return Ok(all.into_iter().map(|(uid, o)| (uid, o.text)).collect());
    };
    let mut texts = Vec::new();
    for candidate in candidates.iter().filter(|c| c.footprint.may_meet(range)) {
        if let Some(object) = store.get(account, &candidate.uid)? {
            texts.push((candidate.uid.clone(), object.text));
        }
    }
    Ok(texts)
}

impl Footprint {
    /// True when its span meets `[from, until)`.
    fn may_meet(&self, (from, until): Span) -> bool {
        self.span.is_some_and(|(s, e)| s < until && e > from)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The footprint of an object's text, with all the budget it needs.
    pub(in crate::http::dav) fn footprint(text: &str) -> Footprint {
        let Entry::ICalendar(calendar) = Parser::new(text).entry() else {
            panic!("not a calendar");
        };
        Footprint::of(&calendar, &mut Budget::unlimited()).expect("within the budget")
    }

    const ZONED: &str = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\n\
        DTSTART:20270301T100000Z\r\nDTEND:20270301T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\n\
        END:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn a_footprint_reads_back_as_itself() {
        for text in [
            ZONED,
            "BEGIN:VCALENDAR\r\nBEGIN:VTODO\r\nUID:t\r\nEND:VTODO\r\nEND:VCALENDAR\r\n",
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:f\r\nDTSTART:20270301T100000\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n",
        ] {
            let made = footprint(text);
            assert_eq!(Footprint::decode(&made.encode()), Some(made));
        }
        assert_eq!(Footprint::decode(&[1, 1, 3, 0]), None);
        assert_eq!(Footprint::decode(&[2, 1, 0]), None);
    }

    #[test]
    fn instances_are_exact_only_when_no_zone_moves_them() {
        let zoned = footprint(ZONED);
        let starts: Vec<i64> = zoned.instances(Some(EVENT)).unwrap().map(|s| s.0).collect();
        assert_eq!(starts, [1_803_895_200, 1_804_500_000, 1_805_104_800]);
        assert_eq!(zoned.instances(Some(TODO)).unwrap().count(), 0);
        assert!(zoned.holds(Some(EVENT)) && !zoned.holds(Some(TODO)));
        let floating = footprint(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:f\r\nDTSTART:20270301T100000\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n",
        );
        assert!(floating.instances(None).is_none());
        let all_day = footprint(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:d\r\nDTSTART;VALUE=DATE:20270301\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n",
        );
        assert!(all_day.instances(None).is_none());
        let endless = footprint(
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:e\r\nDTSTART:20270301T100000Z\r\n\
             RRULE:FREQ=DAILY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        );
        assert!(endless.instances(None).is_none());
        assert_eq!(endless.span.map(|s| s.1), Some(i64::MAX));
    }

    /// What the buckets a range meets hold of an object, merged, decides the range as the
    /// whole footprint does: no instance that meets the range is filed elsewhere.
    #[test]
    fn the_buckets_a_range_meets_hold_what_decides_it() {
        let texts = [
            ZONED.to_string(),
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:l\r\nDTSTART:20270220T100000Z\r\n\
             DTEND:20270510T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
                .to_string(),
            "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:z\r\nDTSTART:20270301T000000Z\r\n\
             RRULE:FREQ=DAILY;COUNT=90\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
                .to_string(),
        ];
        let texts: Vec<String> = texts.into_iter().chain(HOSTILE.map(String::from)).collect();
        let day = 86_400;
        let march = 1_803_859_200;
        for text in &texts {
            let whole = footprint(text);
            let filed = whole.by_bucket();
            for start in (march - 40 * day..march + 120 * day).step_by(day as usize / 2) {
                for length in [1, 3_600, day, 31 * day] {
                    let (from, until) = (start, start + length);
                    let mut read: Vec<i64> = buckets(from, until - 1).collect();
                    read.push(EVERYWHERE);
                    let merged = filed
                        .iter()
                        .filter(|(b, _)| read.contains(b))
                        .map(|(_, f)| f.clone())
                        .reduce(Footprint::merge);
                    let filter = super::super::query::Filter {
                        component: Some(ICalendarComponentType::VEvent),
                        range: Some((Some(from), Some(until))),
                        ..Default::default()
                    };
                    let expected = filter.decide(&whole);
                    let found = merged.map_or(Some(false), |m| filter.decide(&m));
                    // Filed without its instances, it leaves to the text what the whole decides.
                    assert!(
                        found.is_none() || found == expected,
                        "{from}..{until} {text}"
                    );
                }
            }
        }
    }

    /// A few lines of a stranger's mail that would file thousands of entries.
    const HOSTILE: [&str; 3] = [
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:m\r\nDTSTART:20270301T100000Z\r\n\
         RRULE:FREQ=MONTHLY;COUNT=1000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:c\r\nDTSTART:19000101T000000Z\r\n\
         DTEND:99990101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:y\r\nDTSTART;VALUE=DATE:19000101\r\n\
         RRULE:FREQ=YEARLY;COUNT=900\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    ];

    /// What an object files stays within `MAX_FILED_BUCKETS` entries and about `MAX_FILED`
    /// bytes, whatever its rules; a weekly series of a year is still filed with its instances.
    #[test]
    fn a_few_lines_file_a_few_entries() {
        for text in HOSTILE {
            let filed = footprint(text).by_bucket();
            let bytes: usize = filed.iter().map(|(_, f)| 8 + f.encode().len()).sum();
            assert!(
                filed.len() as i64 <= MAX_FILED_BUCKETS,
                "{} {text}",
                filed.len()
            );
            assert!(bytes as i64 <= MAX_FILED + 64 * 8, "{bytes} {text}");
        }
        let weekly = "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:w\r\nDTSTART:20270301T100000Z\r\n\
            DTEND:20270301T110000Z\r\nRRULE:FREQ=WEEKLY;COUNT=52\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
        let filed = footprint(weekly).by_bucket();
        assert!(filed.len() >= 13 && filed.iter().all(|(_, f)| f.exact.is_some()));
    }

    /// One account's filing holds its own lock, not another account's.
    #[test]
    fn each_account_is_filed_under_its_own_lock() {
        let refreshing = Refreshing::default();
        let alice = refreshing.of("alice");
        let held = alice.lock().unwrap();
        assert!(std::sync::Arc::ptr_eq(&alice, &refreshing.of("alice")));
        assert!(refreshing.of("bob").try_lock().is_ok());
        assert!(refreshing.of("alice").try_lock().is_err());
        drop(held);
    }
}
