//! The calendar objects and mails the tests send, built in one place.

/// A VEVENT (in a VCALENDAR) under construction.
#[derive(Debug, Clone)]
pub struct Event {
    method: Option<String>,
    lines: Vec<String>,
}

/// An event with this UID, a DTSTAMP and a start an hour long; no organizer yet.
pub fn event(uid: &str) -> Event {
    Event {
        method: None,
        lines: vec![
            format!("UID:{uid}"),
            "DTSTAMP:20261120T090000Z".into(),
            "DTSTART:20261201T100000Z".into(),
            "DTEND:20261201T110000Z".into(),
            "SUMMARY:Planning".into(),
        ],
    }
}

/// A component with this UID and a DTSTAMP only: the start of an iTIP message's body.
pub fn bare(uid: &str) -> Event {
    Event {
        method: None,
        lines: vec![format!("UID:{uid}"), "DTSTAMP:20261120T090000Z".into()],
    }
}

impl Event {
    /// An iTIP message rather than a stored object.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.into());
        self
    }

    /// Sets a property (the line replaces one with the same name).
    pub fn set(mut self, line: &str) -> Self {
        let name = |l: &str| l.split([':', ';']).next().unwrap_or("").to_string();
        let wanted = name(line);
        self.lines.retain(|l| name(l) != wanted);
        self.lines.push(line.into());
        self
    }

    /// Adds a property line as it is (ATTENDEE, EXDATE, ...).
    pub fn line(mut self, line: &str) -> Self {
        self.lines.push(line.into());
        self
    }

    /// SEQUENCE.
    pub fn sequence(self, n: u32) -> Self {
        self.set(&format!("SEQUENCE:{n}"))
    }

    /// The organizer, by address.
    pub fn organizer(self, address: &str) -> Self {
        self.set(&format!("ORGANIZER:mailto:{address}"))
    }

    /// An attendee, by address, asked to answer.
    pub fn attendee(self, address: &str) -> Self {
        self.line(&format!("ATTENDEE;RSVP=TRUE:mailto:{address}"))
    }

    /// The iCalendar text, CRLF lines.
    pub fn text(&self) -> String {
        let mut out =
            String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//imipd tests//EN\r\n");
        if let Some(method) = &self.method {
            out.push_str(&format!("METHOD:{method}\r\n"));
        }
        out.push_str("BEGIN:VEVENT\r\n");
        for line in &self.lines {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out + "END:VEVENT\r\nEND:VCALENDAR\r\n"
    }
}

/// A mail whose only part is this calendar; `headers` (From first) go before the MIME ones.
pub fn mail(headers: &str, method: &str, calendar: &str) -> String {
    format!(
        "{headers}\nSubject: calendar\nMIME-Version: 1.0\nContent-Type: text/calendar; method={method}; charset=utf-8\n\n{calendar}\n"
    )
}

/// A mail as calendar programs send invitations: a text part beside the calendar part.
pub fn invitation(from_header: &str, message_id: &str, calendar: &str) -> String {
    format!(
        "From: {from_header}\nTo: bob@example.com\nSubject: Invitation\nMessage-ID: <{message_id}>\nMIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nHello\n--b\n\
Content-Type: text/calendar; method=REQUEST; charset=utf-8\n\n{calendar}\n--b--\n"
    )
}
