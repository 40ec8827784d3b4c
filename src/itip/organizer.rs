//! Implicit scheduling for the organizer's writes (RFC 6638 sections 3.2.1 and 3.2.8).

use super::address::CalAddress;
use super::build::{Cancellation, cancel_component, forces, outgoing, strip_force_send};
use super::calendar::{Calendar, Component, InstanceKey, param_text, same_lines, set_param};
use super::changes::{Significance, classify};
use super::message::{ItipMessage, Method, envelope};
use super::object::{Agent, recipients, recipients_of};
use super::summary::{Summary, SummaryKind};
use super::zones::Zones;
use super::{Context, DeleteOutcome, PutOutcome};
use calcard::icalendar::{
    ICalendarParameterName, ICalendarParameterValue, ICalendarParticipationStatus,
    ICalendarProperty,
};
use std::collections::{BTreeMap, BTreeSet};

/// Where a cancelled component comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CancelOf {
    /// An instance now marked STATUS:CANCELLED, sent to all its attendees.
    Cancelled(InstanceKey),
    /// The recipient was removed from a component that remains.
    Removed(InstanceKey),
    /// The component itself is gone.
    Gone(InstanceKey),
    /// A new override of this instance leaves out the recipient, who stays on the series:
    /// to them the instance is cancelled (RFC 6638 3.2.1.2 compares per instance).
    Dropped(InstanceKey),
}

#[derive(Default)]
struct Mailing {
    requests: BTreeMap<CalAddress, (bool, BTreeSet<InstanceKey>)>,
    adds: BTreeMap<CalAddress, BTreeSet<InstanceKey>>,
    cancels: BTreeMap<CalAddress, BTreeSet<CancelOf>>,
}

impl Mailing {
    fn request(&mut self, to: &CalAddress, invite: bool, key: &InstanceKey) {
        let slot = self
            .requests
            .entry(to.clone())
            .or_insert((invite, BTreeSet::new()));
        slot.0 &= invite;
        slot.1.insert(key.clone());
    }

    fn cancel(&mut self, to: &CalAddress, what: CancelOf) {
        self.cancels.entry(to.clone()).or_default().insert(what);
    }
}

/// The organizer stores a new version of its object.
/// `old` and `new` come with their instances' keys, in their order (`object::inspect`).
pub fn put(
    ctx: &Context,
    old: Option<(&Calendar, &[InstanceKey])>,
    (mut new, keys): (Calendar, Vec<InstanceKey>),
    organizer: &CalAddress,
    agent: Agent,
) -> PutOutcome {
    if agent != Agent::Server {
        strip_force_send(&mut new);
        return PutOutcome::silent(new, super::ItipError::OtherSchedulingAgent);
    }
    // A change of this and every later instance reaches the later overrides too, and the
    // attendees get it as such: the range override and the overrides it changed.
    super::range::carry_forward(&mut new);
    let tz_new = new.tz_resolver();
    let tz_old = old
        .map(|(o, _)| o.tz_resolver())
        .unwrap_or_else(|| new.tz_resolver());
    let old_map: BTreeMap<InstanceKey, &Component> = old
        .map(|(o, keys)| keys.iter().cloned().zip(o.scheduling()).collect())
        .unwrap_or_default();
    let old = old.map(|(o, _)| o);
    // Carrying forward and stamping change no RECURRENCE-ID: the keys read before still hold.
    debug_assert_eq!(
        keys,
        (new.scheduling().map(|c| c.instance_key(&tz_new))).collect::<Vec<_>>()
    );
    let (changes, forced) = stamp(&mut new, &keys, (&old_map, &tz_old), &tz_new, organizer);
    strip_force_send(&mut new);

    let (named, was_named) = rosters(&new, keys, &old_map, organizer);
    let versions = Versions {
        old_map: &old_map,
        new: &new,
        changes,
        forced,
        named,
        was_named,
        ranged: new.scheduling().any(super::range::this_and_future),
    };
    let plan = match old_map.is_empty() {
        true => versions.invitations(),
        false => versions.updates(),
    };
    let new_by_key = versions
        .named
        .iter()
        .map(|(key, _)| key.clone())
        .zip(new.scheduling())
        .collect();
    let messages = render(
        ctx,
        &plan,
        new_by_key,
        (old, &tz_old),
        (&new, &tz_new),
        &old_map,
        organizer,
    );
    let silent = messages
        .is_empty()
        .then_some(super::ItipError::NothingToSend);
    PutOutcome {
        stored: new,
        messages,
        silent,
    }
}

