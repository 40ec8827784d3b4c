//! Implicit scheduling for an attendee's writes (RFC 6638 sections 3.2.2 and 8.1).

use super::address::CalAddress;
use super::build::{
    attendee_with_partstat, forces, outgoing, partstat_of, strip_force_send, strip_schedule_params,
};
use super::calendar::{Calendar, Component, InstanceKey, address_entry, date_key, param_addresses};
use super::changes::{by_name, canonical, is_private};
use super::error::ItipError;
use super::message::{ItipMessage, Method, envelope};
use super::object::Agent;
use super::summary::{Summary, SummaryKind};
use super::zones::Zones;
use super::{Context, DeleteOutcome, PutOutcome};
use calcard::icalendar::{
    ICalendarComponentType, ICalendarEntry, ICalendarParameterName, ICalendarParticipationStatus,
    ICalendarProperty, ICalendarValue,
};
use std::collections::{BTreeMap, BTreeSet};

/// The attendee stores a new version of its copy.
pub fn put(
    ctx: &Context,
    old: Option<&Calendar>,
    mut new: Calendar,
    me: &CalAddress,
    organizer: &CalAddress,
    agent: Agent,
) -> Result<PutOutcome, ItipError> {
    if agent != Agent::Server {
        strip_force_send(&mut new);
        return Ok(PutOutcome::silent(new, ItipError::OtherSchedulingAgent));
    }
    let tz_new = new.tz_resolver();
    let tz_old = old
        .map(|o| o.tz_resolver())
        .unwrap_or_else(|| new.tz_resolver());
    let old_map: BTreeMap<InstanceKey, &Component> = old
        .map(|o| {
            o.scheduling()
                .map(|c| (c.instance_key(&tz_old), c))
                .collect()
        })
        .unwrap_or_default();
    if !old_map.is_empty() {
        validate(&old_map, &new, me, &tz_new)?;
    }
    let force = new
        .scheduling()
        .filter_map(|c| c.prop(&ICalendarProperty::Organizer))
        .any(|e| forces(e, "REPLY"));

    let old_master = old_map.get(&InstanceKey::Master).copied();
    let mut parts = Vec::new();
    for comp in new.scheduling() {
        let Some(mine) = comp.attendee(me) else {
            continue;
        };
        let key = comp.instance_key(&tz_new);
        let before = old_map.get(&key).copied().or(old_master);
        let changed = force
            || match before.and_then(|b| b.attendee(me).map(|e| (b, e))) {
                Some((b, theirs)) => reply_state(b, theirs) != reply_state(comp, mine),
                None => partstat_of(mine) != "NEEDS-ACTION",
            };
        if changed {
            parts.push(reply_component(comp, me, ctx.now));
        }
    }
    // An EXDATE the attendee adds declines that instance (RFC 6638 section 3.2.2.3).
    if let (Some(now_master), Some(was_master)) = (new.master(), old_master) {
        let was: BTreeSet<InstanceKey> = exdates(was_master, &tz_old)
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        for (key, e, index) in exdates(now_master, &tz_new) {
            if !was.contains(&key) {
                parts.push(exdate_decline(now_master, e, index, me, organizer, ctx.now));
            }
        }
    }

    let mut messages = Vec::new();
    if !parts.is_empty() {
        let first = new.master().or_else(|| new.scheduling().next());
        let partstat = parts
            .first()
            .and_then(|p| p.attendee(me))
            .map(partstat_of)
            .unwrap_or_else(|| "NEEDS-ACTION".into());
        let summary = Summary::of(SummaryKind::Rsvp(partstat), first, &tz_new, false);
        let mut to: BTreeSet<CalAddress> = BTreeSet::from([organizer.clone()]);
        to.extend(delegators(&new, me));
        messages.push(ItipMessage {
            method: Method::Reply,
            from: me.clone(),
            to: to.into_iter().collect(),
            summary,
            calendar: envelope(Method::Reply, ctx.prodid, parts, &new),
        });
    }
    // Delegation forwards the invitation to the delegates (RFC 5546 section 3.2.2.3).
    let before: BTreeSet<CalAddress> = old_map.values().flat_map(|c| delegates(c, me)).collect();
    let fresh: BTreeSet<CalAddress> = new
        .scheduling()
        .flat_map(|c| delegates(c, me))
        .filter(|d| !before.contains(d) && d != organizer && d != me)
        .collect();
    if !fresh.is_empty() {
        let comps = new.scheduling().map(|c| outgoing(c, ctx.now)).collect();
        let first = new.master().or_else(|| new.scheduling().next());
        messages.push(ItipMessage {
            method: Method::Request,
            from: me.clone(),
            to: fresh.into_iter().collect(),
            summary: Summary::of(SummaryKind::Invite, first, &tz_new, true),
            calendar: envelope(Method::Request, ctx.prodid, comps, &new),
        });
    }
    strip_force_send(&mut new);
    let silent = messages.is_empty().then_some(ItipError::NothingToSend);
    Ok(PutOutcome {
        stored: new,
        messages,
        silent,
    })
}

