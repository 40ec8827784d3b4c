//! Processing of received iTIP messages (RFC 5546 section 3).

use super::address::CalAddress;
use super::build::{outgoing, strip_schedule_params};
use super::calendar::{
    Calendar, Component, address_entry, entry_address, forwarded_by, param_addresses, proposed_by,
    published_by, set_param, take_role,
};
use super::changes::PROGRESS;
use super::error::{ItipError, Missing};
use super::meaning::dates;
use super::merge::{apply_cancel, merge_request};
use super::message::{ItipMessage, Method, envelope};
use super::object::inspect;
use super::summary::{Summary, SummaryKind};
use super::zones::Zones;
use super::{Context, Received};
use calcard::icalendar::{
    ICalendarComponentType, ICalendarEntry, ICalendarParameterName, ICalendarParameterValue,
    ICalendarProperty,
};
use std::collections::BTreeSet;

/// Applies a message from `sender` to the recipient's stored copy of its object.
pub fn receive(
    ctx: &Context,
    sender: &CalAddress,
    stored: Option<&Calendar>,
    message: &Calendar,
) -> Result<Received, ItipError> {
    let method_text = message.method().ok_or(ItipError::MissingMethod)?;
    let method = Method::parse(&method_text).ok_or(ItipError::UnsupportedMethod(method_text))?;
    if message.components.iter().any(|c| {
        matches!(
            c.kind,
            ICalendarComponentType::VJournal | ICalendarComponentType::VFreebusy
        )
    }) {
        return Err(ItipError::InvalidComponentType);
    }
    let info = inspect(message)?.ok_or(ItipError::InvalidComponentType)?;
    // What becomes a copy states when its events take place (RFC 5546 3.2.1, 3.2.2: DTSTART
    // in every PUBLISH and REQUEST); a REPLY or CANCEL may leave it out.
    if matches!(method, Method::Request | Method::Publish) {
        super::object::series_have_start(message)?;
    }
    let stored_organizer = stored
        .and_then(|s| inspect(s).ok().flatten())
        .and_then(|i| i.organizer);
    if let (Some(theirs), Some(ours)) = (&info.organizer, &stored_organizer)
        && theirs != ours
    {
        return Err(ItipError::OrganizerMismatch);
    }
    if let Some(stored) = stored
        && stored_organizer.is_none()
        && !(method == Method::Publish
            && info.organizer.is_none()
            && publisher(stored).as_ref() == Some(sender))
    {
        // A copy without ORGANIZER has nobody to schedule with: the user's own, or a
        // published event only its publisher may replace. No message speaks for it.
        return Err(ItipError::OrganizerMismatch);
    }
    if method == Method::Request && stored.is_none() && forwarded(sender, message) {
        if info.organizer.as_ref().is_some_and(|o| ctx.is_mine(o)) {
            return Err(ItipError::OrganizerIsLocalAddress);
        }
        return Ok(forwarded_invitation(ctx, sender, message));
    }
    // A message names whom it concerns (RFC 5546 section 1.4); what names the recipient
    // nowhere is not its business, whoever sent it. A published event names nobody by design
    // (RFC 5546 4.1), nor does its CANCEL. A meeting the user copied without being on it is
    // the user's own (RFC 6638 3.1): not even a PUBLISH of its organizer changes it.
    let published = !has_attendees(message) && !stored.is_some_and(has_attendees);
    if (method != Method::Publish || stored.is_some_and(has_attendees))
        && !published
        && !names(ctx, message)
        && !stored.is_some_and(|s| names(ctx, s))
    {
        return Err(ItipError::NotOrganizerNorAttendee);
    }
    match method {
        Method::Request
        | Method::Add
        | Method::Cancel
        | Method::Publish
        | Method::DeclineCounter => from_organizer(
            ctx,
            method,
            sender,
            stored,
            message,
            info.organizer.as_ref(),
        ),
        Method::Reply | Method::Refresh | Method::Counter => {
            let stored = stored.ok_or(ItipError::EventNotFound)?;
            from_attendee(
                ctx,
                method,
                sender,
                stored,
                message,
                stored_organizer.as_ref(),
            )
        }
    }
}