type Forced = BTreeSet<(InstanceKey, CalAddress)>;

/// The recipients of each new component (in their order, under the keys given) and of each old
/// one: an old component's list is the new one's when its ATTENDEE lines are the same.
fn rosters(
    new: &Calendar,
    keys: Vec<InstanceKey>,
    old_map: &BTreeMap<InstanceKey, &Component>,
    organizer: &CalAddress,
) -> (Vec<(InstanceKey, Roster)>, BTreeMap<InstanceKey, Roster>) {
    let mut named: Vec<(InstanceKey, Roster)> = Vec::with_capacity(keys.len());
    let mut previous: Option<&Component> = None;
    for (key, c) in keys.into_iter().zip(new.scheduling()) {
        // Overrides mostly name whom the series names, in the same lines: the roster read
        // for the one before serves, without reading each address again.
        let roster = match (previous, named.last()) {
            (Some(p), Some((_, last))) if Roster::same_lines(p, c) => last.clone(),
            _ => Roster::of(c, organizer),
        };
        named.push((key, roster));
        previous = Some(c);
    }
    let was_named = old_map
        .iter()
        .map(|(key, before)| {
            let unchanged = named
                .iter()
                .zip(new.scheduling())
                .find(|((k, _), now)| k == key && Roster::same_lines(before, now));
            let roster = match unchanged {
                Some(((_, roster), _)) => roster.clone(),
                None => Roster::of(before, organizer),
            };
            (key.clone(), roster)
        })
        .collect();
    (named, was_named)
}

/// Server-side changes to the stored copy (SEQUENCE, PARTSTAT resets on a reschedule); what
/// changed in each instance, and the sends its SCHEDULE-FORCE-SEND parameters ask for.
fn stamp(
    new: &mut Calendar,
    keys: &[InstanceKey],
    (old_map, tz_old): (&BTreeMap<InstanceKey, &Component>, &Zones),
    tz_new: &Zones,
    organizer: &CalAddress,
) -> (BTreeMap<InstanceKey, Significance>, Forced) {
    let old_master_seq = old_map
        .get(&InstanceKey::Master)
        .map(|c| c.sequence())
        .unwrap_or(0);
    let mut changes = BTreeMap::new();
    let mut forced = Forced::new();
    for (comp, key) in new.scheduling_mut().zip(keys) {
        let forcing = comp
            .props(&ICalendarProperty::Attendee)
            .filter(|e| forces(e, "REQUEST"))
            .filter_map(super::calendar::entry_address);
        for address in forcing {
            forced.insert((key.clone(), address));
        }
        let seq = match old_map.get(key) {
            Some(before) => {
                let before = match comp.prop(&ICalendarProperty::Dtstart) {
                    Some(_) => in_full(before, old_map.get(&InstanceKey::Master), tz_old),
                    None => std::borrow::Cow::Borrowed(*before),
                };
                let change = classify(&before, tz_old, comp, tz_new);
                if change == Significance::Reschedule {
                    reset_partstats(comp, organizer);
                }
                changes.insert(key.clone(), change);
                comp.sequence().max(before.sequence()) + i64::from(change != Significance::None)
            }
            None => comp.sequence().max(old_master_seq) + 1,
        };
        comp.set_sequence(seq);
    }
    // An override removed gives its instance back to the series, which then must be as new as
    // the override was (RFC 5546 2.1.5 compares per instance): else an update of the override
    // delivered late would pass for newer than the series that replaced it.
    let removed = old_map
        .iter()
        .filter(|(k, _)| **k != InstanceKey::Master && !changes.contains_key(*k))
        .filter(|(k, _)| new.instance(k, tz_new).is_none())
        .map(|(_, c)| c.sequence())
        .max();
    // At least as new: equal SEQUENCE and a later DTSTAMP is newer, and the acceptance
    // scenarios number the series this way (rfc5546-event-recurring.txt:733).
    if let (Some(removed), Some(master)) = (removed, new.master_mut())
        && master.sequence() < removed
    {
        master.set_sequence(removed);
    }
    (changes, forced)
}

