//! Implicit scheduling for the organizer's writes (RFC 6638 sections 3.2.1 and 3.2.8).

use super::address::CalAddress;
use super::build::{Cancellation, cancel_component, forces, outgoing, strip_force_send};
use super::calendar::{Calendar, Component, InstanceKey, param_text, set_param};
use super::changes::{Significance, classify};
use super::message::{ItipMessage, Method, envelope};
use super::object::{Agent, recipients};
use super::summary::{Summary, SummaryKind};
use super::zones::Zones;
use super::{Context, DeleteOutcome, PutOutcome};
use calcard::icalendar::{
    ICalendarParameterName, ICalendarParameterValue, ICalendarParticipationStatus,
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
}

/// The organizer stores a new version of its object.
pub fn put(
    ctx: &Context,
    old: Option<&Calendar>,
    mut new: Calendar,
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
        .map(|o| o.tz_resolver())
        .unwrap_or_else(|| new.tz_resolver());
    let old_map: BTreeMap<InstanceKey, &Component> = old
        .map(|o| {
            o.scheduling()
                .map(|c| (c.instance_key(&tz_old), c))
                .collect()
        })
        .unwrap_or_default();
    let creating = old_map.is_empty();
    let old_master_seq = old_map
        .get(&InstanceKey::Master)
        .map(|c| c.sequence())
        .unwrap_or(0);

    // Server-side changes to the stored copy: SEQUENCE and PARTSTAT resets.
    let mut changes = BTreeMap::new();
    let mut forced: BTreeSet<(InstanceKey, CalAddress)> = BTreeSet::new();
    for comp in new.scheduling_mut() {
        let key = comp.instance_key(&tz_new);
        let forcing = comp
            .props(&calcard::icalendar::ICalendarProperty::Attendee)
            .filter(|e| forces(e, "REQUEST"))
            .filter_map(super::calendar::entry_address);
        for address in forcing {
            forced.insert((key.clone(), address));
        }
        let seq = match old_map.get(&key) {
            Some(before) => {
                let change = classify(before, &tz_old, comp, &tz_new);
                if change == Significance::Reschedule {
                    reset_partstats(comp, organizer);
                }
                changes.insert(key, change);
                comp.sequence().max(before.sequence()) + i64::from(change != Significance::None)
            }
            None => comp.sequence().max(old_master_seq) + 1,
        };
        comp.set_sequence(seq);
    }
    strip_force_send(&mut new);

    let mut plan = Mailing::default();
    let in_old = |a: &CalAddress| old_map.values().any(|c| c.attendee(a).is_some());
    let new_keys: BTreeSet<InstanceKey> =
        new.scheduling().map(|c| c.instance_key(&tz_new)).collect();
    let all_keys: BTreeSet<InstanceKey> = new_keys.clone();

    if creating {
        // An invitation carries the whole object to everyone invited to any part of it.
        let everyone: BTreeSet<CalAddress> = new
            .scheduling()
            .flat_map(|comp| recipients(comp, organizer, false))
            .collect();
        for a in everyone {
            plan.requests.insert(a, (true, all_keys.clone()));
        }
    } else {
        for comp in new.scheduling() {
            let key = comp.instance_key(&tz_new);
            let now_r = recipients(comp, organizer, false);
            match old_map.get(&key) {
                Some(before) => {
                    let was_r = recipients(before, organizer, false);
                    for a in was_r.iter().filter(|a| !now_r.contains(a)) {
                        plan.cancels
                            .entry(a.clone())
                            .or_default()
                            .insert(CancelOf::Removed(key.clone()));
                    }
                    if comp.is_cancelled() && !before.is_cancelled() {
                        for a in &now_r {
                            plan.cancels
                                .entry(a.clone())
                                .or_default()
                                .insert(CancelOf::Cancelled(key.clone()));
                        }
                        continue;
                    }
                    let changed = changes.get(&key).is_some_and(|c| *c != Significance::None);
                    for a in &now_r {
                        if !was_r.contains(a) {
                            plan.request(a, !in_old(a), &key);
                        } else if changed || forced.contains(&(key.clone(), a.clone())) {
                            plan.request(a, false, &key);
                        }
                    }
                }
                None if comp.is_cancelled() => {
                    for a in &now_r {
                        plan.cancels
                            .entry(a.clone())
                            .or_default()
                            .insert(CancelOf::Cancelled(key.clone()));
                    }
                }
                None => {
                    for a in &now_r {
                        if in_old(a) {
                            plan.adds.entry(a.clone()).or_default().insert(key.clone());
                        } else {
                            plan.request(a, true, &key);
                        }
                    }
                }
            }
        }
        let master_r = new
            .master()
            .map(|m| recipients(m, organizer, false))
            .unwrap_or_default();
        for (key, before) in old_map.iter().filter(|(k, _)| !new_keys.contains(k)) {
            for a in recipients(before, organizer, false) {
                if master_r.contains(&a) {
                    plan.request(&a, false, &InstanceKey::Master);
                } else {
                    plan.cancels
                        .entry(a)
                        .or_default()
                        .insert(CancelOf::Gone(key.clone()));
                }
            }
        }
        // A REQUEST that touches the master restates the whole object.
        for (_, keys) in plan.requests.values_mut() {
            if keys.contains(&InstanceKey::Master) {
                keys.extend(all_keys.iter().cloned());
            }
        }
    }

    let messages = render(
        ctx,
        &plan,
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

fn render(
    ctx: &Context,
    plan: &Mailing,
    (old, tz_old): (Option<&Calendar>, &Zones),
    (new, tz_new): (&Calendar, &Zones),
    old_map: &BTreeMap<InstanceKey, &Component>,
    organizer: &CalAddress,
) -> Vec<ItipMessage> {
    let new_first = new.master().or_else(|| new.scheduling().next());
    let old_first = old.and_then(|o| o.master().or_else(|| o.scheduling().next()));
    let new_comp = |key: &InstanceKey| new.instance(key, tz_new);
    let mut messages = Vec::new();

    let mut request_groups: BTreeMap<(bool, &BTreeSet<InstanceKey>), BTreeSet<CalAddress>> =
        BTreeMap::new();
    for (a, (invite, keys)) in &plan.requests {
        request_groups
            .entry((!*invite, keys))
            .or_default()
            .insert(a.clone());
    }
    for ((update, keys), to) in request_groups {
        let comps = keys
            .iter()
            .filter_map(new_comp)
            .map(|c| outgoing(c, ctx.now))
            .collect();
        let summary = if update {
            Summary::of(
                SummaryKind::Update(Method::Request),
                new_first,
                tz_new,
                true,
            )
            .with_previous(old_first, tz_old, true)
        } else {
            Summary::of(SummaryKind::Invite, new_first, tz_new, true)
        };
        messages.push(message(
            ctx,
            Method::Request,
            organizer,
            to,
            summary,
            comps,
            new,
        ));
    }

    let mut add_groups: BTreeMap<&BTreeSet<InstanceKey>, BTreeSet<CalAddress>> = BTreeMap::new();
    for (a, keys) in &plan.adds {
        add_groups.entry(keys).or_default().insert(a.clone());
    }
    for (keys, to) in add_groups {
        let comps = keys
            .iter()
            .filter_map(new_comp)
            .map(|c| outgoing(c, ctx.now))
            .collect();
        let summary = Summary::of(SummaryKind::Update(Method::Add), new_first, tz_new, true)
            .with_previous(old_first, tz_old, true);
        messages.push(message(
            ctx,
            Method::Add,
            organizer,
            to,
            summary,
            comps,
            new,
        ));
    }

    let mut cancel_groups: BTreeMap<&BTreeSet<CancelOf>, BTreeSet<CalAddress>> = BTreeMap::new();
    for (a, parts) in &plan.cancels {
        cancel_groups.entry(parts).or_default().insert(a.clone());
    }
    for (parts, to) in cancel_groups {
        let only: Vec<CalAddress> = to.iter().cloned().collect();
        let comps = parts
            .iter()
            .filter_map(|part| match part {
                CancelOf::Cancelled(k) => new_comp(k).map(|c| {
                    cancel_component(
                        c,
                        c.sequence(),
                        ctx.now,
                        Cancellation::Component(Some(&only)),
                    )
                }),
                CancelOf::Removed(k) => {
                    let seq = new_comp(k).map(|c| c.sequence());
                    old_map.get(k).map(|o| {
                        let seq = seq.unwrap_or(o.sequence() + 1);
                        cancel_component(o, seq, ctx.now, Cancellation::Uninvite(&only))
                    })
                }
                // The instance is gone for them: to its attendees the whole of what they were
                // invited to is cancelled.
                CancelOf::Gone(k) => old_map.get(k).map(|o| {
                    let seq = o.sequence() + 1;
                    cancel_component(o, seq, ctx.now, Cancellation::Component(Some(&only)))
                }),
            })
            .collect();
        let summary = Summary::of(SummaryKind::Cancel, old_first.or(new_first), tz_old, true);
        let source = old.unwrap_or(new);
        messages.push(message(
            ctx,
            Method::Cancel,
            organizer,
            to,
            summary,
            comps,
            source,
        ));
    }
    messages
}

fn message(
    ctx: &Context,
    method: Method,
    from: &CalAddress,
    to: BTreeSet<CalAddress>,
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