/// True when an object names one of the account's addresses: as ORGANIZER, as ATTENDEE, or
/// as the delegator or delegate of an attendee.
fn names(ctx: &Context, cal: &Calendar) -> bool {
    cal.scheduling().any(|c| {
        c.organizer().is_some_and(|o| ctx.is_mine(&o))
            || c.attendees().any(|(a, e)| {
                ctx.is_mine(&a)
                    || [
                        ICalendarParameterName::DelegatedFrom,
                        ICalendarParameterName::DelegatedTo,
                    ]
                    .iter()
                    .any(|p| param_addresses(e, p).iter().any(|d| ctx.is_mine(d)))
            })
    })
}

fn has_attendees(cal: &Calendar) -> bool {
    cal.scheduling().any(|c| c.attendees().next().is_some())
}

/// True for an organizer's REQUEST that one of its attendees passed on (RFC 5546 3.2.2.6 and
/// 4.2.8): the sender is listed as an attendee and does not speak for the organizer.
fn forwarded(sender: &CalAddress, message: &Calendar) -> bool {
    let comps = || message.scheduling();
    let organizer_speaks = comps()
        .filter_map(|c| c.prop(&ICalendarProperty::Organizer))
        .any(|e| speaks_for(sender, e, None));
    let delegating = comps().any(|c| {
        c.attendee(sender)
            .is_some_and(|e| !param_addresses(e, &ICalendarParameterName::DelegatedTo).is_empty())
    });
    !organizer_speaks
        && !delegating
        && comps().any(|c| c.organizer().is_some())
        && comps().any(|c| c.attendee(sender).is_some())
}

/// A forwarded invitation, stored as a new one marked with who forwarded it, with the
/// recipient added as an attendee if the forwarder did not list it (as RFC 5546 4.2.8 says
/// he should not): so that its answer reaches the organizer, who decides on it.
fn forwarded_invitation(ctx: &Context, sender: &CalAddress, message: &Calendar) -> Received {
    let mut copy = import(message);
    let me = ctx.addresses.first();
    for comp in copy.scheduling_mut() {
        comp.set(address_entry(forwarded_by(), sender));
        if let Some(me) = me.filter(|me| comp.attendee(me).is_none()) {
            let mut line = address_entry(ICalendarProperty::Attendee, me);
            set_param(
                &mut line,
                ICalendarParameterName::Partstat,
                ICalendarParameterValue::Text("NEEDS-ACTION".into()),
            );
            set_param(
                &mut line,
                ICalendarParameterName::Rsvp,
                ICalendarParameterValue::Bool(true),
            );
            comp.entries.push(line);
        }
    }
    Received {
        forwarded_by: Some(sender.clone()),
        ..Received::store(copy)
    }
}

/// True when `sender` is the calendar user of this property, or a SENT-BY of it that the
/// recipient's stored copy already names for that user: RFC 5546 section 6.1 leaves whom to
/// trust to the recipient, and a stranger must not make himself a delegate by saying so.
fn speaks_for(sender: &CalAddress, e: &ICalendarEntry, stored: Option<&Calendar>) -> bool {
    let Some(user) = entry_address(e) else {
        return false;
    };
    &user == sender
        || (param_addresses(e, &ICalendarParameterName::SentBy).contains(sender)
            && stored.is_some_and(|s| names_sent_by(s, &e.name, &user, sender)))
}

/// Microsoft 365's delegates: a new invitation whose sender is the ORGANIZER's SENT-BY, both
/// of the domain the sender is authenticated for (`Context::vouched_domain`: a DMARC pass).
/// The copy then names the delegate, so that its later updates pass `speaks_for`; without
/// that evidence a stranger could make himself anyone's delegate by saying so.
fn vouched_delegate(
    ctx: &Context,
    sender: &CalAddress,
    e: &ICalendarEntry,
    stored: Option<&Calendar>,
) -> bool {
    let domain = |a: &CalAddress| {
        a.email()
            .and_then(|m| m.rsplit_once('@'))
            .map(|(_, d)| d.to_ascii_lowercase())
    };
    let (Some(vouched), Some(user)) = (ctx.vouched_domain, entry_address(e)) else {
        return false;
    };
    let vouched = Some(vouched.to_ascii_lowercase());
    stored.is_none()
        && param_addresses(e, &ICalendarParameterName::SentBy).contains(sender)
        && domain(sender) == vouched
        && domain(&user) == vouched
}