/// An override as the instance it stands for: one that only records answers (made from a
/// REPLY, as the acceptance scenarios keep it: no DTSTART) takes the series' properties at that
/// instance, so that a client writing the instance out in full changes nothing by it (it was
/// taken for a reschedule: the answers asked again and SEQUENCE raised). Used only against a
/// write that has the instance's DTSTART: one as bare as the override compares as it is.
fn in_full<'a>(
    before: &'a Component,
    master: Option<&&Component>,
    tz: &Zones,
) -> std::borrow::Cow<'a, Component> {
    let (Some(rid), Some(master)) = (before.prop(&ICalendarProperty::RecurrenceId), master) else {
        return std::borrow::Cow::Borrowed(before);
    };
    if before.prop(&ICalendarProperty::Dtstart).is_some() {
        return std::borrow::Cow::Borrowed(before);
    }
    let mut full = master.override_of(rid, tz);
    let own: BTreeSet<&ICalendarProperty> = before.entries.iter().map(|e| &e.name).collect();
    full.entries.retain(|e| !own.contains(&e.name));
    full.entries.extend(before.entries.iter().cloned());
    std::borrow::Cow::Owned(full)
}

/// The object before and after a write, as the mailing plan reads it.
struct Versions<'a> {
    old_map: &'a BTreeMap<InstanceKey, &'a Component>,
    new: &'a Calendar,
    changes: BTreeMap<InstanceKey, Significance>,
    forced: Forced,
    /// Each new component's recipients, in the order of the components, and each old one's:
    /// read once, as every step of the plan asks (lists run to `limits.max_attendees`).
    named: Vec<(InstanceKey, Roster)>,
    was_named: BTreeMap<InstanceKey, Roster>,
    ranged: bool,
}

/// The recipients of one component, sorted.
#[derive(Clone)]
struct Roster(Vec<CalAddress>);

static NOBODY: Roster = Roster(Vec::new());

impl Roster {
    fn of(comp: &Component, organizer: &CalAddress) -> Self {
        // Room for every line at once: no list grown step by step for each component.
        let mut all = Vec::with_capacity(comp.entries.len());
        all.extend(recipients_of(comp, organizer, false));
        all.sort();
        all.dedup();
        Roster(all)
    }

    /// True when two components' ATTENDEE lines name the same recipients, written the same
    /// way (an instance whose list did not change, as most updates leave it): the old one's
    /// roster is then the new one's, without reading an address again.
    fn same_lines(a: &Component, b: &Component) -> bool {
        same_lines(
            a,
            b,
            &[ICalendarProperty::Attendee],
            &ICalendarParameterName::ScheduleAgent,
        )
    }

    fn contains(&self, a: &CalAddress) -> bool {
        self.0.binary_search(a).is_ok()
    }

    fn iter(&self) -> std::slice::Iter<'_, CalAddress> {
        self.0.iter()
    }
}

