//! The engine's error taxonomy: every refusal has a name (the names of the scenario language).

use thiserror::Error;

/// Why the engine refused a write or a message, or why it had nothing to send.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ItipError {
    /// The object lacks what scheduling needs: a plain calendar object.
    #[error("NoSchedulingInfo")]
    NoSchedulingInfo(Missing),
    /// SCHEDULE-AGENT says a client, not this server, does the scheduling.
    #[error("OtherSchedulingAgent")]
    OtherSchedulingAgent,
    /// The operation needs the organizer, and the calendar user is not it.
    #[error("NotOrganizer")]
    NotOrganizer,
    /// The writer is neither the organizer nor an attendee of the object.
    #[error("NotOrganizerNorAttendee")]
    NotOrganizerNorAttendee,
    /// The change is valid but concerns nobody else.
    #[error("NothingToSend")]
    NothingToSend,
    /// A component has no UID.
    #[error("MissingUid")]
    MissingUid,
    /// A series of events has no DTSTART.
    #[error("MissingDtstart")]
    MissingDtstart,
    /// The components carry more than one UID.
    #[error("MultipleUid")]
    MultipleUid,
    /// The components name more than one organizer.
    #[error("MultipleOrganizer")]
    MultipleOrganizer,
    /// VEVENT and VTODO mixed in one object.
    #[error("MultipleObjectTypes")]
    MultipleObjectTypes,
    /// Two components for the same instance (or two masters).
    #[error("MultipleObjectInstances")]
    MultipleObjectInstances,
    /// An attendee changed a property only the organizer may change.
    #[error("CannotModifyProperty({0})")]
    CannotModifyProperty(String),
    /// An attendee added or removed an instance in a way only the organizer may.
    #[error("CannotModifyInstance")]
    CannotModifyInstance,
    /// An attendee added or removed calendar user addresses.
    #[error("CannotModifyAddress")]
    CannotModifyAddress,
    /// The organizer differs from the one of the stored object (UID take-over).
    #[error("OrganizerMismatch")]
    OrganizerMismatch,
    /// An iTIP message without METHOD.
    #[error("MissingMethod")]
    MissingMethod,
    /// An iTIP message whose components are neither VEVENT nor VTODO.
    #[error("InvalidComponentType")]
    InvalidComponentType,
    /// An iTIP message older than the stored copy.
    #[error("OutOfSequence")]
    OutOfSequence,
    /// A message from outside claims that the recipient itself organizes the object.
    #[error("OrganizerIsLocalAddress")]
    OrganizerIsLocalAddress,
    /// The sender is neither the organizer nor an attendee.
    #[error("SenderIsNotOrganizerNorAttendee")]
    SenderIsNotOrganizerNorAttendee,
    /// The sender does not speak for the attendee it replies as.
    #[error("SenderIsNotParticipant({0})")]
    SenderIsNotParticipant(String),
    /// The replying attendee is not in the organizer's copy.
    #[error("UnknownParticipant({0})")]
    UnknownParticipant(String),
    /// A METHOD this engine does not process.
    #[error("UnsupportedMethod({0})")]
    UnsupportedMethod(String),
    /// The iCalendar text cannot be parsed.
    #[error("ICalendarParseError")]
    ICalendarParseError,
    /// The message refers to an object the recipient does not have.
    #[error("EventNotFound")]
    EventNotFound,
}

/// What an object lacks for scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No VEVENT or VTODO.
    Component,
    /// No ORGANIZER.
    Organizer,
    /// No ATTENDEE other than the organizer.
    Attendees,
}

/// What kind of refusal an error is, so that every front answers it alike: each front maps a
/// class once (SMTP/LMTP replies in `inbound::verdict`, HTTP statuses in `http`, outcomes of
/// local deliveries in `outbound::local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Not a usable scheduling object: refused for good (554 5.6.0, HTTP 400).
    Malformed,
    /// Whoever sent or wrote it may not do this: refused by policy (550 5.7.1, HTTP 403).
    Forbidden,
    /// Valid, but stale or pointless for this calendar: accepted and dropped.
    Ignored,
    /// Not this calendar user's business: it is named neither as organizer nor as attendee.
    /// Mail is accepted and dropped (a mailing list that delivered it must not unsubscribe
    /// the user); a client's write is refused (HTTP 403).
    NotConcerned,
}