/// True when the stored copy names `delegate` as SENT-BY of `user` on such a property.
fn names_sent_by(
    stored: &Calendar,
    property: &ICalendarProperty,
    user: &CalAddress,
    delegate: &CalAddress,
) -> bool {
    stored.scheduling().any(|c| {
        c.props(property).any(|e| {
            entry_address(e).as_ref() == Some(user)
                && param_addresses(e, &ICalendarParameterName::SentBy).contains(delegate)
        })
    })
}

/// True when the attendee `delegator`'s own line in a component delegates to `delegate`.
fn delegates_to(comp: &Component, delegator: &CalAddress, delegate: &CalAddress) -> bool {
    comp.attendee(delegator).is_some_and(|e| {
        param_addresses(e, &ICalendarParameterName::DelegatedTo).contains(delegate)
    })
}

fn from_organizer(
    ctx: &Context,
    method: Method,
    sender: &CalAddress,
    stored: Option<&Calendar>,
    message: &Calendar,
    organizer: Option<&CalAddress>,
) -> Result<Received, ItipError> {
    let Some(organizer) = organizer else {
        return match method {
            Method::Publish => publish_unorganized(sender, stored, message),
            _ => Err(ItipError::NoSchedulingInfo(Missing::Organizer)),
        };
    };
    if ctx.is_mine(organizer) {
        return Err(ItipError::OrganizerIsLocalAddress);
    }
    let organizer_entry = message
        .scheduling()
        .find_map(|c| c.prop(&ICalendarProperty::Organizer));
    let authorized = organizer_entry.is_some_and(|e| {
        speaks_for(sender, e, stored)
            || (method == Method::Request && vouched_delegate(ctx, sender, e, stored))
    }) || (method == Method::Request && delegated_to_me(ctx, sender, message));
    if !authorized {
        let is_attendee = message
            .scheduling()
            .chain(stored.into_iter().flat_map(|s| s.scheduling()))
            .any(|c| c.attendees().any(|(_, e)| speaks_for(sender, e, stored)));
        return Err(if is_attendee {
            ItipError::NotOrganizer
        } else {
            ItipError::SenderIsNotOrganizerNorAttendee
        });
    }
    match method {
        Method::Request | Method::Publish => {
            let copy = match stored {
                Some(stored) if method == Method::Request => {
                    merge_request(ctx, stored, &fresh_part(stored, message)?, true)
                }
                Some(stored) => {
                    check_sequence(stored, message, true)?;
                    import(message)
                }
                None => import(message),
            };
            let mut received = Received::store(copy);
            if method == Method::Request
                && stored.is_some_and(|s| missed_updates(s, message))
                && let Some(refresh) = refresh_request(ctx, message, organizer)
            {
                received.responses.push(refresh);
            }
            Ok(received)
        }
        Method::Add => match stored {
            Some(stored) => {
                // An ADD delivered late is as old as it is (RFC 5546 2.1.5): it does not undo
                // a later change of the instances it carries.
                let fresh = fresh_part(stored, message)?;
                Ok(Received::store(merge_request(ctx, stored, &fresh, false)))
            }
            None => ask_refresh(ctx, message, organizer),
        },
        Method::Cancel => {
            // A CANCEL of single instances of an object the recipient lacks tells it that the
            // rest goes on, and that it missed the invitation (delayed, or lost): it asks for
            // the object (RFC 5546 4.7.2), as for an ADD. A whole object cancelled needs nothing.
            let Some(stored) = stored else {
                return match message.master() {
                    None => ask_refresh(ctx, message, organizer),
                    Some(_) => Err(ItipError::EventNotFound),
                };
            };
            check_sequence(stored, message, false)?;
            Ok(Received::store(apply_cancel(stored, message)))
        }
        _ => {
            // DECLINECOUNTER: the organizer kept its version; the copy stays as it is.
            stored.ok_or(ItipError::EventNotFound)?;
            Ok(Received::default())
        }
    }
}

