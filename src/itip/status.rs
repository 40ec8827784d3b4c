//! SCHEDULE-STATUS (RFC 6638 section 3.2.9): what the server knows of the scheduling messages
//! it sent, on the ORGANIZER or ATTENDEE line of the recipient in the sender's copy. The server
//! writes it; clients should leave it alone, and a late write-back must not undo a newer one.

use super::CalAddress;
use super::calendar::{self, Calendar, Component, InstanceKey, entry_address, entry_is};
use calcard::icalendar::{
    ICalendarEntry, ICalendarParameterName, ICalendarParameterValue, ICalendarProperty,
};
use std::collections::{BTreeMap, BTreeSet};

/// What the server knows of a scheduling message it sent, as SCHEDULE-STATUS says it (RFC 6638
/// section 3.2.9 with RFC 5546 section 3.6's codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScheduleStatus {
    /// 1.0: queued, not yet delivered.
    Pending,
    /// 1.1: handed to the relay (or written to the spool).
    Sent,
    /// 1.2: delivered to a calendar of this server.
    Delivered,
    /// 3.7: the calendar user address is not one a message can go to.
    InvalidUser,
    /// 5.1: not delivered.
    NotDelivered,
    /// 5.2: the address was refused for good.
    AddressRefused,
    /// 5.3: refused by policy.
    PolicyRefused,
}

impl ScheduleStatus {
    /// The code as written in the parameter.
    pub fn code(self) -> &'static str {
        match self {
            Self::Pending => "1.0",
            Self::Sent => "1.1",
            Self::Delivered => "1.2",
            Self::InvalidUser => "3.7",
            Self::NotDelivered => "5.1",
            Self::AddressRefused => "5.2",
            Self::PolicyRefused => "5.3",
        }
    }

    /// What it means, for people.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Pending => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered here",
            Self::InvalidUser => "no address to send to",
            Self::NotDelivered => "not delivered",
            Self::AddressRefused => "address refused",
            Self::PolicyRefused => "refused by policy",
        }
    }
}

/// Records the status of a new message to `recipient` (RFC 6638 section 3.2.9): the
/// SCHEDULE-STATUS of its ATTENDEE in the organizer's copy, or of the ORGANIZER in an
/// attendee's copy when the recipient organizes, whatever it said before. SEQUENCE and
/// everything else stay as they are, so nothing new is sent. `None` when the copy already says
/// so or names nobody.
pub fn with_schedule_status(
    copy: &Calendar,
    recipient: &CalAddress,
    status: ScheduleStatus,
) -> Option<Calendar> {
    set_status(copy, recipient, status, |_| true)
}

/// Records what became of a message already sent (the outbound worker's write-back, a bounce)
/// where the copy still shows it in progress (1.x, or nothing): an answer that arrived in the
/// meantime (a REPLY's REQUEST-STATUS, 2.0) or a final status is newer, and stays.
pub fn with_delivery_status(
    copy: &Calendar,
    recipient: &CalAddress,
    status: ScheduleStatus,
) -> Option<Calendar> {
    set_status(copy, recipient, status, |current| {
        current.is_none_or(|code| code.trim().starts_with("1."))
    })
}

fn set_status(
    copy: &Calendar,
    recipient: &CalAddress,
    status: ScheduleStatus,
    replaces: impl Fn(Option<&str>) -> bool,
) -> Option<Calendar> {
    let status = status.code();
    let mut next = copy.clone();
    let mut changed = false;
    for comp in next.scheduling_mut() {
        let organizes = comp.organizer().as_ref() == Some(recipient);
        for entry in comp.entries.iter_mut() {
            let target = match entry.name {
                ICalendarProperty::Organizer => organizes,
                ICalendarProperty::Attendee => !organizes,
                _ => false,
            };
            if !target || entry_address(entry).as_ref() != Some(recipient) {
                continue;
            }
            let current = calendar::param_text(entry, &ICalendarParameterName::ScheduleStatus);
            if current.as_deref() != Some(status) && replaces(current.as_deref()) {
                calendar::set_param(
                    entry,
                    ICalendarParameterName::ScheduleStatus,
                    ICalendarParameterValue::Text(status.into()),
                );
                changed = true;
            }
        }
    }
    changed.then_some(next)
}