impl ItipError {
    /// The class of the error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::ICalendarParseError
            | Self::MissingMethod
            | Self::InvalidComponentType
            | Self::UnsupportedMethod(_)
            | Self::MissingUid
            | Self::MissingDtstart
            | Self::MultipleUid
            | Self::MultipleOrganizer
            | Self::MultipleObjectTypes
            | Self::MultipleObjectInstances
            | Self::NoSchedulingInfo(_) => ErrorClass::Malformed,
            Self::SenderIsNotOrganizerNorAttendee
            | Self::SenderIsNotParticipant(_)
            | Self::NotOrganizer
            | Self::OrganizerIsLocalAddress
            | Self::OrganizerMismatch
            | Self::UnknownParticipant(_)
            | Self::CannotModifyProperty(_)
            | Self::CannotModifyInstance
            | Self::CannotModifyAddress => ErrorClass::Forbidden,
            Self::OutOfSequence
            | Self::EventNotFound
            | Self::NothingToSend
            | Self::OtherSchedulingAgent => ErrorClass::Ignored,
            Self::NotOrganizerNorAttendee => ErrorClass::NotConcerned,
        }
    }

    /// A sentence an operator or a user can read, for HTTP bodies and logs.
    pub fn explain(&self) -> String {
        match self {
            Self::NoSchedulingInfo(Missing::Component) => {
                "the object holds no event or to-do".into()
            }
            Self::NoSchedulingInfo(Missing::Organizer) => "the object names no organizer".into(),
            Self::NoSchedulingInfo(Missing::Attendees) => "the object names no attendees".into(),
            Self::OtherSchedulingAgent => "SCHEDULE-AGENT hands scheduling to the client".into(),
            Self::NotOrganizer => "only the organizer may do this".into(),
            Self::NotOrganizerNorAttendee => {
                "the calendar user is neither the organizer nor an attendee".into()
            }
            Self::NothingToSend => "the change concerns nobody else".into(),
            Self::MissingUid => "a component has no UID".into(),
            Self::MissingDtstart => "an event has no DTSTART (RFC 5545 3.6.1)".into(),
            Self::MultipleUid => "the object carries more than one UID".into(),
            Self::MultipleOrganizer => "the components name different organizers".into(),
            Self::MultipleObjectTypes => "VEVENT and VTODO are mixed".into(),
            Self::MultipleObjectInstances => "two components describe the same instance".into(),
            Self::CannotModifyProperty(p) => format!("an attendee may not change {p}"),
            Self::CannotModifyInstance => {
                "an attendee may not add or drop instances this way".into()
            }
            Self::CannotModifyAddress => "an attendee may not add or remove participants".into(),
            Self::OrganizerMismatch => "the organizer differs from the stored object's".into(),
            Self::MissingMethod => "the iTIP message has no METHOD".into(),
            Self::InvalidComponentType => "iTIP needs VEVENT or VTODO components".into(),
            Self::OutOfSequence => "the message is older than the stored copy".into(),
            Self::OrganizerIsLocalAddress => "the message claims the recipient organizes it".into(),
            Self::SenderIsNotOrganizerNorAttendee => {
                "the sender is neither organizer nor attendee".into()
            }
            Self::SenderIsNotParticipant(a) => format!("the sender may not speak for {a}"),
            Self::UnknownParticipant(a) => format!("{a} is not an attendee of the object"),
            Self::UnsupportedMethod(m) => format!("METHOD {m} is not supported"),
            Self::ICalendarParseError => "the iCalendar data cannot be parsed".into(),
            Self::EventNotFound => "no such object in the calendar".into(),
        }
    }
}
