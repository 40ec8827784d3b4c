//! The iTIP scheduling engine (RFC 5546, RFC 6638): pure functions from what a calendar
//! user stored and what arrives to what is stored next and which messages go to whom.
//! No I/O, no clock: "now", the PRODID and the user's addresses are arguments.

mod address;
mod attendee;
mod build;
mod calendar;
mod changes;
mod error;
mod inbound;
mod meaning;
mod merge;
mod message;
mod object;
mod organizer;
mod range;
mod status;
mod summary;
mod zones;

pub use address::{CalAddress, percent_decode};
pub use attendee::link_answer;
pub use build::partstat_of;
pub use calendar::stored_copy_flaw;
pub use calendar::{Calendar, Component, InstanceKey, timestamp_of, value_text};
pub use error::{ErrorClass, ItipError, Missing};
pub use inbound::proposer;
pub use message::{ItipMessage, Method};
pub use status::{ScheduleStatus, keep_answers, with_delivery_status, with_schedule_status};
pub use summary::{
    Field, FieldValue, Occurrence, Participant, Particulars, Summary, SummaryKind, Todo,
    particulars, web_address,
};
pub use zones::Zones;
pub use zones::by_name as zone_named;

/// What the engine is told about the calendar user it acts for.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The current instant, seconds since the epoch (DTSTAMP of everything generated).
    pub now: i64,
    /// The PRODID written into generated objects.
    pub prodid: &'a str,
    /// Every calendar user address of the account.
    pub addresses: &'a [CalAddress],
    /// The domain the message's sender is authenticated for (a DMARC pass by a trusted
    /// authserv-id), when it is: a SENT-BY of an organizer of that same domain then speaks for
    /// it in a new invitation (Microsoft 365's delegates). None for everything else.
    pub vouched_domain: Option<&'a str>,
}

impl Context<'_> {
    /// True when the address belongs to this account.
    pub fn is_mine(&self, address: &CalAddress) -> bool {
        self.addresses.contains(address)
    }
}

/// The result of a client's write: what to store and what to send.
#[derive(Debug, Clone)]
pub struct PutOutcome {
    /// The copy to store (the client's object with the server's changes).
    pub stored: Calendar,
    /// Scheduling messages to deliver.
    pub messages: Vec<ItipMessage>,
    /// Why nothing is sent, when nothing is.
    pub silent: Option<ItipError>,
}

/// The result of a client's removal: what to send.
#[derive(Debug, Clone, Default)]
pub struct DeleteOutcome {
    /// Scheduling messages to deliver.
    pub messages: Vec<ItipMessage>,
    /// Why nothing is sent, when nothing is.
    pub silent: Option<ItipError>,
}

/// Options of a removal.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeleteOptions {
    /// Send even to attendees whose SCHEDULE-AGENT is not SERVER.
    pub force_send: bool,
    /// `Schedule-Reply: F` (RFC 6638 section 8.1): an attendee's removal sends no REPLY.
    pub suppress_reply: bool,
}

/// The result of processing a received message.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The recipient's new copy; `None` leaves the stored copy as it is.
    pub stored: Option<Calendar>,
    /// Messages that answer this one (a REQUEST answering a REFRESH, ...).
    pub responses: Vec<ItipMessage>,
    /// What is kept for the organizer to decide on: a COUNTER proposal, or the answer of
    /// someone the invitation was forwarded to.
    pub proposal: Option<Calendar>,
    /// The attendee that forwarded this invitation to the recipient.
    pub forwarded_by: Option<CalAddress>,
}

impl PutOutcome {
    fn silent(stored: Calendar, why: ItipError) -> Self {
        PutOutcome {
            stored,
            messages: Vec::new(),
            silent: Some(why),
        }
    }
}

impl DeleteOutcome {
    fn silent(why: ItipError) -> Self {
        DeleteOutcome {
            messages: Vec::new(),
            silent: Some(why),
        }
    }
}

impl Received {
    fn store(copy: Calendar) -> Self {
        Received {
            stored: Some(copy),
            ..Default::default()
        }
    }
}