/// The attendee removes its copy: it declines (RFC 6638 section 3.2.2.4), unless the
/// client said `Schedule-Reply: F`.
pub fn delete(
    ctx: &Context,
    old: &Calendar,
    me: &CalAddress,
    organizer: &CalAddress,
    agent: Agent,
    suppress: bool,
) -> DeleteOutcome {
    if agent != Agent::Server {
        return DeleteOutcome::silent(ItipError::OtherSchedulingAgent);
    }
    if suppress {
        return DeleteOutcome::silent(ItipError::NothingToSend);
    }
    let tz = old.tz_resolver();
    let mine: Vec<&Component> = match old.master().filter(|m| m.attendee(me).is_some()) {
        Some(m) => vec![m],
        None => old
            .scheduling()
            .filter(|c| c.attendee(me).is_some())
            .collect(),
    };
    let parts: Vec<Component> = mine
        .into_iter()
        .filter(|c| c.attendee(me).is_some_and(|e| partstat_of(e) != "DECLINED"))
        .map(|c| decline_component(c, me, ctx.now))
        .collect();
    if parts.is_empty() {
        return DeleteOutcome::silent(ItipError::NothingToSend);
    }
    let first = old.master().or_else(|| old.scheduling().next());
    let mut to: BTreeSet<CalAddress> = BTreeSet::from([organizer.clone()]);
    to.extend(delegators(old, me));
    DeleteOutcome {
        messages: vec![ItipMessage {
            method: Method::Reply,
            from: me.clone(),
            to: to.into_iter().collect(),
            summary: Summary::of(SummaryKind::Rsvp("DECLINED".into()), first, &tz, false),
            calendar: envelope(Method::Reply, ctx.prodid, parts, old),
        }],
        silent: None,
    }
}

/// What an attendee's REPLY reports: participation, delegation and, for to-dos, progress.
fn reply_state(
    comp: &Component,
    mine: &ICalendarEntry,
) -> (String, BTreeSet<CalAddress>, Vec<String>) {
    let progress = if comp.kind == ICalendarComponentType::VTodo {
        [
            ICalendarProperty::PercentComplete,
            ICalendarProperty::Completed,
            ICalendarProperty::Status,
        ]
        .iter()
        .map(|p| comp.prop(p).map(canonical).unwrap_or_default())
        .collect()
    } else {
        Vec::new()
    };
    let delegated = param_addresses(mine, &ICalendarParameterName::DelegatedTo)
        .into_iter()
        .collect();
    (partstat_of(mine), delegated, progress)
}

/// The REPLY component for an instance whose participation changed.
fn reply_component(comp: &Component, me: &CalAddress, now: i64) -> Component {
    let mut out = Component::new(comp.kind.clone());
    for e in &comp.entries {
        let keep = match e.name {
            ICalendarProperty::Uid
            | ICalendarProperty::RecurrenceId
            | ICalendarProperty::Organizer => true,
            ICalendarProperty::Attendee => super::calendar::entry_address(e).is_some_and(|a| {
                &a == me || param_addresses(e, &ICalendarParameterName::DelegatedFrom).contains(me)
            }),
            ICalendarProperty::PercentComplete | ICalendarProperty::Completed => true,
            _ => false,
        };
        if keep {
            let mut e = e.clone();
            strip_schedule_params(&mut e);
            out.entries.push(e);
        }
    }
    out.set_dtstamp(now);
    out.set_sequence(comp.sequence());
    out.entries.push(ICalendarEntry {
        name: ICalendarProperty::RequestStatus,
        params: vec![],
        values: vec![
            ICalendarValue::Text("2.0".into()),
            ICalendarValue::Text("Success".into()),
        ],
    });
    out
}

