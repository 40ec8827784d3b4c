//! How an organizer's REQUEST, ADD or CANCEL changes an attendee's copy: the instances it
//! carries applied over the rest of the series, the attendee's own answer, alarms and
//! exclusions kept, instances it is invited to again restored, what is cancelled marked so.

use super::Context;
use super::calendar::{
    Calendar, Component, InstanceKey, date_key, entry, param_addresses, set_param,
};
use super::changes::{Significance, classify};
use super::meaning::dates;
use super::zones::Zones;
use calcard::icalendar::{
    ICalendarComponentType, ICalendarEntry, ICalendarParameterName, ICalendarParameterValue,
    ICalendarParticipationStatus, ICalendarProperty, ICalendarStatus, ICalendarValue,
};
use std::collections::BTreeSet;

/// Applies the instances a REQUEST or ADD carries, keeping the rest of the series, the
/// recipient's alarms and, unless rescheduled, the recipient's own answer.
pub(super) fn merge_request(
    ctx: &Context,
    stored: &Calendar,
    message: &Calendar,
    full: bool,
) -> Calendar {
    let mut copy = stored.clone();
    copy.entries.retain(|e| e.name != ICalendarProperty::Method);
    let (tz_c, tz_m) = (stored.tz_resolver(), message.tz_resolver());
    let keys: BTreeSet<InstanceKey> = message
        .scheduling()
        .map(|c| c.instance_key(&tz_m))
        .collect();
    let restored = match full {
        true => restored_instances(stored, message),
        false => BTreeSet::new(),
    };
    let rescheduled = full
        && match (stored.master(), message.master()) {
            (Some(s), Some(m)) => {
                let mut m = m.clone();
                keep_own_exclusions(s, &tz_c, &mut m, &tz_m, &restored);
                classify(s, &tz_c, &m, &tz_m) == Significance::Reschedule
            }
            _ => false,
        };
    for m in message.scheduling() {
        let key = m.instance_key(&tz_m);
        let mut incoming = m.clone();
        let slot = copy
            .components
            .iter()
            .position(|c| c.is_scheduling() && c.instance_key(&tz_c) == key);
        match slot {
            Some(pos) => {
                let existing = &copy.components[pos];
                // A series that moved has none of the instances excluded at the old times.
                if key == InstanceKey::Master && !rescheduled {
                    keep_own_exclusions(existing, &tz_c, &mut incoming, &tz_m, &restored);
                }
                if !incoming
                    .children
                    .iter()
                    .any(|c| c.kind == ICalendarComponentType::VAlarm)
                {
                    incoming.children.extend(
                        existing
                            .children
                            .iter()
                            .filter(|c| c.kind == ICalendarComponentType::VAlarm)
                            .cloned(),
                    );
                }
                if classify(existing, &tz_c, &incoming, &tz_m) != Significance::Reschedule {
                    keep_own_answer(ctx, existing, &mut incoming);
                }
                copy.components[pos] = incoming;
            }
            None => copy.components.push(incoming),
        }
    }
    readmit_invited(ctx, &mut copy, message);
    copy.components
        .retain(|c| !c.is_scheduling() || !restored.contains(&c.instance_key(&tz_c)));
    if rescheduled {
        // The series moved: instances overridden for the old times no longer exist. An
        // instance cancelled for the recipient that the new series excludes stays cancelled:
        // should the organizer give it back, the cancellation tells its exclusion from the
        // recipient's own (`restored_instances`).
        let excluded = message
            .master()
            .map(|m| dates(m, &ICalendarProperty::Exdate, &tz_m))
            .unwrap_or_default();
        copy.components.retain(|c| {
            let key = c.instance_key(&tz_c);
            !c.is_scheduling()
                || keys.contains(&key)
                || (c.is_cancelled() && excluded.contains(&key))
        });
    }
    merge_timezones(&mut copy, message);
    if message.scheduling().any(super::range::this_and_future) {
        super::range::carry_forward(&mut copy);
    }
    copy
}

/// An instance the organizer now invites the recipient to is no longer excluded from the
/// series: an organizer leaves an attendee out of one instance by excluding it from the
/// series that attendee receives, and names it again by sending the instance.
fn readmit_invited(ctx: &Context, copy: &mut Calendar, message: &Calendar) {
    let (tz_c, tz_m) = (copy.tz_resolver(), message.tz_resolver());
    let invited: BTreeSet<InstanceKey> = message
        .scheduling()
        .filter(|m| m.prop(&ICalendarProperty::RecurrenceId).is_some() && !m.is_cancelled())
        .filter(|m| m.attendees().any(|(a, _)| ctx.is_mine(&a)))
        .map(|m| m.instance_key(&tz_m))
        .collect();
    let Some(master) = copy.master_mut() else {
        return;
    };
    for e in master
        .entries
        .iter_mut()
        .filter(|e| e.name == ICalendarProperty::Exdate)
    {
        let kept: Vec<_> = (0..e.values.len())
            .filter(|&i| !invited.contains(&date_key(e, i, &tz_c)))
            .map(|i| e.values[i].clone())
            .collect();
        e.values = kept;
    }
    master
        .entries
        .retain(|e| e.name != ICalendarProperty::Exdate || !e.values.is_empty());
}