/// A REQUEST forwarded by an attendee that delegated to the recipient (RFC 5546 3.2.2.3).
fn delegated_to_me(ctx: &Context, sender: &CalAddress, message: &Calendar) -> bool {
    message.scheduling().any(|c| {
        c.attendees().any(|(a, e)| {
            &a == sender
                && param_addresses(e, &ICalendarParameterName::DelegatedTo)
                    .iter()
                    .any(|d| ctx.is_mine(d))
        })
    })
}

/// An update older than what the recipient holds is refused (RFC 5546 section 2.1.5). A
/// cancelled component lost its SEQUENCE (the acceptance scenarios require it) but kept the
/// CANCEL's DTSTAMP: only what the organizer sent after the CANCEL brings it back, never a
/// REQUEST that was sent before it and arrives late.
fn check_sequence(stored: &Calendar, message: &Calendar, reviving: bool) -> Result<(), ItipError> {
    let (tz_s, tz_m) = (stored.tz_resolver(), message.tz_resolver());
    match message
        .scheduling()
        .any(|m| stale(stored, &tz_s, m, &tz_m, reviving))
    {
        true => Err(ItipError::OutOfSequence),
        false => Ok(()),
    }
}

/// The part of a REQUEST or ADD newer than the copy (RFC 5546 2.1.5 compares each
/// instance): messages delivered out of order then end in the newest version of every
/// instance, whichever came last. `OutOfSequence` when nothing in it is newer.
fn fresh_part(stored: &Calendar, message: &Calendar) -> Result<Calendar, ItipError> {
    let (tz_s, tz_m) = (stored.tz_resolver(), message.tz_resolver());
    let mut fresh = message.clone();
    fresh
        .components
        .retain(|c| !c.is_scheduling() || !stale(stored, &tz_s, c, &tz_m, true));
    if fresh.scheduling().next().is_none() {
        return Err(ItipError::OutOfSequence);
    }
    Ok(fresh)
}

/// True when the copy holds a newer version of the message component's instance.
fn stale(stored: &Calendar, tz_s: &Zones, m: &Component, tz_m: &Zones, reviving: bool) -> bool {
    let older = |s: &Component| matches!((m.dtstamp(), s.dtstamp()), (Some(a), Some(b)) if a < b);
    match stored.instance(&m.instance_key(tz_m), tz_s) {
        Some(s) => {
            m.sequence() < s.sequence()
                || (m.sequence() == s.sequence() && older(s))
                || (reviving && s.is_cancelled() && older(s))
        }
        // An instance the copy lacks, sent before the series the copy holds (an ADD or an
        // instance's REQUEST delivered late, its instance since moved away or excluded by the
        // series): stamped before the series, and no newer in SEQUENCE or an instance the
        // series now excludes (stamps alone do not tell: RFC 5546's own examples stamp later
        // messages earlier). Organizers that number their instances apart from the series
        // (lower, but stamped later) still pass.
        None => stored
            .master()
            .filter(|_| m.prop(&ICalendarProperty::RecurrenceId).is_some())
            .is_some_and(|master| {
                older(master)
                    && (m.sequence() <= master.sequence()
                        || dates(master, &ICalendarProperty::Exdate, tz_s)
                            .contains(&m.instance_key(tz_m)))
            }),
    }
}

/// A PUBLISH without ORGANIZER (what video-conferencing services attach to their mail): a
/// calendar object, imported as it is, with nobody to schedule with. Only whoever sent the
/// copy the recipient has may update it, and only with a later version.
fn publish_unorganized(
    sender: &CalAddress,
    stored: Option<&Calendar>,
    message: &Calendar,
) -> Result<Received, ItipError> {
    let mark = |copy: &mut Calendar| {
        for comp in copy.scheduling_mut() {
            comp.set(address_entry(published_by(), sender));
        }
    };
    let Some(stored) = stored else {
        let mut copy = import(message);
        mark(&mut copy);
        return Ok(Received::store(copy));
    };
    // `receive` let only the publisher of an organizer-less copy this far; a copy with an
    // organizer is the organizer's to change.
    if stored.scheduling().any(|c| c.organizer().is_some()) {
        return Err(ItipError::OrganizerMismatch);
    }
    check_sequence(stored, message, true)?;
    let mut copy = import(message);
    mark(&mut copy);
    Ok(Received::store(copy))
}