/// Implicit scheduling for a client's write of `new` over `old` (RFC 6638 section 3.2).
pub fn schedule_put(
    ctx: &Context,
    old: Option<&Calendar>,
    new: Calendar,
) -> Result<PutOutcome, ItipError> {
    // What is stored states when its events take place: a reply-shaped write has been
    // completed from the stored copy by now.
    let outcome = scheduled_put(ctx, old, new)?;
    object::series_have_start(&outcome.stored)?;
    Ok(outcome)
}

fn scheduled_put(
    ctx: &Context,
    old: Option<&Calendar>,
    new: Calendar,
) -> Result<PutOutcome, ItipError> {
    let Some(info) = object::inspect(&new)? else {
        return Ok(PutOutcome::silent(
            new,
            ItipError::NoSchedulingInfo(Missing::Component),
        ));
    };
    let old_info = old.and_then(|o| object::inspect(o).ok().flatten());
    let old_organizer = old_info.as_ref().and_then(|i| i.organizer.clone());
    let Some(organizer) = info.organizer.clone() else {
        return match (old, &old_organizer) {
            // A scheduling object turned into a plain one: that is a removal (3.2.3.1).
            (Some(old), Some(_)) => {
                let removal = schedule_delete(ctx, old, DeleteOptions::default())?;
                Ok(PutOutcome {
                    stored: new,
                    messages: removal.messages,
                    silent: removal.silent,
                })
            }
            _ => Ok(PutOutcome::silent(
                new,
                ItipError::NoSchedulingInfo(Missing::Organizer),
            )),
        };
    };
    if old_organizer.as_ref().is_some_and(|o| *o != organizer) {
        return Err(ItipError::OrganizerMismatch);
    }
    if let Some(before) = &old_info {
        if before.uid != info.uid {
            return Err(ItipError::MultipleUid);
        }
        if before.kind != info.kind {
            return Err(ItipError::MultipleObjectTypes);
        }
    }
    let had_attendees = old.is_some_and(|o| object::has_attendees(o, &organizer));
    if !object::has_attendees(&new, &organizer) && !had_attendees {
        return Ok(PutOutcome::silent(
            new,
            ItipError::NoSchedulingInfo(Missing::Attendees),
        ));
    }
    let old = old.filter(|_| old_organizer.is_some());
    let mut outcome = if ctx.is_mine(&organizer) {
        let old = old.zip(old_info.as_ref().map(|i| i.keys.as_slice()));
        organizer::put(ctx, old, (new, info.keys), &organizer, info.organizer_agent)
    } else {
        let mine = |cal: &Calendar| {
            cal.scheduling()
                .flat_map(|c| c.attendees().map(|(a, _)| a).collect::<Vec<_>>())
                .find(|a| ctx.is_mine(a))
        };
        let Some(me) = mine(&new) else {
            // Someone else's meeting that does not name the account (a colleague's, copied
            // into a personal calendar) is no scheduling object (RFC 6638 3.1): stored, and
            // nothing is sent. A copy that named the account cannot drop it that way.
            if old.and_then(mine).is_some() {
                return Err(ItipError::NotOrganizerNorAttendee);
            }
            return Ok(PutOutcome::silent(new, ItipError::NotOrganizerNorAttendee));
        };
        attendee::put(ctx, old, new, &me, &organizer, info.organizer_agent)?
    };
    if let Some(old) = old {
        // Those written to now get a status of this message's; the others keep theirs.
        let written_to: std::collections::BTreeSet<CalAddress> = outcome
            .messages
            .iter()
            .flat_map(|m| m.to.iter().cloned())
            .collect();
        status::keep_written(&mut outcome.stored, old, &written_to);
    }
    Ok(outcome)
}

