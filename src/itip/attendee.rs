//! Implicit scheduling for an attendee's writes (RFC 6638 sections 3.2.2 and 8.1).

use super::address::CalAddress;
use super::build::{
    attendee_with_partstat, forces, outgoing, partstat_of, strip_force_send, strip_schedule_params,
};
use super::calendar::{
    Calendar, Component, InstanceKey, address_entry, date_key, param_addresses, take_role,
};
use super::changes::{PROGRESS, is_private};
use super::error::ItipError;
use super::meaning::{dates, differing, merged_participant};
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
    if let Some(old) = old.filter(|_| !old_map.is_empty()) {
        new = reconcile(old, &old_map, &tz_old, new, me)?;
    }
    let before = Before {
        instances: old_map,
        zones: tz_old,
    };
    let after = After {
        zones: new.tz_resolver(),
        calendar: &new,
    };
    let mut parts = answers(ctx, &before, &after, me);
    parts.extend(exdate_declines(ctx, &before, &after, me, organizer));
    let mut messages = Vec::new();
    if !parts.is_empty() {
        messages.push(reply(ctx, &after, parts, me, organizer));
    }
    messages.extend(delegation(ctx, &before, &after, me, organizer));
    strip_force_send(&mut new);
    let silent = messages.is_empty().then_some(ItipError::NothingToSend);
    Ok(PutOutcome {
        stored: new,
        messages,
        silent,
    })
}

/// The attendee's copy before the write, by instance, and the zones it names.
struct Before<'c> {
    instances: BTreeMap<InstanceKey, &'c Component>,
    zones: Zones,
}

/// The copy the client wrote, and the zones it names.
struct After<'c> {
    calendar: &'c Calendar,
    zones: Zones,
}

impl Before<'_> {
    fn master(&self) -> Option<&Component> {
        self.instances.get(&InstanceKey::Master).copied()
    }
}

/// The components whose answer the write changed (or all with one, when the organizer asked
/// for a REPLY by SCHEDULE-FORCE-SEND), as REPLY components.
fn answers(ctx: &Context, before: &Before, after: &After, me: &CalAddress) -> Vec<Component> {
    let (new, tz_new) = (after.calendar, &after.zones);
    let force = new
        .scheduling()
        .filter_map(|c| c.prop(&ICalendarProperty::Organizer))
        .any(|e| forces(e, "REPLY"));
    let mut parts = Vec::new();
    for comp in new.scheduling() {
        let Some(mine) = comp.attendee(me) else {
            continue;
        };
        let key = comp.instance_key(tz_new);
        let was = before.instances.get(&key).copied().or(before.master());
        // The organizer cancelled it: an answer would tell him nothing he wants.
        if !force && (comp.is_cancelled() || was.is_some_and(Component::is_cancelled)) {
            continue;
        }
        let changed = force
            || match was.and_then(|b| b.attendee(me).map(|e| (b, e))) {
                Some((b, theirs)) => reply_state(b, theirs) != reply_state(comp, mine),
                None => partstat_of(mine) != "NEEDS-ACTION",
            };
        if changed {
            parts.push(reply_component(comp, was, me, ctx.now));
        }
    }
    parts
}

/// An EXDATE the attendee adds declines that instance (RFC 6638 section 3.2.2.3).
fn exdate_declines(
    ctx: &Context,
    before: &Before,
    after: &After,
    me: &CalAddress,
    organizer: &CalAddress,
) -> Vec<Component> {
    let (Some(now_master), Some(was_master)) = (after.calendar.master(), before.master()) else {
        return Vec::new();
    };
    let was: BTreeSet<InstanceKey> = exdates(was_master, &before.zones)
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    let declined_already = |key: &InstanceKey| {
        before
            .instances
            .get(key)
            .and_then(|c| c.attendee(me))
            .is_some_and(|e| partstat_of(e) == "DECLINED")
    };
    let mut parts = Vec::new();
    for (key, e, index) in exdates(now_master, &after.zones) {
        let told = was.contains(&key) || declined_already(&key);
        if !told && !was_master.is_cancelled() {
            parts.push(exdate_decline(now_master, e, index, me, organizer, ctx.now));
        }
    }
    parts
}