/// A client's new version keeps the SCHEDULE-STATUS the server wrote on each ORGANIZER or
/// ATTENDEE line that it sends back without one (clients SHOULD NOT remove it, RFC 6638
/// section 3.2.9; many PUT back a copy fetched before the write-back), but for the addresses
/// `written_to` by this very version, whose old status no longer applies. A line for another
/// address starts without; a status the client sent stands.
pub fn keep_written(new: &mut Calendar, old: &Calendar, written_to: &BTreeSet<CalAddress>) {
    // A copy the server never wrote a status into (no message delivered yet) has none to keep:
    // its instances are not even matched.
    let holds_any = (old.scheduling().flat_map(|c| c.entries.iter())).any(holds_status);
    if !holds_any {
        return;
    }
    for_each_prior(new, old, |comp, prior| {
        // The lines of the prior version that hold a status, found once: a copy has one at
        // most per line, often none (then no line of the new version is read for its address).
        let held: Vec<&ICalendarEntry> = prior.entries.iter().filter(|e| holds_status(e)).collect();
        if held.is_empty() {
            return;
        }
        for entry in comp.entries.iter_mut().filter(|e| is_participant(e)) {
            if status_of_line(entry).is_some() {
                continue;
            }
            let Some(address) = entry_address(entry).filter(|a| !written_to.contains(a)) else {
                continue;
            };
            let written = held
                .iter()
                .filter(|e| e.name == entry.name && entry_is(e, &address))
                .find_map(|e| status_of_line(e));
            if let Some(status) = written {
                calendar::set_param(
                    entry,
                    ICalendarParameterName::ScheduleStatus,
                    status.clone(),
                );
            }
        }
    });
}

/// True for an ORGANIZER or ATTENDEE line that carries a SCHEDULE-STATUS.
fn holds_status(entry: &ICalendarEntry) -> bool {
    is_participant(entry) && status_of_line(entry).is_some()
}

/// The SCHEDULE-STATUS of an ORGANIZER or ATTENDEE line.
fn status_of_line(entry: &ICalendarEntry) -> Option<&ICalendarParameterValue> {
    calendar::param(entry, &ICalendarParameterName::ScheduleStatus)
}

/// A client's version written with `If-Schedule-Tag-Match` over a copy into which answers
/// were merged since it read it (RFC 6638 3.2.10): each attendee keeps the PARTSTAT the
/// server holds, so that the organizer's save does not undo them. A reschedule still resets
/// them afterwards (the engine does that).
pub fn keep_answers(new: &mut Calendar, stored: &Calendar) {
    for_each_prior(new, stored, |comp, prior| {
        let attendees = comp
            .entries
            .iter_mut()
            .filter(|e| e.name == ICalendarProperty::Attendee);
        for entry in attendees {
            let Some(address) = entry_address(entry) else {
                continue;
            };
            let answer = prior
                .attendee(&address)
                .and_then(|e| calendar::param(e, &ICalendarParameterName::Partstat));
            if let Some(answer) = answer {
                calendar::set_param(entry, ICalendarParameterName::Partstat, answer.clone());
            }
        }
    });
}

/// Runs `merge` on each component of `new` with the component of `old` for the same instance.
fn for_each_prior(
    new: &mut Calendar,
    old: &Calendar,
    mut merge: impl FnMut(&mut Component, &Component),
) {
    let (tz_old, tz_new) = (old.tz_resolver(), new.tz_resolver());
    let before: BTreeMap<InstanceKey, &Component> = old
        .scheduling()
        .map(|c| (c.instance_key(&tz_old), c))
        .collect();
    for comp in new.scheduling_mut() {
        if let Some(prior) = before.get(&comp.instance_key(&tz_new)) {
            merge(comp, prior);
        }
    }
}