/// Implicit scheduling for a client's removal of `old` (RFC 6638 section 3.2.1.3, 3.2.2.4).
pub fn schedule_delete(
    ctx: &Context,
    old: &Calendar,
    options: DeleteOptions,
) -> Result<DeleteOutcome, ItipError> {
    let Some(info) = object::inspect(old)? else {
        return Ok(DeleteOutcome::silent(ItipError::NoSchedulingInfo(
            Missing::Component,
        )));
    };
    let Some(organizer) = info.organizer else {
        return Ok(DeleteOutcome::silent(ItipError::NoSchedulingInfo(
            Missing::Organizer,
        )));
    };
    if ctx.is_mine(&organizer) {
        return Ok(organizer::delete(
            ctx,
            old,
            &organizer,
            info.organizer_agent,
            options.force_send,
        ));
    }
    let me = old
        .scheduling()
        .flat_map(|c| c.attendees().map(|(a, _)| a).collect::<Vec<_>>())
        .find(|a| ctx.is_mine(a));
    Ok(match me {
        Some(me) => attendee::delete(
            ctx,
            old,
            &me,
            &organizer,
            info.organizer_agent,
            options.suppress_reply,
        ),
        None => DeleteOutcome::silent(ItipError::NotOrganizerNorAttendee),
    })
}

/// Processes a message received from `sender` against the recipient's stored copy.
pub fn receive(
    ctx: &Context,
    sender: &CalAddress,
    stored: Option<&Calendar>,
    message: &Calendar,
) -> Result<Received, ItipError> {
    inbound::receive(ctx, sender, stored, message)
}

/// The title and start (seconds since the epoch) of the master or first component.
pub fn title_and_start(cal: &Calendar) -> (Option<String>, Option<i64>) {
    let Some(first) = cal.master().or_else(|| cal.scheduling().next()) else {
        return (None, None);
    };
    let tz = cal.tz_resolver();
    let start = first
        .prop(&calcard::icalendar::ICalendarProperty::Dtstart)
        .or_else(|| first.prop(&calcard::icalendar::ICalendarProperty::Due))
        .and_then(|e| calendar::timestamp_of(e, 0, &tz));
    (
        first
            .text(&calcard::icalendar::ICalendarProperty::Summary)
            .map(str::to_string),
        start,
    )
}

/// The organizer's current object restated to every attendee the server schedules for,
/// without a new SEQUENCE: how the other attendees learn each other's answers (RFC 6638
/// section 4.2). Empty unless the account organizes the object.
pub fn restate(ctx: &Context, stored: &Calendar) -> Vec<ItipMessage> {
    let Some(organizer) = object::inspect(stored)
        .ok()
        .flatten()
        .and_then(|i| i.organizer)
    else {
        return Vec::new();
    };
    if !ctx.is_mine(&organizer) {
        return Vec::new();
    }
    let mut to: Vec<CalAddress> = stored
        .scheduling()
        .flat_map(|c| object::recipients(c, &organizer, false))
        .collect();
    to.sort();
    to.dedup();
    if to.is_empty() {
        return Vec::new();
    }
    let tz = stored.tz_resolver();
    let comps = stored
        .scheduling()
        .map(|c| build::outgoing(c, ctx.now))
        .collect();
    let first = stored.master().or_else(|| stored.scheduling().next());
    vec![ItipMessage {
        method: Method::Request,
        from: organizer,
        to,
        summary: Summary::of(SummaryKind::Update(Method::Request), first, &tz, true),
        calendar: message::envelope(Method::Request, ctx.prodid, comps, stored),
    }]
}

/// For a REPLY kept for the organizer: the first attendee it answers for that the organizer's
/// copy does not list, and its PARTSTAT. `None` for anything else, or once the organizer has
/// added them all.
pub fn uninvited(kept: &Calendar, stored: Option<&Calendar>) -> Option<(CalAddress, String)> {
    if kept.method().and_then(|m| Method::parse(&m)) != Some(Method::Reply) {
        return None;
    }
    let listed =
        |a: &CalAddress| stored.is_some_and(|s| s.scheduling().any(|c| c.attendee(a).is_some()));
    kept.scheduling()
        .flat_map(|c| c.attendees())
        .find(|(a, _)| !listed(a))
        .map(|(a, e)| (a, build::partstat_of(e)))
}