/// A REQUEST that restates the series restates every instance the recipient is on (each one
/// overridden for it, or else in the series unless excluded): an instance cancelled earlier that
/// the organizer now neither sends nor excludes is back in the series (an override that had left
/// the recipient out, since removed). Its cancelled override goes, and so does the exclusion the
/// organizer's series had for it meanwhile, which the copy would otherwise keep as its own.
fn restored_instances(stored: &Calendar, message: &Calendar) -> BTreeSet<InstanceKey> {
    let (tz_s, tz_m) = (stored.tz_resolver(), message.tz_resolver());
    let Some(series) = message.master() else {
        return BTreeSet::new();
    };
    let sent: BTreeSet<InstanceKey> = message
        .scheduling()
        .map(|m| m.instance_key(&tz_m))
        .collect();
    let excluded = dates(series, &ICalendarProperty::Exdate, &tz_m);
    // Only a cancellation the series was sent after: a series delivered late restores nothing.
    let before_series =
        |c: &Component| matches!((c.dtstamp(), series.dtstamp()), (Some(a), Some(b)) if a <= b);
    stored
        .scheduling()
        .filter(|c| c.prop(&ICalendarProperty::RecurrenceId).is_some())
        .filter(|c| c.is_cancelled() && before_series(c))
        .map(|c| c.instance_key(&tz_s))
        .filter(|key| !sent.contains(key) && !excluded.contains(key))
        .collect()
}

/// Instances the recipient excluded (and so declined) stay excluded: the organizer's
/// message does not know about them (RFC 6638 section 3.2.2.1, item 8).
fn keep_own_exclusions(
    existing: &Component,
    tz_existing: &Zones,
    incoming: &mut Component,
    tz_incoming: &Zones,
    restored: &BTreeSet<InstanceKey>,
) {
    let known = dates(incoming, &ICalendarProperty::Exdate, tz_incoming);
    let mut own = Vec::new();
    for e in existing.props(&ICalendarProperty::Exdate) {
        let mut unknown = e.clone();
        unknown.values = (0..e.values.len())
            .filter(|&i| {
                let key = date_key(e, i, tz_existing);
                !known.contains(&key) && !restored.contains(&key)
            })
            .map(|i| e.values[i].clone())
            .collect();
        if !unknown.values.is_empty() {
            own.push(unknown);
        }
    }
    incoming.entries.extend(own);
}

fn keep_own_answer(ctx: &Context, existing: &Component, incoming: &mut Component) {
    for (address, mine) in existing.attendees().filter(|(a, _)| ctx.is_mine(a)) {
        let Some(value) = super::calendar::param(mine, &ICalendarParameterName::Partstat).cloned()
        else {
            continue;
        };
        let Some(theirs) = incoming.attendee_mut(&address) else {
            continue;
        };
        // A delegation the organizer no longer records is over: its request stands
        // (RFC 5546 4.2.7, the delegate declined and the delegator is asked again).
        let withdrawn = value
            == ICalendarParameterValue::Partstat(ICalendarParticipationStatus::Delegated)
            && param_addresses(theirs, &ICalendarParameterName::DelegatedTo).is_empty();
        if !withdrawn {
            set_param(theirs, ICalendarParameterName::Partstat, value);
        }
    }
}

fn merge_timezones(copy: &mut Calendar, message: &Calendar) {
    for tz in message.timezones() {
        let id = tz.text(&ICalendarProperty::Tzid);
        match copy.components.iter().position(|c| {
            c.kind == ICalendarComponentType::VTimezone && c.text(&ICalendarProperty::Tzid) == id
        }) {
            Some(pos) => copy.components[pos] = tz.clone(),
            None => copy.components.push(tz.clone()),
        }
    }
}

/// Marks what a CANCEL names as cancelled. A cancelled component takes the message's
/// values and loses its SEQUENCE, so whatever the organizer sends next supersedes it; a
/// CANCEL of the master cancels every instance with it.
pub(super) fn apply_cancel(stored: &Calendar, message: &Calendar) -> Calendar {
    let mut copy = stored.clone();
    let (tz_c, tz_m) = (stored.tz_resolver(), message.tz_resolver());
    let keys: BTreeSet<InstanceKey> = message
        .scheduling()
        .map(|c| c.instance_key(&tz_m))
        .collect();
    let cancelled = entry(
        ICalendarProperty::Status,
        ICalendarValue::Status(ICalendarStatus::Cancelled),
    );
    for m in message.scheduling() {
        match copy.instance_mut(&m.instance_key(&tz_m), &tz_c) {
            Some(existing) => {
                let names: BTreeSet<ICalendarProperty> =
                    m.entries.iter().map(|e| e.name.clone()).collect();
                // The same CANCEL again changes nothing; another CANCEL of a cancelled
                // component keeps its SEQUENCE as the first left it (the acceptance scenarios
                // drop it when a live component is cancelled, keep it when it is new).
                let again = existing.is_cancelled();
                let sequence = again && existing.prop(&ICalendarProperty::Sequence).is_some();
                if again
                    && m.entries
                        .iter()
                        .filter(|e| e.name != ICalendarProperty::Sequence)
                        .all(|e| existing.entries.contains(e))
                {
                    continue;
                }
                existing.entries.retain(|e| !names.contains(&e.name));
                existing.entries.extend(
                    m.entries
                        .iter()
                        .filter(|e| sequence || e.name != ICalendarProperty::Sequence)
                        .cloned(),
                );
                existing.set(cancelled.clone());
            }
            None => {
                let mut added = m.clone();
                added.set(cancelled.clone());
                copy.components.push(added);
            }
        }
    }
    if let Some(master) = message.master() {
        let attendees: Vec<ICalendarEntry> = master
            .props(&ICalendarProperty::Attendee)
            .cloned()
            .collect();
        for c in copy
            .scheduling_mut()
            .filter(|c| !keys.contains(&c.instance_key(&tz_c)))
        {
            c.set(cancelled.clone());
            c.remove(&ICalendarProperty::Attendee);
            c.entries.extend(attendees.iter().cloned());
        }
    }
    copy
}