/// Who published a copy imported from a PUBLISH without ORGANIZER.
fn publisher(stored: &Calendar) -> Option<CalAddress> {
    stored
        .scheduling()
        .find_map(|c| c.prop(&published_by()))
        .and_then(entry_address)
}

/// A new copy from a message: the object as sent, without METHOD.
fn import(message: &Calendar) -> Calendar {
    let mut copy = message.clone();
    copy.entries.retain(|e| e.name != ICalendarProperty::Method);
    copy
}

/// ADD, or CANCEL of instances, for an object the recipient lacks: ask the organizer for it
/// (RFC 5546 3.2.4, 4.7.2).
fn ask_refresh(
    ctx: &Context,
    message: &Calendar,
    organizer: &CalAddress,
) -> Result<Received, ItipError> {
    let refresh = refresh_request(ctx, message, organizer).ok_or(ItipError::EventNotFound)?;
    Ok(Received {
        responses: vec![refresh],
        ..Received::default()
    })
}

/// The REFRESH that asks the organizer for the whole object, from the recipient's address
/// the message names.
fn refresh_request(
    ctx: &Context,
    message: &Calendar,
    organizer: &CalAddress,
) -> Option<ItipMessage> {
    let me = message
        .scheduling()
        .flat_map(|c| c.attendees().map(|(a, _)| a).collect::<Vec<_>>())
        .find(|a| ctx.is_mine(a))?;
    let first = message.scheduling().next()?;
    let mut comp = Component::new(first.kind.clone());
    comp.entries
        .push(address_entry(ICalendarProperty::Organizer, organizer));
    comp.entries
        .push(address_entry(ICalendarProperty::Attendee, &me));
    if let Some(uid) = first.prop(&ICalendarProperty::Uid) {
        comp.entries.push(uid.clone());
    }
    comp.set_dtstamp(ctx.now);
    // What RFC 5546 3.2.6 asks of a REFRESH, and nothing the sender wrote but the UID: it may
    // go to whoever claims to be the organizer, and must not carry his text to anyone.
    let summary = Summary::of(
        SummaryKind::Update(Method::Refresh),
        Some(&comp),
        &message.tz_resolver(),
        false,
    );
    Some(ItipMessage {
        method: Method::Refresh,
        from: me,
        to: vec![organizer.clone()],
        summary,
        calendar: envelope(Method::Refresh, ctx.prodid, vec![comp], message),
    })
}

/// True when a REQUEST for single instances shows that the copy missed updates: it names an
/// instance the copy does not have, with a SEQUENCE more than one above the copy's (RFC 5546
/// 4.7.2, case 1).
fn missed_updates(stored: &Calendar, message: &Calendar) -> bool {
    if message.master().is_some() {
        return false;
    }
    let (tz_s, tz_m) = (stored.tz_resolver(), message.tz_resolver());
    let newest = |c: &Calendar| c.scheduling().map(Component::sequence).max().unwrap_or(0);
    let unknown = message
        .scheduling()
        .any(|m| stored.instance(&m.instance_key(&tz_m), &tz_s).is_none());
    unknown && newest(message) > newest(stored) + 1
}