/// The REPLY component that declines one instance removed by EXDATE.
fn exdate_decline(
    master: &Component,
    exdate: &ICalendarEntry,
    index: usize,
    me: &CalAddress,
    organizer: &CalAddress,
    now: i64,
) -> Component {
    let mut out = Component::new(master.kind.clone());
    out.entries
        .push(address_entry(ICalendarProperty::Organizer, organizer));
    out.entries.push(attendee_with_partstat(
        me,
        ICalendarParticipationStatus::Declined,
    ));
    if let Some(uid) = master.prop(&ICalendarProperty::Uid) {
        out.entries.push(uid.clone());
    }
    out.set_dtstamp(now);
    out.set_sequence(master.sequence());
    let mut rid = ICalendarEntry {
        name: ICalendarProperty::RecurrenceId,
        params: exdate.params.clone(),
        values: exdate.values.get(index).cloned().into_iter().collect(),
    };
    rid.params.retain(|p| {
        matches!(
            p.name,
            ICalendarParameterName::Tzid | ICalendarParameterName::Value
        )
    });
    out.entries.push(rid);
    out
}

/// The REPLY component that declines a whole object the attendee deleted.
fn decline_component(comp: &Component, me: &CalAddress, now: i64) -> Component {
    let mut out = Component::new(comp.kind.clone());
    for e in &comp.entries {
        if matches!(
            e.name,
            ICalendarProperty::Uid
                | ICalendarProperty::RecurrenceId
                | ICalendarProperty::Organizer
                | ICalendarProperty::Summary
                | ICalendarProperty::Dtstart
                | ICalendarProperty::Dtend
                | ICalendarProperty::Due
        ) {
            let mut e = e.clone();
            strip_schedule_params(&mut e);
            out.entries.push(e);
        }
    }
    out.entries.push(attendee_with_partstat(
        me,
        ICalendarParticipationStatus::Declined,
    ));
    out.set_dtstamp(now);
    out.set_sequence(comp.sequence());
    out
}

/// Every EXDATE value of a component with its instance key.
fn exdates<'a>(comp: &'a Component, tz: &Zones) -> Vec<(InstanceKey, &'a ICalendarEntry, usize)> {
    comp.props(&ICalendarProperty::Exdate)
        .flat_map(|e| (0..e.values.len()).map(move |i| (e, i)))
        .map(|(e, i)| (date_key(e, i, tz), e, i))
        .collect()
}

/// The attendees this one delegated to.
fn delegates(comp: &Component, me: &CalAddress) -> Vec<CalAddress> {
    comp.attendee(me)
        .map(|e| param_addresses(e, &ICalendarParameterName::DelegatedTo))
        .unwrap_or_default()
}

/// The attendees that delegated to this one (they hear its answer too).
fn delegators(cal: &Calendar, me: &CalAddress) -> BTreeSet<CalAddress> {
    cal.scheduling()
        .filter_map(|c| c.attendee(me))
        .flat_map(|e| param_addresses(e, &ICalendarParameterName::DelegatedFrom))
        .filter(|a| a != me)
        .collect()
}

/// Properties an attendee may change (RFC 6638 section 3.2.2.1).
fn attendee_may_change(prop: &ICalendarProperty, kind: &ICalendarComponentType) -> bool {
    is_private(prop)
        || matches!(
            prop,
            ICalendarProperty::PercentComplete | ICalendarProperty::Completed
        )
        || (*kind == ICalendarComponentType::VTodo && *prop == ICalendarProperty::Status)
}

/// Properties that legitimately differ between a master and one of its instances.
fn instance_specific(prop: &ICalendarProperty) -> bool {
    matches!(
        prop,
        ICalendarProperty::RecurrenceId
            | ICalendarProperty::Dtstart
            | ICalendarProperty::Dtend
            | ICalendarProperty::Due
            | ICalendarProperty::Duration
            | ICalendarProperty::Rrule
            | ICalendarProperty::Rdate
            | ICalendarProperty::Exdate
            | ICalendarProperty::Exrule
    )
}