impl Versions<'_> {
    fn was_named(&self, key: &InstanceKey) -> &Roster {
        self.was_named.get(key).unwrap_or(&NOBODY)
    }

    /// The new version's series' recipients.
    fn master_named(&self) -> Option<&Roster> {
        self.named
            .iter()
            .find(|(key, _)| *key == InstanceKey::Master)
            .map(|(_, on)| on)
    }

    /// The components that name an attendee: each hears of those (RFC 5546 3.2.2.1; `render`
    /// excludes from the series the overrides that leave it out). A range override restates
    /// the series from its instance on: the two travel together to everyone (as the acceptance
    /// scenarios have it), as no exclusion can stand for it.
    fn naming<'s>(&'s self, a: &'s CalAddress) -> impl Iterator<Item = &'s InstanceKey> {
        self.named
            .iter()
            .filter(move |(_, on)| self.ranged || on.contains(a))
            .map(|(key, _)| key)
    }

    /// True when a SCHEDULE-FORCE-SEND asks for a REQUEST to `a` for this instance (rare:
    /// no key is made to look it up when nothing is forced).
    fn forces(&self, key: &InstanceKey, a: &CalAddress) -> bool {
        !self.forced.is_empty() && self.forced.contains(&(key.clone(), a.clone()))
    }

    fn was_invited(&self, a: &CalAddress) -> bool {
        self.old_map.values().any(|c| c.attendee(a).is_some())
    }

    /// A new object: an invitation to everyone on any part of it.
    fn invitations(&self) -> Mailing {
        let mut plan = Mailing::default();
        let everyone: BTreeSet<&CalAddress> =
            self.named.iter().flat_map(|(_, on)| on.iter()).collect();
        for a in everyone {
            plan.requests
                .insert(a.clone(), (true, self.naming(a).cloned().collect()));
        }
        plan
    }

    /// A new version of a stored object, compared instance by instance (RFC 6638 3.2.1.2).
    fn updates(&self) -> Mailing {
        let mut plan = Mailing::default();
        for ((key, now_r), comp) in self.named.iter().zip(self.new.scheduling()) {
            match self.old_map.get(key) {
                Some(before) => self.changed_instance(&mut plan, key, (before, comp), now_r),
                None => self.new_instance(&mut plan, key, comp, now_r),
            }
        }
        self.removed_instances(&mut plan);
        // A REQUEST that touches the master restates all of the object that names them.
        for (a, (_, keys)) in plan.requests.iter_mut() {
            if keys.contains(&InstanceKey::Master) {
                for key in self.naming(a) {
                    if !keys.contains(key) {
                        keys.insert(key.clone());
                    }
                }
            }
        }
        plan
    }

    fn changed_instance(
        &self,
        plan: &mut Mailing,
        key: &InstanceKey,
        (before, comp): (&Component, &Component),
        now_r: &Roster,
    ) {
        let was_r = self.was_named(key);
        // Most updates keep the list: then nobody is removed or new.
        let same = was_r.0 == now_r.0;
        for a in was_r.iter().filter(|a| !same && !now_r.contains(a)) {
            plan.cancel(a, CancelOf::Removed(key.clone()));
        }
        if comp.is_cancelled() && !before.is_cancelled() {
            for a in now_r.iter() {
                plan.cancel(a, CancelOf::Cancelled(key.clone()));
            }
            return;
        }
        let changed = self
            .changes
            .get(key)
            .is_some_and(|c| *c != Significance::None);
        for a in now_r.iter() {
            if !same && !was_r.contains(a) {
                plan.request(a, !self.was_invited(a), key);
            } else if changed || self.forces(key, a) {
                plan.request(a, false, key);
            }
        }
    }

    /// An override of an instance that had none: those it names get it; those on the series
    /// it leaves out are told that instance is cancelled for them.
    fn new_instance(
        &self,
        plan: &mut Mailing,
        key: &InstanceKey,
        comp: &Component,
        now_r: &Roster,
    ) {
        if comp.is_cancelled() {
            for a in now_r.iter() {
                plan.cancel(a, CancelOf::Cancelled(key.clone()));
            }
            return;
        }
        let series_r = self.was_named(&InstanceKey::Master);
        let stays = self.master_named();
        for a in series_r
            .iter()
            .filter(|a| !now_r.contains(a) && stays.is_some_and(|s| s.contains(a)))
        {
            plan.cancel(a, CancelOf::Dropped(key.clone()));
        }
        for a in now_r.iter() {
            if self.was_invited(a) {
                plan.adds.entry(a.clone()).or_default().insert(key.clone());
            } else {
                plan.request(a, true, key);
            }
        }
    }

    /// Overrides gone: their instances are the series' again, which everyone on the series
    /// gets (also those the override had left out); the others lose them.
    fn removed_instances(&self, plan: &mut Mailing) {
        let master_r = self.master_named().unwrap_or(&NOBODY);
        for (key, before_r) in self
            .was_named
            .iter()
            .filter(|(k, _)| !self.named.iter().any(|(key, _)| key == *k))
        {
            for a in master_r.iter() {
                plan.request(a, false, &InstanceKey::Master);
            }
            for a in before_r.iter().filter(|a| !master_r.contains(a)) {
                plan.cancel(a, CancelOf::Gone(key.clone()));
            }
        }
    }
}