/// The calendar users a message from `sender` claims to speak for (RFC 5546 section 1.4):
/// the ORGANIZER of what organizers send, whoever sent it; for what attendees send, the
/// ATTENDEEs that are the sender or name it as SENT-BY.
pub fn voices(method: Method, message: &Calendar, sender: &CalAddress) -> Vec<CalAddress> {
    use calcard::icalendar::ICalendarParameterName;
    let mut found: Vec<CalAddress> = if method.is_organizers() {
        message.scheduling().filter_map(|c| c.organizer()).collect()
    } else {
        message
            .scheduling()
            .flat_map(|c| {
                c.attendees()
                    .filter(|(a, e)| {
                        a == sender
                            || calendar::param_addresses(e, &ICalendarParameterName::SentBy)
                                .contains(sender)
                    })
                    .map(|(a, _)| a)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    found.sort();
    found.dedup();
    found
}

/// The attendees whose answer (PARTSTAT) differs between two copies of an object, attendees
/// that were not there before included: what telling the other attendees would be about.
pub fn changed_answers(before: &Calendar, after: &Calendar) -> Vec<CalAddress> {
    let (tz_b, tz_a) = (before.tz_resolver(), after.tz_resolver());
    let mut changed: Vec<CalAddress> = after
        .scheduling()
        .flat_map(|comp| {
            let earlier = before.instance(&comp.instance_key(&tz_a), &tz_b);
            comp.attendees()
                .filter(|(address, entry)| {
                    earlier
                        .and_then(|c| c.attendee(address))
                        .map(build::partstat_of)
                        != Some(build::partstat_of(entry))
                })
                .map(|(address, _)| address)
                .collect::<Vec<_>>()
        })
        .collect();
    changed.sort();
    changed.dedup();
    changed
}

/// True when a REPLY from this message would update a copy the account organizes.
pub fn organizes(ctx: &Context, stored: &Calendar) -> bool {
    object::inspect(stored)
        .ok()
        .flatten()
        .and_then(|i| i.organizer)
        .is_some_and(|o| ctx.is_mine(&o))
}

/// The IANA name of the zone a TZID stands for in this calendar ("UTC" for UTC and
/// floating times), for showing times to people.
pub fn display_zone(cal: &Calendar, tzid: Option<&str>) -> String {
    let zone = cal.tz_resolver().resolve_or_default(tzid);
    zone.name()
        .map(|n| n.to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "UTC".into())
}

/// When the master (or first) component ends: DTEND, DUE, or DTSTART plus DURATION.
pub fn end_of(cal: &Calendar) -> Option<i64> {
    use calcard::icalendar::{ICalendarProperty, ICalendarValue};
    let first = cal.master().or_else(|| cal.scheduling().next())?;
    let tz = cal.tz_resolver();
    for prop in [ICalendarProperty::Dtend, ICalendarProperty::Due] {
        if let Some(end) = first
            .prop(&prop)
            .and_then(|e| calendar::timestamp_of(e, 0, &tz))
        {
            return Some(end);
        }
    }
    let start = first
        .prop(&ICalendarProperty::Dtstart)
        .and_then(|e| calendar::timestamp_of(e, 0, &tz))?;
    match first
        .prop(&ICalendarProperty::Duration)
        .and_then(|e| e.values.first())
    {
        Some(ICalendarValue::Duration(d)) => Some(start + d.as_seconds()),
        _ => None,
    }
}

/// The UID of the scheduling object a calendar describes.
pub fn uid_of(cal: &Calendar) -> Option<&str> {
    // Journals and free/busy are kept too (CalDAV), though nothing schedules them.
    use calcard::icalendar::ICalendarComponentType::{VFreebusy, VJournal};
    let unscheduled = cal
        .components
        .iter()
        .filter(|c| matches!(c.kind, VJournal | VFreebusy));
    cal.scheduling().chain(unscheduled).find_map(|c| c.uid())
}