fn from_attendee(
    ctx: &Context,
    method: Method,
    sender: &CalAddress,
    stored: &Calendar,
    message: &Calendar,
    organizer: Option<&CalAddress>,
) -> Result<Received, ItipError> {
    let replying: BTreeSet<CalAddress> = message
        .scheduling()
        .flat_map(|c| {
            c.attendees()
                .filter(|(_, e)| speaks_for(sender, e, Some(stored)))
                .map(|(a, _)| a)
                .collect::<Vec<_>>()
        })
        .collect();
    if replying.is_empty() {
        return Err(ItipError::SenderIsNotParticipant(sender.to_string()));
    }
    let i_organize = organizer.is_some_and(|o| ctx.is_mine(o));
    if !i_organize {
        // Only a delegate answering its delegator may REPLY to a non-organizer, and only one
        // the delegator's copy names.
        let my_delegate = method == Method::Reply
            && message.scheduling().any(|c| {
                c.attendees().any(|(a, e)| {
                    replying.contains(&a)
                        && param_addresses(e, &ICalendarParameterName::DelegatedFrom)
                            .iter()
                            .any(|d| {
                                ctx.is_mine(d)
                                    && stored.scheduling().any(|s| delegates_to(s, d, &a))
                            })
                })
            });
        if !my_delegate {
            return Err(ItipError::NotOrganizer);
        }
    }
    // Someone not on the list answers only as a delegate the stored copy already records
    // (its delegator's line names it): claiming DELEGATED-FROM is not enough.
    for address in &replying {
        let known = stored.scheduling().any(|c| {
            c.attendee(address).is_some()
                || c.attendees().any(|(d, _)| delegates_to(c, &d, address))
        });
        if known {
            continue;
        }
        // Someone the invitation was forwarded to (RFC 5546 4.2.8): the organizer decides.
        if i_organize && method == Method::Reply {
            return Ok(Received {
                proposal: Some(proposal(message, sender)),
                ..Received::default()
            });
        }
        return Err(ItipError::UnknownParticipant(address.to_string()));
    }
    match method {
        Method::Reply => Ok(Received::store(apply_reply(
            stored, message, sender, &replying, i_organize,
        ))),
        Method::Refresh => {
            let to = replying
                .iter()
                .next()
                .cloned()
                .unwrap_or_else(|| sender.clone());
            let organizer = organizer.cloned().ok_or(ItipError::NotOrganizer)?;
            Ok(Received {
                stored: None,
                responses: vec![refresh_answer(ctx, stored, &to, &organizer)],
                ..Received::default()
            })
        }
        _ => Ok(Received {
            proposal: Some(proposal(message, sender)),
            ..Received::default()
        }),
    }
}

/// A message kept for the organizer to decide on, marked with who sent it: a newer one from
/// the same sender replaces it.
fn proposal(message: &Calendar, sender: &CalAddress) -> Calendar {
    let mut kept = message.clone();
    kept.entries.retain(|e| e.name != proposed_by());
    kept.entries.push(address_entry(proposed_by(), sender));
    kept
}

/// Who sent a proposal kept for the organizer.
pub fn proposer(kept: &Calendar) -> Option<CalAddress> {
    kept.entries
        .iter()
        .find(|e| e.name == proposed_by())
        .and_then(entry_address)
}

/// Merges a REPLY into the organizer's copy (RFC 6638 sections 3.2.9 and 3.2.10).
/// SCHEDULE-STATUS is written only into the organizer's copy; a delegator's copy just
/// follows its delegate's answer. A delegate joins the list, or has its line marked as
/// delegated, only when the delegator itself sent the REPLY that delegates to it (RFC 5546
/// 4.2.5).
fn apply_reply(
    stored: &Calendar,
    message: &Calendar,
    sender: &CalAddress,
    replying: &BTreeSet<CalAddress>,
    organizer_copy: bool,
) -> Calendar {
    let mut copy = stored.clone();
    let (tz_c, tz_m) = (stored.tz_resolver(), message.tz_resolver());
    for m in message.scheduling() {
        match copy.instance_mut(&m.instance_key(&tz_m), &tz_c) {
            Some(existing) => answer(existing, m, sender, replying, organizer_copy),
            None => {
                // The organizer's copy records the answer for that instance as the attendee
                // sent it, as the acceptance scenarios require (rfc6638-recurring.txt: the
                // override holds the REPLY's lines, no DTSTART); CalDAV clients read it as an
                // exception of the series.
                let mut added = m.clone();
                added.remove(&ICalendarProperty::RequestStatus);
                added
                    .children
                    .retain(|c| c.kind != ICalendarComponentType::VAlarm);
                copy.components.push(added);
            }
        }
    }
    copy
}