fn validate(
    old_map: &BTreeMap<InstanceKey, &Component>,
    new: &Calendar,
    me: &CalAddress,
    tz: &Zones,
) -> Result<(), ItipError> {
    let new_map: BTreeMap<InstanceKey, &Component> =
        new.scheduling().map(|c| (c.instance_key(tz), c)).collect();
    let excluded: BTreeSet<InstanceKey> = new
        .master()
        .map(|m| exdates(m, tz).into_iter().map(|(k, _, _)| k).collect())
        .unwrap_or_default();
    for (key, before) in old_map {
        match new_map.get(key) {
            Some(after) => check_changes(before, after, me, false)?,
            None if *key != InstanceKey::Master && excluded.contains(key) => {}
            None => return Err(ItipError::CannotModifyInstance),
        }
    }
    let master = new_map
        .get(&InstanceKey::Master)
        .or_else(|| old_map.get(&InstanceKey::Master));
    for (key, after) in new_map.iter().filter(|(k, _)| !old_map.contains_key(k)) {
        let Some(master) = master.filter(|_| *key != InstanceKey::Master) else {
            return Err(ItipError::CannotModifyInstance);
        };
        check_changes(master, after, me, true).map_err(|_| ItipError::CannotModifyInstance)?;
    }
    Ok(())
}

fn check_changes(
    before: &Component,
    after: &Component,
    me: &CalAddress,
    instance: bool,
) -> Result<(), ItipError> {
    let (old, new) = (by_name(before), by_name(after));
    for prop in old.keys().chain(new.keys()) {
        if old.get(prop) == new.get(prop)
            || attendee_may_change(prop, &after.kind)
            || (instance && instance_specific(prop))
        {
            continue;
        }
        match prop {
            ICalendarProperty::Exdate => {
                if !exdate_values(before).is_subset(&exdate_values(after)) {
                    return Err(ItipError::CannotModifyProperty("EXDATE".into()));
                }
            }
            ICalendarProperty::Attendee => check_attendees(before, after, me)?,
            _ => {
                return Err(ItipError::CannotModifyProperty(
                    prop.as_str().to_ascii_uppercase(),
                ));
            }
        }
    }
    Ok(())
}

fn exdate_values(comp: &Component) -> BTreeSet<String> {
    comp.props(&ICalendarProperty::Exdate)
        .flat_map(|e| e.values.iter().map(|v| format!("{:?}{:?}", e.tz_id(), v)))
        .collect()
}

fn check_attendees(
    before: &Component,
    after: &Component,
    me: &CalAddress,
) -> Result<(), ItipError> {
    let was: BTreeMap<CalAddress, &ICalendarEntry> = before.attendees().collect();
    let now: BTreeMap<CalAddress, &ICalendarEntry> = after.attendees().collect();
    for (address, e) in &now {
        match was.get(address) {
            None if param_addresses(e, &ICalendarParameterName::DelegatedFrom).contains(me) => {}
            None => return Err(ItipError::CannotModifyAddress),
            Some(old) if address == me => {
                if own_fixed(old) != own_fixed(e) {
                    return Err(ItipError::CannotModifyProperty("ATTENDEE".into()));
                }
            }
            Some(old) if canonical(old) != canonical(e) => {
                return Err(ItipError::CannotModifyProperty("ATTENDEE".into()));
            }
            Some(_) => {}
        }
    }
    if was.keys().any(|a| !now.contains_key(a)) {
        return Err(ItipError::CannotModifyAddress);
    }
    Ok(())
}

/// The parts of an attendee's own ATTENDEE property it may not change.
fn own_fixed(e: &ICalendarEntry) -> String {
    let mut e = e.clone();
    e.params.retain(|p| {
        !matches!(
            p.name,
            ICalendarParameterName::Partstat
                | ICalendarParameterName::Rsvp
                | ICalendarParameterName::ScheduleStatus
                | ICalendarParameterName::ScheduleForceSend
                | ICalendarParameterName::DelegatedTo
        )
    });
    canonical(&e)
}