fn render<'a>(
    ctx: &'a Context,
    plan: &Mailing,
    new_by_key: BTreeMap<InstanceKey, &'a Component>,
    (old, tz_old): (Option<&Calendar>, &Zones),
    (new, tz_new): (&Calendar, &Zones),
    old_map: &BTreeMap<InstanceKey, &Component>,
    organizer: &CalAddress,
) -> Vec<ItipMessage> {
    let r = Rendering {
        new_by_key,
        ctx,
        old,
        tz_old,
        new,
        tz_new,
        old_map,
        organizer,
        new_first: new.master().or_else(|| new.scheduling().next()),
        old_first: old.and_then(|o| o.master().or_else(|| o.scheduling().next())),
    };
    let mut messages = r.requests(&plan.requests);
    messages.extend(r.adds(&plan.adds));
    messages.extend(r.cancels(&plan.cancels));
    messages
}

/// Recipients with the same parts get one message. The parts are borrowed from the plan, and
/// the recipients come from it in order, each once: each group's list is sorted.
fn grouped<'p, K: Ord>(
    by: impl IntoIterator<Item = (K, &'p CalAddress)>,
) -> BTreeMap<K, Vec<CalAddress>> {
    let mut groups: BTreeMap<K, Vec<CalAddress>> = BTreeMap::new();
    for (k, a) in by {
        groups.entry(k).or_default().push(a.clone());
    }
    groups
}

struct Rendering<'a> {
    /// The new version's components by instance, resolved once.
    new_by_key: BTreeMap<InstanceKey, &'a Component>,
    ctx: &'a Context<'a>,
    old: Option<&'a Calendar>,
    tz_old: &'a Zones,
    new: &'a Calendar,
    tz_new: &'a Zones,
    old_map: &'a BTreeMap<InstanceKey, &'a Component>,
    organizer: &'a CalAddress,
    new_first: Option<&'a Component>,
    old_first: Option<&'a Component>,
}