fn is_participant(entry: &ICalendarEntry) -> bool {
    matches!(
        entry.name,
        ICalendarProperty::Organizer | ICalendarProperty::Attendee
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(lines: &str) -> Calendar {
        Calendar::parse(&format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:s\r\n\
DTSTART:20260105T090000Z\r\nORGANIZER:mailto:olga@example.com\r\n{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
            lines.replace('\n', "\r\n")
        ))
        .unwrap()
    }

    fn status_of(cal: &Calendar, who: &str) -> Option<String> {
        let who = CalAddress::from_email(who).unwrap();
        let comp = cal.scheduling().next().unwrap();
        calendar::param_text(
            comp.attendee(&who)?,
            &ICalendarParameterName::ScheduleStatus,
        )
    }

    #[test]
    fn a_late_write_back_does_not_undo_an_answer() {
        let bob = CalAddress::from_email("bob@example.com").unwrap();
        let answered =
            copy("ATTENDEE;PARTSTAT=ACCEPTED;SCHEDULE-STATUS=2.0:mailto:bob@example.com");
        assert!(with_delivery_status(&answered, &bob, ScheduleStatus::Sent).is_none());
        let failed = copy("ATTENDEE;SCHEDULE-STATUS=5.1:mailto:bob@example.com");
        assert!(with_delivery_status(&failed, &bob, ScheduleStatus::Sent).is_none());
        let pending = copy("ATTENDEE;SCHEDULE-STATUS=1.0:mailto:bob@example.com");
        let sent = with_delivery_status(&pending, &bob, ScheduleStatus::Sent).unwrap();
        assert_eq!(status_of(&sent, "bob@example.com").as_deref(), Some("1.1"));
        let bounced = with_delivery_status(&sent, &bob, ScheduleStatus::NotDelivered).unwrap();
        assert_eq!(
            status_of(&bounced, "bob@example.com").as_deref(),
            Some("5.1")
        );
        // A new message starts over, whatever was there.
        let again = with_schedule_status(&answered, &bob, ScheduleStatus::Pending).unwrap();
        assert_eq!(status_of(&again, "bob@example.com").as_deref(), Some("1.0"));
    }

    #[test]
    fn a_copy_put_back_without_statuses_keeps_them() {
        let stored = copy(
            "ATTENDEE;SCHEDULE-STATUS=1.2:mailto:bob@example.com\nATTENDEE;SCHEDULE-STATUS=2.0:mailto:carol@example.com",
        );
        let mut new = copy(
            "ATTENDEE:MAILTO:Bob@Example.com\nATTENDEE;SCHEDULE-STATUS=1.1:mailto:carol@example.com\nATTENDEE:mailto:dan@example.com",
        );
        keep_written(&mut new, &stored, &BTreeSet::new());
        assert_eq!(status_of(&new, "bob@example.com").as_deref(), Some("1.2"));
        // Bob is sent something new by this version: his old status is gone.
        let mut again = copy("ATTENDEE:mailto:bob@example.com");
        let bob = CalAddress::from_email("bob@example.com").unwrap();
        keep_written(&mut again, &stored, &BTreeSet::from([bob]));
        assert_eq!(status_of(&again, "bob@example.com"), None);
        assert_eq!(status_of(&new, "bob@example.com").as_deref(), Some("1.2"));
        assert_eq!(status_of(&new, "carol@example.com").as_deref(), Some("1.1"));
        assert_eq!(status_of(&new, "dan@example.com"), None);
    }

    /// A status belongs to its line: the organizer's own ATTENDEE line keeps its status, her
    /// ORGANIZER line gets none of it; a copy holding no status changes nothing.
    #[test]
    fn a_status_stays_with_its_property() {
        let stored = copy("ATTENDEE;SCHEDULE-STATUS=1.2:mailto:olga@example.com");
        let mut new = copy("ATTENDEE:mailto:olga@example.com");
        keep_written(&mut new, &stored, &BTreeSet::new());
        assert_eq!(status_of(&new, "olga@example.com").as_deref(), Some("1.2"));
        let organizer = new.scheduling().next().unwrap();
        let organizer = organizer.prop(&ICalendarProperty::Organizer).unwrap();
        assert_eq!(status_of_line(organizer), None);

        let untouched = copy("ATTENDEE:mailto:olga@example.com");
        let mut again = untouched.clone();
        keep_written(&mut again, &untouched, &BTreeSet::new());
        assert_eq!(again, untouched);
    }
}