/// The REPLY with the attendee's answers, to the organizer and to whoever delegated to it.
fn reply(
    ctx: &Context,
    after: &After,
    parts: Vec<Component>,
    me: &CalAddress,
    organizer: &CalAddress,
) -> ItipMessage {
    let new = after.calendar;
    let first = new.master().or_else(|| new.scheduling().next());
    let partstat = parts
        .first()
        .and_then(|p| p.attendee(me))
        .map(partstat_of)
        .unwrap_or_else(|| "NEEDS-ACTION".into());
    let summary = Summary::of(
        SummaryKind::Rsvp(partstat),
        first,
        &new.tz_resolver(),
        false,
    );
    let mut to: BTreeSet<CalAddress> = BTreeSet::from([organizer.clone()]);
    to.extend(delegators(new, me));
    ItipMessage {
        method: Method::Reply,
        from: me.clone(),
        to: to.into_iter().collect(),
        summary,
        calendar: envelope(Method::Reply, ctx.prodid, parts, new),
    }
}

/// Delegation forwards the invitation to the new delegates (RFC 5546 section 3.2.2.3).
fn delegation(
    ctx: &Context,
    before: &Before,
    after: &After,
    me: &CalAddress,
    organizer: &CalAddress,
) -> Option<ItipMessage> {
    let new = after.calendar;
    let earlier: BTreeSet<CalAddress> = before
        .instances
        .values()
        .flat_map(|c| delegates(c, me))
        .collect();
    let fresh: BTreeSet<CalAddress> = new
        .scheduling()
        .flat_map(|c| delegates(c, me))
        .filter(|d| !earlier.contains(d) && d != organizer && d != me)
        .collect();
    if fresh.is_empty() {
        return None;
    }
    let comps = new.scheduling().map(|c| outgoing(c, ctx.now)).collect();
    let first = new.master().or_else(|| new.scheduling().next());
    Some(ItipMessage {
        method: Method::Request,
        from: me.clone(),
        to: fresh.into_iter().collect(),
        summary: Summary::of(SummaryKind::Invite, first, &after.zones, true),
        calendar: envelope(Method::Request, ctx.prodid, comps, new),
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
        .filter(|c| !c.is_cancelled())
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
) -> (
    String,
    BTreeSet<CalAddress>,
    Vec<Option<Vec<ICalendarValue>>>,
) {
    let progress = if comp.kind == ICalendarComponentType::VTodo {
        PROGRESS
            .iter()
            .map(|p| comp.prop(p).map(|e| e.values.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let delegated = param_addresses(mine, &ICalendarParameterName::DelegatedTo)
        .into_iter()
        .collect();
    (partstat_of(mine), delegated, progress)
}

/// The REPLY component for an instance whose participation changed. A COMMENT the attendee
/// wrote with the answer goes with it (RFC 5546 allows COMMENT in a REPLY; the organizer's own,
/// which the copy was given with the invitation, does not go back).
fn reply_component(
    comp: &Component,
    was: Option<&Component>,
    me: &CalAddress,
    now: i64,
) -> Component {
    let written_before = |e: &ICalendarEntry| {
        was.is_some_and(|w| {
            w.props(&ICalendarProperty::Comment)
                .any(|old| old.values == e.values)
        })
    };
    let mut out = Component::new(comp.kind.clone());
    for e in &comp.entries {
        let keep = match e.name {
            ICalendarProperty::Comment => !written_before(e),
            ICalendarProperty::Uid
            | ICalendarProperty::RecurrenceId
            | ICalendarProperty::Organizer => true,
            ICalendarProperty::Attendee => super::calendar::entry_address(e).is_some_and(|a| {
                &a == me || param_addresses(e, &ICalendarParameterName::DelegatedFrom).contains(me)
            }),
            ref p if PROGRESS.contains(p) => comp.kind == ICalendarComponentType::VTodo,
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
    // A bare line, as the acceptance scenarios have it (rfc6638-recurring.txt).
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
    out.entries.push(declining(comp, me));
    out.set_dtstamp(now);
    out.set_sequence(comp.sequence());
    out
}

/// The attendee's line in the decline of a removed object: its address, its name as the copy
/// has it (the organizer's mail names who declined), and DECLINED; nothing else of the
/// invitation's line (RSVP, ROLE), as the acceptance scenarios have it (rfc5546-event-recurring.txt).
fn declining(comp: &Component, me: &CalAddress) -> ICalendarEntry {
    let mut line = attendee_with_partstat(me, ICalendarParticipationStatus::Declined);
    let named = (comp.attendee(me).into_iter())
        .flat_map(|e| &e.params)
        .find(|p| p.name == ICalendarParameterName::Cn);
    line.params.splice(0..0, named.cloned());
    line
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

/// Checks an attendee's write against its stored copy and completes it from there. RFC 5546's
/// replies carry only the attendee's own line: what a write leaves out of the organizer's part
/// is not a change of it and is kept; what it changes there is refused.
fn reconcile(
    old: &Calendar,
    old_map: &BTreeMap<InstanceKey, &Component>,
    tz_old: &Zones,
    mut new: Calendar,
    me: &CalAddress,
) -> Result<Calendar, ItipError> {
    // What the write leaves out may be completed from the stored copy, in the stored zones.
    for zone in old.timezones() {
        let id = zone.text(&ICalendarProperty::Tzid);
        if !new
            .timezones()
            .any(|z| z.text(&ICalendarProperty::Tzid) == id)
        {
            new.components.push(zone.clone());
        }
    }
    let tz = new.tz_resolver();
    let mut keys: BTreeSet<InstanceKey> = new.scheduling().map(|c| c.instance_key(&tz)).collect();
    // A write of single instances only, without the series, is about those instances: the
    // rest of the stored copy stays as it is.
    if new.master().is_none() && old_map.contains_key(&InstanceKey::Master) {
        let untouched: Vec<(&InstanceKey, &&Component)> =
            old_map.iter().filter(|(k, _)| !keys.contains(*k)).collect();
        for (key, comp) in untouched {
            new.components.push((*comp).clone());
            keys.insert(key.clone());
        }
    }
    let excluded = new
        .master()
        .map(|m| dates(m, &ICalendarProperty::Exdate, &tz))
        .unwrap_or_default();
    // Instances leave an attendee's copy only by exclusion (RFC 6638 section 3.2.2.3).
    if old_map
        .keys()
        .any(|k| !keys.contains(k) && (*k == InstanceKey::Master || !excluded.contains(k)))
    {
        return Err(ItipError::CannotModifyInstance);
    }
    for comp in new.scheduling_mut() {
        let key = comp.instance_key(&tz);
        match old_map.get(&key) {
            Some(before) => complete(before, tz_old, comp, &tz, me, false)?,
            None => {
                // The attendee answers one instance on its own: an override of the series as
                // it stands at that instance.
                let master = super::range::governing(old, &key, tz_old)
                    .filter(|_| key != InstanceKey::Master)
                    .ok_or(ItipError::CannotModifyInstance)?;
                fill_instance_times(master, tz_old, comp);
                complete(master, tz_old, comp, &tz, me, true)
                    .map_err(|_| ItipError::CannotModifyInstance)?;
            }
        }
    }
    // What the organizer changed for this and every later instance holds for the overrides
    // the attendee writes for later instances too.
    super::range::carry_forward(&mut new);
    // An instance the series excludes comes back only from the organizer.
    let excluded = new
        .master()
        .map(|m| dates(m, &ICalendarProperty::Exdate, &tz))
        .unwrap_or_default();
    if keys
        .iter()
        .any(|k| !old_map.contains_key(k) && excluded.contains(k))
    {
        return Err(ItipError::CannotModifyProperty("EXDATE".into()));
    }
    Ok(new)
}

/// Refuses what an attendee may not change in one component and fills in from `before` what
/// its write left out.
fn complete(
    before: &Component,
    tz_before: &Zones,
    after: &mut Component,
    tz_after: &Zones,
    me: &CalAddress,
    instance: bool,
) -> Result<(), ItipError> {
    for prop in differing(before, tz_before, after, tz_after) {
        if attendee_may_change(&prop, &after.kind) || (instance && instance_specific(&prop)) {
            continue;
        }
        match prop {
            // A write that states the recurrence states its exclusions with it.
            ICalendarProperty::Exdate
                if written(after, &prop) || written(after, &ICalendarProperty::Rrule) =>
            {
                let kept = dates(before, &prop, tz_before);
                if !kept.is_subset(&dates(after, &prop, tz_after)) {
                    return Err(ItipError::CannotModifyProperty("EXDATE".into()));
                }
            }
            ICalendarProperty::Attendee => check_attendees(before, after, me)?,
            _ if written(after, &prop) => {
                return Err(ItipError::CannotModifyProperty(
                    prop.as_str().to_ascii_uppercase(),
                ));
            }
            _ => keep(before, after, &prop),
        }
    }
    for prop in [ICalendarProperty::Sequence, ICalendarProperty::Dtstamp] {
        if !written(after, &prop) {
            keep(before, after, &prop);
        }
    }
    Ok(())
}

/// True when a write states the property; an end counts as stated by DURATION too.
fn written(comp: &Component, prop: &ICalendarProperty) -> bool {
    comp.prop(prop).is_some()
        || (matches!(prop, ICalendarProperty::Dtend | ICalendarProperty::Due)
            && comp.prop(&ICalendarProperty::Duration).is_some())
}

/// Copies a property the write left out from the stored version (an end with its DURATION).
fn keep(before: &Component, after: &mut Component, prop: &ICalendarProperty) {
    let names: &[ICalendarProperty] = match prop {
        ICalendarProperty::Dtend | ICalendarProperty::Due => {
            &[prop.clone(), ICalendarProperty::Duration]
        }
        _ => std::slice::from_ref(prop),
    };
    after.entries.extend(
        before
            .entries
            .iter()
            .filter(|e| names.contains(&e.name))
            .cloned(),
    );
}

/// An override the attendee writes for one instance starts when the instance does and lasts
/// as long as the series' instances, unless it says otherwise.
fn fill_instance_times(master: &Component, tz: &Zones, comp: &mut Component) {
    let Some(rid) = comp.prop(&ICalendarProperty::RecurrenceId) else {
        return;
    };
    let model = master.override_of(rid, tz);
    for prop in [ICalendarProperty::Dtstart, comp.end_name()] {
        if !written(comp, &prop) {
            keep(&model, comp, &prop);
        }
    }
}

/// Attendee lines: the attendee changes its own answer and delegation, adds its delegates
/// (new people, or people already invited to whom it now delegates: RFC 5546 4.2.5), and
/// leaves everybody else's line as the organizer wrote it. Lines it leaves out are kept.
fn check_attendees(
    before: &Component,
    after: &mut Component,
    me: &CalAddress,
) -> Result<(), ItipError> {
    use ICalendarParameterName as P;
    let was: BTreeMap<CalAddress, &ICalendarEntry> = before.attendees().collect();
    let my_delegates: BTreeSet<CalAddress> = after
        .attendee(me)
        .map(|e| param_addresses(e, &P::DelegatedTo).into_iter().collect())
        .unwrap_or_default();
    let mut lines = Vec::new();
    for (address, e) in after.attendees() {
        let delegated_by_me = param_addresses(e, &P::DelegatedFrom).contains(me)
            && (my_delegates.contains(&address) || !was.contains_key(&address));
        let mine = was.get(me).copied();
        let line = match was.get(&address) {
            None => delegated_by_me.then(|| e.clone()).map(|mut line| {
                if let Some(mine) = mine {
                    take_role(&mut line, None, mine);
                }
                line
            }),
            Some(old) if address == *me => merged_participant(old, e, &[P::DelegatedTo]),
            Some(old) if delegated_by_me => {
                merged_participant(old, e, &[P::DelegatedFrom, P::Role]).map(|mut line| {
                    if let Some(mine) = mine {
                        take_role(&mut line, Some(old), mine);
                    }
                    line
                })
            }
            Some(old) => merged_participant(old, e, &[]),
        };
        match line {
            Some(line) => lines.push(line),
            None if was.contains_key(&address) => {
                return Err(ItipError::CannotModifyProperty("ATTENDEE".into()));
            }
            None => return Err(ItipError::CannotModifyAddress),
        }
    }
    after.remove(&ICalendarProperty::Attendee);
    after.entries.extend(lines);
    let missing: Vec<ICalendarEntry> = was
        .iter()
        .filter(|(a, _)| after.attendee(a).is_none())
        .map(|(_, e)| (*e).clone())
        .collect();
    after.entries.extend(missing);
    Ok(())
}

/// The REPLY an attendee answering from a one-click link sends (`rsvp`): `answer` in every
/// component of the organizer's `copy` it is on (the series alone when there is one), as its
/// client would write it. None when it is on none.
pub fn link_answer(
    ctx: &Context,
    copy: &Calendar,
    me: &CalAddress,
    answer: ICalendarParticipationStatus,
) -> Option<Calendar> {
    let on: Vec<&Component> = match copy.master().filter(|m| m.attendee(me).is_some()) {
        Some(master) => vec![master],
        None => copy
            .scheduling()
            .filter(|c| c.attendee(me).is_some())
            .collect(),
    };
    let parts: Vec<Component> = on
        .into_iter()
        .map(|comp| {
            let mut part = reply_component(comp, Some(comp), me, ctx.now);
            for entry in &mut part.entries {
                if entry.name == ICalendarProperty::Attendee
                    && super::calendar::entry_address(entry).is_some_and(|a| &a == me)
                {
                    super::calendar::set_param(
                        entry,
                        ICalendarParameterName::Partstat,
                        calcard::icalendar::ICalendarParameterValue::Partstat(answer.clone()),
                    );
                }
            }
            part
        })
        .collect();
    (!parts.is_empty()).then(|| envelope(Method::Reply, ctx.prodid, parts, copy))
}