impl<'a> Rendering<'a> {
    fn new_comp(&self, key: &InstanceKey) -> Option<&'a Component> {
        self.new_by_key.get(key).copied()
    }

    fn message(
        &self,
        method: Method,
        to: Vec<CalAddress>,
        summary: Summary,
        comps: Vec<Component>,
        source: &Calendar,
    ) -> ItipMessage {
        message(self.ctx, method, self.organizer, to, summary, comps, source)
    }

    fn requests(
        &self,
        requests: &BTreeMap<CalAddress, (bool, BTreeSet<InstanceKey>)>,
    ) -> Vec<ItipMessage> {
        let groups = grouped(
            requests
                .iter()
                .map(|(a, (invite, keys))| ((!*invite, keys), a)),
        );
        let mut messages = Vec::new();
        for ((update, keys), to) in groups {
            let whole = keys.contains(&InstanceKey::Master);
            let comps = keys
                .iter()
                .filter_map(|k| Some((k, self.new_comp(k)?)))
                .map(|(k, c)| {
                    let mut out = outgoing(c, self.ctx.now);
                    if whole && *k == InstanceKey::Master {
                        exclude_left_out(&mut out, &self.new_by_key, keys);
                    }
                    out
                })
                .collect();
            // Those invited to some instances only read about the first of them.
            let (first, previous) = match keys.iter().find(|k| self.new_comp(k).is_some()) {
                Some(k) if !whole => (self.new_comp(k), self.old_map.get(k).copied()),
                _ => (self.new_first, self.old_first),
            };
            let summary = match update {
                true => Summary::of_change(
                    SummaryKind::Update(Method::Request),
                    (first, self.tz_new),
                    (previous, self.tz_old),
                ),
                false => Summary::of(SummaryKind::Invite, first, self.tz_new, true),
            };
            messages.push(self.message(Method::Request, to, summary, comps, self.new));
        }
        messages
    }

    fn adds(&self, adds: &BTreeMap<CalAddress, BTreeSet<InstanceKey>>) -> Vec<ItipMessage> {
        let groups = grouped(adds.iter().map(|(a, keys)| (keys, a)));
        let mut messages = Vec::new();
        for (keys, to) in groups {
            let comps = keys
                .iter()
                .filter_map(|k| self.new_comp(k))
                .map(|c| outgoing(c, self.ctx.now))
                .collect();
            let summary = Summary::of_change(
                SummaryKind::Update(Method::Add),
                (self.new_first, self.tz_new),
                (self.old_first, self.tz_old),
            );
            messages.push(self.message(Method::Add, to, summary, comps, self.new));
        }
        messages
    }

    fn cancels(&self, cancels: &BTreeMap<CalAddress, BTreeSet<CancelOf>>) -> Vec<ItipMessage> {
        let groups = grouped(cancels.iter().map(|(a, parts)| (parts, a)));
        let mut messages = Vec::new();
        for (parts, to) in groups {
            let comps = parts
                .iter()
                .filter_map(|part| self.cancel_part(part, &to))
                .collect();
            // The acceptance scenarios describe an instance's CANCEL (and ADD) by its series.
            let first = self.old_first.or(self.new_first);
            let summary = Summary::of(SummaryKind::Cancel, first, self.tz_old, true);
            let source = self.old.unwrap_or(self.new);
            messages.push(self.message(Method::Cancel, to, summary, comps, source));
        }
        messages
    }

    fn cancel_part(&self, part: &CancelOf, only: &[CalAddress]) -> Option<Component> {
        let now = self.ctx.now;
        let cancelled = Cancellation::Component(Some(only));
        match part {
            CancelOf::Cancelled(k) => self
                .new_comp(k)
                .map(|c| cancel_component(c, c.sequence(), now, cancelled)),
            CancelOf::Dropped(k) => self.new_comp(k).map(|c| {
                let mut out = cancel_component(c, c.sequence(), now, cancelled);
                let series = self.old_map.get(&InstanceKey::Master);
                out.entries.extend(only.iter().filter_map(|a| {
                    let mut e = series.and_then(|m| m.attendee(a))?.clone();
                    super::build::strip_schedule_params(&mut e);
                    Some(e)
                }));
                out
            }),
            CancelOf::Removed(k) => {
                let seq = self.new_comp(k).map(|c| c.sequence());
                self.old_map.get(k).map(|o| {
                    let seq = seq.unwrap_or(o.sequence() + 1);
                    cancel_component(o, seq, now, Cancellation::Uninvite(only))
                })
            }
            // The instance is gone for them: to its attendees the whole of what they were
            // invited to is cancelled.
            CancelOf::Gone(k) => self
                .old_map
                .get(k)
                .map(|o| cancel_component(o, o.sequence() + 1, now, cancelled)),
        }
    }
}