/// The organizer's line for an attendee after its answer: the answer's participation, RSVP
/// and delegation, and what the organizer wrote about the attendee (role, name, type) kept where
/// the answer leaves it out.
fn answered(current: &ICalendarEntry, answer: ICalendarEntry) -> ICalendarEntry {
    let mut line = answer;
    // A reply without PARTSTAT (an error status: RFC 5546 4.4.10) answers nothing.
    let answers = line
        .params
        .iter()
        .any(|p| p.name == ICalendarParameterName::Partstat);
    let kept: Vec<_> = current
        .params
        .iter()
        .filter(|p| {
            let answer_part = matches!(
                p.name,
                ICalendarParameterName::Partstat
                    | ICalendarParameterName::Rsvp
                    | ICalendarParameterName::DelegatedTo
                    | ICalendarParameterName::DelegatedFrom
            );
            let delivery = matches!(
                p.name,
                ICalendarParameterName::ScheduleStatus | ICalendarParameterName::ScheduleForceSend
            );
            let answered_anew = answer_part && answers;
            let restated = line.params.iter().any(|q| q.name == p.name);
            !(answered_anew || delivery || restated)
        })
        .cloned()
        .collect();
    line.params.extend(kept);
    line
}

/// Applies one component of a REPLY to the matching component of the copy.
fn answer(
    existing: &mut Component,
    m: &Component,
    sender: &CalAddress,
    replying: &BTreeSet<CalAddress>,
    organizer_copy: bool,
) {
    let status = m
        .prop(&ICalendarProperty::RequestStatus)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .map(|code| code.trim().to_string());
    // The sender's line as it was: the role its delegates take.
    let delegator = existing.attendee(sender).cloned();
    for (address, e) in m.attendees() {
        let mut line = e.clone();
        strip_schedule_params(&mut line);
        if replying.contains(&address) {
            // RFC 6638 3.2.9: the REPLY's REQUEST-STATUS; one that says nothing (RFC 5546 lets
            // it, Cyrus never says) is a success, 2.0, where the copy recorded the delivery of
            // the invitation (a copy that recorded nothing stays so, as the acceptance
            // scenarios have it).
            let recorded = existing.attendee(&address).is_some_and(|e| {
                super::calendar::param(e, &ICalendarParameterName::ScheduleStatus).is_some()
            });
            let code = status
                .clone()
                .or_else(|| recorded.then(|| "2.0".to_string()));
            // An override that only records answers (made from a REPLY, without DTSTART: see
            // `apply_reply`) keeps them as the REPLY gave them, also when it comes again.
            let answers_only = existing.prop(&ICalendarProperty::RecurrenceId).is_some()
                && existing.prop(&ICalendarProperty::Dtstart).is_none();
            let records = organizer_copy && !answers_only;
            if let Some(code) = code.filter(|_| records) {
                set_param(
                    &mut line,
                    ICalendarParameterName::ScheduleStatus,
                    ICalendarParameterValue::Text(code),
                );
            }
        } else if !(param_addresses(e, &ICalendarParameterName::DelegatedFrom).contains(sender)
            && delegates_to(m, sender, &address))
        {
            continue;
        }
        let delegate = !replying.contains(&address);
        match existing.attendee_mut(&address) {
            Some(slot) => {
                let before = slot.clone();
                *slot = answered(slot, line);
                if let Some(delegator) = delegator.as_ref().filter(|_| delegate) {
                    take_role(slot, Some(&before), delegator);
                }
            }
            None => {
                if let Some(delegator) = delegator.as_ref().filter(|_| delegate) {
                    take_role(&mut line, None, delegator);
                }
                existing.entries.push(line);
            }
        }
    }
    if m.kind == ICalendarComponentType::VTodo {
        for prop in PROGRESS {
            if let Some(p) = m.prop(&prop) {
                existing.set(p.clone());
            }
        }
    }
}

/// The organizer's answer to a REFRESH: the current object for that attendee.
fn refresh_answer(
    ctx: &Context,
    stored: &Calendar,
    to: &CalAddress,
    organizer: &CalAddress,
) -> ItipMessage {
    let tz = stored.tz_resolver();
    let in_master = stored.master().is_some_and(|m| m.attendee(to).is_some());
    let comps = stored
        .scheduling()
        .filter(|c| in_master || c.attendee(to).is_some())
        .map(|c| outgoing(c, ctx.now))
        .collect();
    let first = stored.master().or_else(|| stored.scheduling().next());
    ItipMessage {
        method: Method::Request,
        from: organizer.clone(),
        to: vec![to.clone()],
        summary: Summary::of(SummaryKind::Invite, first, &tz, true),
        calendar: envelope(Method::Request, ctx.prodid, comps, stored),
    }
}