/// The series as sent to attendees some overrides leave out: those instances excluded, as
/// the recipients have no part in them (RFC 5545 3.8.5.1).
fn exclude_left_out(
    master: &mut Component,
    new_by_key: &BTreeMap<InstanceKey, &Component>,
    keys: &BTreeSet<InstanceKey>,
) {
    let exdates: Vec<_> = new_by_key
        .iter()
        .filter(|(key, _)| !keys.contains(key))
        .filter_map(|(_, c)| c.prop(&ICalendarProperty::RecurrenceId))
        .map(|rid| {
            let mut e = rid.clone();
            e.name = ICalendarProperty::Exdate;
            super::calendar::remove_param(&mut e, &ICalendarParameterName::Range);
            e
        })
        .collect();
    master.entries.extend(exdates);
}

fn message(
    ctx: &Context,
    method: Method,
    from: &CalAddress,
    to: impl IntoIterator<Item = CalAddress>,
    summary: Summary,
    comps: Vec<Component>,
    source: &Calendar,
) -> ItipMessage {
    ItipMessage {
        method,
        from: from.clone(),
        to: to.into_iter().collect(),
        summary,
        calendar: envelope(method, ctx.prodid, comps, source),
    }
}

/// RFC 6638 section 3.2.8: a reschedule asks every attendee but the organizer again.
fn reset_partstats(comp: &mut Component, organizer: &CalAddress) {
    for e in comp.entries.iter_mut() {
        if e.name != calcard::icalendar::ICalendarProperty::Attendee
            || super::calendar::entry_address(e).as_ref() == Some(organizer)
            || Agent::of(e) != Agent::Server
        {
            continue;
        }
        if param_text(e, &ICalendarParameterName::Partstat).is_some_and(|p| p != "NEEDS-ACTION") {
            set_param(
                e,
                ICalendarParameterName::Partstat,
                ICalendarParameterValue::Partstat(ICalendarParticipationStatus::NeedsAction),
            );
        }
    }
}

/// The organizer removes its object: CANCEL to everyone (RFC 6638 section 3.2.1.3).
pub fn delete(
    ctx: &Context,
    old: &Calendar,
    organizer: &CalAddress,
    agent: Agent,
    force: bool,
) -> DeleteOutcome {
    if agent != Agent::Server && !force {
        return DeleteOutcome::silent(super::ItipError::OtherSchedulingAgent);
    }
    let tz = old.tz_resolver();
    let master = old.master();
    let master_r = master
        .map(|m| recipients(m, organizer, force))
        .unwrap_or_default();
    let mut groups: BTreeMap<Vec<InstanceKey>, BTreeSet<CalAddress>> = BTreeMap::new();
    for a in &master_r {
        groups
            .entry(vec![InstanceKey::Master])
            .or_default()
            .insert(a.clone());
    }
    let mut only_instances: BTreeMap<CalAddress, Vec<InstanceKey>> = BTreeMap::new();
    for comp in old
        .scheduling()
        .filter(|c| c.instance_key(&tz) != InstanceKey::Master)
    {
        for a in recipients(comp, organizer, force)
            .into_iter()
            .filter(|a| !master_r.contains(a))
        {
            only_instances
                .entry(a)
                .or_default()
                .push(comp.instance_key(&tz));
        }
    }
    for (a, keys) in only_instances {
        groups.entry(keys).or_default().insert(a);
    }
    let first = master.or_else(|| old.scheduling().next());
    let messages: Vec<ItipMessage> = groups
        .into_iter()
        .map(|(keys, to)| {
            let comps = keys
                .iter()
                .filter_map(|k| old.instance(k, &tz))
                .map(|c| {
                    cancel_component(c, c.sequence() + 1, ctx.now, Cancellation::Component(None))
                })
                .collect();
            let summary = Summary::of(SummaryKind::Cancel, first, &tz, false);
            message(ctx, Method::Cancel, organizer, to, summary, comps, old)
        })
        .collect();
    let silent = messages
        .is_empty()
        .then_some(super::ItipError::NothingToSend);
    DeleteOutcome { messages, silent }
}
