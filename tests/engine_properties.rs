//! The engine's promises as properties of generated histories (issue 22): random series (daily
//! or weekly rules, exclusions, moved instances, three zones and all-day), written and edited
//! by an organizer, delivered to three attendees (two local, one outside: every account runs
//! its own engine, as two gateways exchanging what each sends would), answered per series or
//! per instance. Checked after every step: nothing panics, every stored copy reads back as
//! itself and names only instances of its series, a message applied twice is applied once,
//! the organizer's updates in any order end in the newest, and the organizer's copy agrees
//! with every attendee's on their answers.

use imipd::itip::{self, CalAddress, Calendar, Context, ItipError, ItipMessage};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const ORGANIZER: &str = "alice@example.com";
const ATTENDEES: [&str; 3] = [
    "bob@example.com",
    "carol@example.com",
    "olga@partner.example",
];
const UID: &str = "generated-1";

/// How the series writes its times.
#[derive(Debug, Clone, Copy)]
enum Form {
    Utc,
    Zone(&'static str),
    AllDay,
}

#[derive(Debug, Clone)]
struct Series {
    form: Form,
    /// Days after 2026-03-20 (so that the zones' spring change falls inside some series).
    first_day: i64,
    hour: u32,
    /// Days between instances, and how many there are (1: no rule).
    every: i64,
    count: usize,
    summary: u32,
    excluded: Vec<usize>,
    /// Instance index, and the minutes it moves (days for all-day).
    moved: BTreeMap<usize, i64>,
    /// Instances an attendee (by index) is left out of: an override without it.
    left_out: BTreeSet<(usize, usize)>,
}

/// What the organizer does next.
#[derive(Debug, Clone)]
enum Edit {
    Retitle,
    Move(i64),
    Exclude(usize),
    MoveOne(usize, i64),
    /// Leaves an attendee out of one instance, or puts it back.
    Toggle(usize, usize),
}

impl Series {
    fn start(&self, index: usize) -> chrono::NaiveDateTime {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 3, 20).unwrap()
            + chrono::Duration::days(self.first_day + self.every * index as i64);
        day.and_hms_opt(self.hour, 0, 0).unwrap()
    }

    fn stamp(&self, name: &str, at: chrono::NaiveDateTime) -> String {
        match self.form {
            Form::Utc => format!("{name}:{}Z", at.format("%Y%m%dT%H%M%S")),
            Form::Zone(zone) => format!("{name};TZID={zone}:{}", at.format("%Y%m%dT%H%M%S")),
            Form::AllDay => format!("{name};VALUE=DATE:{}", at.format("%Y%m%d")),
        }
    }

    fn shifted(&self, at: chrono::NaiveDateTime, by: i64) -> chrono::NaiveDateTime {
        match self.form {
            Form::AllDay => at + chrono::Duration::days(by.signum()),
            _ => at + chrono::Duration::minutes(by),
        }
    }

    fn end(&self, start: chrono::NaiveDateTime) -> chrono::NaiveDateTime {
        match self.form {
            Form::AllDay => start + chrono::Duration::days(1),
            _ => start + chrono::Duration::hours(1),
        }
    }

    fn component(&self, index: Option<usize>, attendees: &str) -> String {
        let mut lines = vec![format!("UID:{UID}"), "DTSTAMP:20260301T080000Z".into()];
        let start = match index {
            None => self.start(0),
            Some(i) => {
                lines.push(self.stamp("RECURRENCE-ID", self.start(i)));
                let by = self.moved.get(&i).copied().unwrap_or(0);
                self.shifted(self.start(i), by)
            }
        };
        lines.push(self.stamp("DTSTART", start));
        lines.push(self.stamp("DTEND", self.end(start)));
        if index.is_none() && self.count > 1 {
            lines.push(format!(
                "RRULE:FREQ=DAILY;INTERVAL={};COUNT={}",
                self.every, self.count
            ));
            for i in &self.excluded {
                lines.push(self.stamp("EXDATE", self.start(*i)));
            }
        }
        lines.push(format!("SUMMARY:Meeting {}", self.summary));
        lines.push(format!("ORGANIZER:mailto:{ORGANIZER}"));
        lines.push(attendees.trim_end().to_string());
        format!("BEGIN:VEVENT\r\n{}\r\nEND:VEVENT\r\n", lines.join("\r\n"))
    }

    /// The attendee lines of an instance (of the series: `None`).
    fn attendees(&self, instance: Option<usize>) -> String {
        std::iter::once(format!("ATTENDEE;PARTSTAT=ACCEPTED:mailto:{ORGANIZER}\r\n"))
            .chain(
                ATTENDEES
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| instance.is_none_or(|i| !self.left_out.contains(&(i, *j))))
                    .map(|(_, a)| format!("ATTENDEE;RSVP=TRUE:mailto:{a}\r\n")),
            )
            .collect()
    }

    /// The instances with an override: moved, or leaving someone out.
    fn overridden(&self) -> BTreeSet<usize> {
        self.moved
            .keys()
            .copied()
            .chain(self.left_out.iter().map(|(i, _)| *i))
            .filter(|i| !self.excluded.contains(i))
            .collect()
    }

    /// The object as the organizer's client writes it.
    fn text(&self) -> String {
        let mut text = String::from("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//gen//EN\r\n");
        text.push_str(&self.component(None, &self.attendees(None)));
        for i in self.overridden() {
            text.push_str(&self.component(Some(i), &self.attendees(Some(i))));
        }
        text.push_str("END:VCALENDAR\r\n");
        text
    }

    fn apply(&mut self, edit: &Edit) {
        match *edit {
            Edit::Retitle => self.summary += 1,
            Edit::Move(minutes) => {
                self.hour = (self.hour as i64 + minutes.signum()).clamp(6, 20) as u32
            }
            Edit::Exclude(i) if self.count > 1 && i % self.count != 0 => {
                let i = i % self.count;
                if !self.excluded.contains(&i) {
                    self.excluded.push(i);
                }
            }
            Edit::MoveOne(i, minutes) if self.count > 1 => {
                self.moved.insert(i % self.count, minutes);
            }
            Edit::Toggle(i, j) if self.count > 1 => {
                let at = (i % self.count, j);
                if !self.left_out.remove(&at) {
                    self.left_out.insert(at);
                }
            }
            _ => {}
        }
    }

    /// Every instance start as an instant (the zones' offsets from chrono-tz).
    fn instants(&self) -> Vec<i64> {
        (0..self.count)
            .map(|i| instant(self.form, self.start(i)))
            .collect()
    }
}

fn instant(form: Form, at: chrono::NaiveDateTime) -> i64 {
    use chrono::TimeZone;
    match form {
        Form::Zone(zone) => {
            let zone: chrono_tz::Tz = zone.parse().unwrap();
            zone.from_local_datetime(&at)
                .earliest()
                .unwrap()
                .timestamp()
        }
        // A date is read as the start of its day in UTC, as the engine reads it.
        Form::AllDay => at
            .date()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp(),
        Form::Utc => at.and_utc().timestamp(),
    }
}

fn series() -> impl Strategy<Value = Series> {
    let form = prop_oneof![
        Just(Form::Utc),
        Just(Form::Zone("Europe/Berlin")),
        Just(Form::Zone("America/New_York")),
        Just(Form::AllDay),
    ];
    (
        form,
        0i64..20,
        7u32..18,
        prop_oneof![Just(1i64), Just(7)],
        1usize..7,
    )
        .prop_map(|(form, first_day, hour, every, count)| Series {
            form,
            first_day,
            hour,
            every,
            count,
            summary: 0,
            excluded: vec![],
            moved: BTreeMap::new(),
            left_out: BTreeSet::new(),
        })
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        Just(Edit::Retitle),
        prop_oneof![Just(-60i64), Just(60)].prop_map(Edit::Move),
        (0usize..7).prop_map(Edit::Exclude),
        (0usize..7, prop_oneof![Just(-90i64), Just(30), Just(120)])
            .prop_map(|(i, m)| Edit::MoveOne(i, m)),
        (0usize..7, 0usize..3).prop_map(|(i, j)| Edit::Toggle(i, j)),
    ]
}

/// An attendee's answer: for the whole series, or for one instance.
#[derive(Debug, Clone)]
struct Answer {
    attendee: usize,
    instance: Option<usize>,
    partstat: &'static str,
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        0usize..2,
        proptest::option::of(0usize..7),
        prop_oneof![Just("ACCEPTED"), Just("DECLINED"), Just("TENTATIVE")],
    )
        .prop_map(|(attendee, instance, partstat)| Answer {
            attendee,
            instance,
            partstat,
        })
}

/// Every account's copy of the one object, each kept by its own engine.
#[derive(Default, Clone)]
struct World {
    now: i64,
    copies: BTreeMap<String, Calendar>,
}

fn address(email: &str) -> CalAddress {
    CalAddress::from_email(email).unwrap()
}

impl World {
    fn tick(&mut self) -> i64 {
        self.now += 60;
        1_772_000_000 + self.now
    }

    fn put(&mut self, who: &str, text: &str) -> Result<Vec<ItipMessage>, ItipError> {
        let addresses = [address(who)];
        let now = self.tick();
        let ctx = Context {
            now,
            prodid: "-//imipd properties//EN",
            addresses: &addresses,
            vouched_domain: None,
        };
        let new = Calendar::parse(text)?;
        let outcome = itip::schedule_put(&ctx, self.copies.get(who), new)?;
        self.keep(who, outcome.stored);
        Ok(outcome.messages)
    }

    /// Applies one message to one recipient's copy; `Err` leaves the copy as it was.
    fn receive(&mut self, to: &str, message: &ItipMessage) -> Result<Vec<ItipMessage>, ItipError> {
        let addresses = [address(to)];
        let now = self.tick();
        let ctx = Context {
            now,
            prodid: "-//imipd properties//EN",
            addresses: &addresses,
            vouched_domain: None,
        };
        let received = itip::receive(&ctx, &message.from, self.copies.get(to), &message.calendar)?;
        if let Some(copy) = received.stored {
            self.keep(to, copy);
        }
        Ok(received.responses)
    }

    /// Stores a copy as the daemon does: written as text and read back.
    fn keep(&mut self, who: &str, copy: Calendar) {
        let text = copy.to_string();
        let again = Calendar::parse(&text).expect("a stored copy reads back");
        assert_eq!(
            again.to_string(),
            text,
            "a stored copy reads back as itself"
        );
        self.copies.insert(who.to_string(), again);
    }

    /// Delivers messages and what answers them, each twice: the second changes nothing.
    fn deliver(&mut self, messages: Vec<ItipMessage>) {
        self.deliver_among(messages, &[]);
    }

    /// The same, to these accounts only (all when none are named).
    fn deliver_among(&mut self, messages: Vec<ItipMessage>, among: &[&str]) {
        let mut queue = messages;
        let mut rounds = 0;
        while let Some(message) = queue.pop() {
            rounds += 1;
            assert!(rounds < 200, "messages answer each other without end");
            for to in message.to.iter().map(|a| a.to_string()) {
                let email = to.trim_start_matches("mailto:").to_lowercase();
                if !among.is_empty() && !among.contains(&email.as_str()) {
                    continue;
                }
                if let Ok(responses) = self.receive(&email, &message) {
                    queue.extend(responses);
                }
                let once = self.copies.get(&email).map(Calendar::to_string);
                let _ = self.receive(&email, &message);
                let twice = self.copies.get(&email).map(Calendar::to_string);
                assert_eq!(once, twice, "{email} applied a message twice");
            }
        }
    }

    fn text(&self, who: &str) -> Option<String> {
        self.copies
            .get(who)
            .map(|c| c.to_string().replace("\r\n ", ""))
    }
}

/// The PARTSTAT an attendee line gives `who` in each component of a copy, by RECURRENCE-ID.
fn partstats(copy: &str, who: &str) -> BTreeMap<Option<String>, String> {
    let mut out = BTreeMap::new();
    for event in copy.split("BEGIN:VEVENT").skip(1) {
        // A cancelled instance (one the attendee was left out of) holds no answer.
        if event.contains("STATUS:CANCELLED") {
            continue;
        }
        let rid = event
            .lines()
            .find(|l| l.starts_with("RECURRENCE-ID"))
            .map(|l| l.to_string());
        let line = event.lines().find(|l| {
            l.starts_with("ATTENDEE") && l.to_lowercase().ends_with(&format!("mailto:{who}"))
        });
        // A component without the attendee's line (an override made of other attendees'
        // answers) leaves the attendee's answer to the series.
        if let Some(line) = line {
            let stat = line
                .split([';', ':'])
                .find_map(|p| p.strip_prefix("PARTSTAT="))
                .unwrap_or("NEEDS-ACTION");
            out.insert(rid, stat.to_string());
        }
    }
    out
}

/// Every RECURRENCE-ID of a copy names an instance of the series, and every VEVENT of an
/// attendee's copy has its DTSTART (RFC 5545 3.6.1). The organizer's copy keeps an answer for
/// one instance as the REPLY brought it, as the acceptance scenarios require (issue 22, item 1).
fn check_copy(copy: &Calendar, series: &Series, organizers: bool) {
    // The rules the gateway checks before each commit in debug builds, on every copy here.
    if let Some(flaw) = itip::stored_copy_flaw(&copy.to_string()) {
        panic!("{flaw}:\n{copy}");
    }
    let instants = series.instants();
    let zones = copy.tz_resolver();
    for component in copy.scheduling() {
        if let Some(rid) = component.prop(&calcard::icalendar::ICalendarProperty::RecurrenceId) {
            let at = itip::timestamp_of(rid, 0, &zones).expect("a RECURRENCE-ID is a time");
            assert!(
                instants.contains(&at),
                "{at} is no instance of {instants:?}\n{copy}"
            );
        }
        if !organizers {
            assert!(
                component
                    .prop(&calcard::icalendar::ICalendarProperty::Dtstart)
                    .is_some(),
                "a VEVENT without DTSTART:\n{copy}"
            );
        }
    }
}

/// The attendee's client: its copy with its answer for the series, or for one instance (an
/// override of the series there, as clients write it, when the copy has none).
fn answered(world: &World, series: &Series, answer: &Answer) -> Option<String> {
    let who = ATTENDEES[answer.attendee];
    let copy = world.text(who)?;
    let set = |block: &str| -> String {
        block
            .lines()
            .map(|l| {
                if l.starts_with("ATTENDEE") && l.to_lowercase().ends_with(&format!("mailto:{who}"))
                {
                    format!("ATTENDEE;PARTSTAT={}:mailto:{who}", answer.partstat)
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let Some(index) = answer.instance.filter(|_| series.count > 1) else {
        return Some(set(&copy));
    };
    let index = index % series.count;
    if series.excluded.contains(&index) || series.left_out.contains(&(index, answer.attendee)) {
        return None;
    }
    let rid = series.stamp("RECURRENCE-ID", series.start(index));
    if copy.contains(&rid) {
        let blocks: Vec<String> = copy
            .split_inclusive("END:VEVENT\r\n")
            .map(|b| {
                if b.contains(&rid) {
                    set(b) + "\r\n"
                } else {
                    b.to_string()
                }
            })
            .collect();
        return Some(blocks.concat());
    }
    let attendees = series.attendees(Some(index));
    let mut model = series.clone();
    model.moved.insert(index, 0);
    let added = set(&model.component(Some(index), &attendees)) + "\r\n";
    Some(copy.replace("END:VCALENDAR", &format!("{added}END:VCALENDAR")))
}

fn run(series: Series, edits: Vec<Edit>, answers: Vec<Answer>) {
    let mut model = series;
    let mut world = World::default();
    let mut updates = Vec::new();
    let first = world
        .put(ORGANIZER, &model.text())
        .expect("the organizer's write");
    updates.push(first.clone());
    world.deliver(first);
    for edit in &edits {
        model.apply(edit);
        let sent = world
            .put(ORGANIZER, &model.text())
            .expect("the organizer's edit");
        updates.push(sent.clone());
        world.deliver(sent);
    }
    for who in ATTENDEES {
        check_copy(&world.copies[who], &model, false);
    }
    participation_agrees(&world, &model);
    if numbered_in_order(&edits) {
        updates_in_any_order_end_in_the_newest(&updates, &world, &model, &edits);
    }
    for answer in &answers {
        let Some(text) = answered(&world, &model, answer) else {
            continue;
        };
        let who = ATTENDEES[answer.attendee];
        if let Ok(sent) = world.put(who, &text) {
            world.deliver(sent);
        }
        check_copy(&world.copies[who], &model, false);
        check_copy(&world.copies[ORGANIZER], &model, true);
    }
    answers_agree(&world);
}

/// False for the one history whose order no recipient can tell: an instance moved twice (its
/// SEQUENCE now past the series') and then the whole series moved, which drops that instance
/// with a SEQUENCE below it. The acceptance scenarios fix that numbering (the series' own
/// SEQUENCE plus one: rfc5546-event-recurring.txt:733), so a late copy of the second move
/// still passes for newer than the moved series.
fn numbered_in_order(edits: &[Edit]) -> bool {
    let mut moved_instances = 0;
    for edit in edits {
        match edit {
            Edit::MoveOne(..) => moved_instances += 1,
            Edit::Move(_) if moved_instances >= 2 => return false,
            _ => {}
        }
    }
    true
}

/// Each attendee that received the organizer's updates in reverse order (and asked for what it
/// could not place: an ADD for a copy it lacks is answered by a REFRESH) ends with the copy of
/// one that received them in order.
///
/// An attendee left out of an instance hears it as a CANCEL of that instance, or, when that
/// CANCEL comes before anything else (and is answered by a REFRESH), from the series that
/// excludes it: the same instances, written differently, so those histories compare by
/// which instances each attendee takes part in.
fn updates_in_any_order_end_in_the_newest(
    updates: &[Vec<ItipMessage>],
    world: &World,
    series: &Series,
    edits: &[Edit],
) {
    let by_meaning = edits.iter().any(|e| matches!(e, Edit::Toggle(..)));
    for who in ATTENDEES {
        let mut reversed = world.clone();
        reversed.copies.remove(who);
        for sent in updates.iter().rev() {
            reversed.deliver_among(sent.clone(), &[who, ORGANIZER]);
        }
        if by_meaning {
            assert_eq!(
                participation(&reversed, series, who),
                participation(world, series, who),
                "{who}: updates in reverse order\nreversed:\n{}\nin order:\n{}",
                reversed.text(who).unwrap_or_default(),
                world.text(who).unwrap_or_default(),
            );
        } else {
            assert_eq!(
                strip_stamps(reversed.text(who)),
                strip_stamps(world.text(who)),
                "{who}: updates in reverse order"
            );
        }
    }
}

/// The instances (not excluded by the organizer) an attendee's copy shows it taking part in.
fn participation(world: &World, series: &Series, who: &str) -> Vec<bool> {
    let copy = world.text(who).unwrap_or_default();
    (0..series.count)
        .filter(|i| !series.excluded.contains(i))
        .map(|i| {
            let rid = series.stamp("RECURRENCE-ID", series.start(i));
            let value = rid.rsplit(':').next().unwrap().to_string();
            takes_part(&copy, who, &rid, &value)
        })
        .collect()
}

/// A copy as content: its components and their lines in any order, DTSTAMPs aside.
fn strip_stamps(text: Option<String>) -> Option<Vec<Vec<String>>> {
    text.map(|t| {
        let mut components: Vec<Vec<String>> = t
            .split("BEGIN:V")
            .map(|block| {
                let mut lines: Vec<String> = block
                    .lines()
                    .filter(|l| !l.starts_with("DTSTAMP") && !l.starts_with("END:"))
                    .map(str::to_string)
                    .collect();
                lines.sort();
                lines
            })
            .collect();
        components.sort();
        components
    })
}

/// Each attendee's copy holds, of the instances not excluded, those the organizer has it on,
/// and no other: an instance it was left out of is excluded or cancelled there.
fn participation_agrees(world: &World, series: &Series) {
    for (j, who) in ATTENDEES.iter().enumerate() {
        let copy = world.text(who).expect("every attendee has a copy");
        for i in (0..series.count).filter(|i| !series.excluded.contains(i)) {
            let rid = series.stamp("RECURRENCE-ID", series.start(i));
            let value = rid.rsplit(':').next().unwrap();
            let expected = !series.left_out.contains(&(i, j));
            assert_eq!(
                takes_part(&copy, who, &rid, value),
                expected,
                "{who} in instance {i} ({rid})\norganizer:\n{}\n{who}:\n{copy}",
                world.text(ORGANIZER).unwrap()
            );
        }
    }
}

/// Whether a copy shows its owner at an instance: its override, not cancelled and naming it,
/// or else the series without that instance excluded.
fn takes_part(copy: &str, who: &str, rid: &str, value: &str) -> bool {
    let events: Vec<&str> = copy.split("BEGIN:VEVENT").skip(1).collect();
    if let Some(event) = events.iter().find(|e| e.lines().any(|l| l == rid)) {
        return !event.contains("STATUS:CANCELLED")
            && event.lines().any(|l| {
                l.starts_with("ATTENDEE") && l.to_lowercase().ends_with(&format!("mailto:{who}"))
            });
    }
    events
        .iter()
        .find(|e| !e.contains("RECURRENCE-ID"))
        .is_some_and(|series| {
            !series
                .lines()
                .filter(|l| l.starts_with("EXDATE"))
                .filter_map(|l| l.rsplit(':').next())
                .any(|values| values.split(',').any(|v| v == value))
        })
}

/// For every instance an attendee answered, the organizer's copy says what the attendee's does.
fn answers_agree(world: &World) {
    let organizer = world.text(ORGANIZER).unwrap();
    for who in &ATTENDEES[..2] {
        let Some(copy) = world.text(who) else {
            continue;
        };
        let theirs = partstats(&copy, who);
        let recorded = partstats(&organizer, who);
        for (rid, stat) in &theirs {
            let mine = recorded
                .get(rid)
                .or_else(|| recorded.get(&None))
                .expect("recorded");
            assert_eq!(
                mine, stat,
                "{who} at {rid:?}\norganizer:\n{organizer}\n{who}:\n{copy}"
            );
        }
    }
}

/// A shrunk failure of the generated histories (CI, 2026-12-04): Bob left out of an instance,
/// the series retitled (restated to him with that instance excluded), then Bob put back (the
/// override removed): his copy kept the organizer's exclusion as if it were his own.
#[test]
fn an_attendee_put_back_on_an_instance_after_a_restated_series_takes_part_again() {
    let series = Series {
        form: Form::Utc,
        first_day: 0,
        hour: 7,
        every: 1,
        count: 5,
        summary: 0,
        excluded: vec![],
        moved: BTreeMap::new(),
        left_out: BTreeSet::new(),
    };
    run(
        series,
        vec![Edit::Toggle(1, 0), Edit::Retitle, Edit::Toggle(6, 0)],
        vec![],
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_histories_keep_the_engines_promises(
        series in series(),
        edits in proptest::collection::vec(edit(), 0..4),
        answers in proptest::collection::vec(answer(), 0..4),
    ) {
        run(series, edits, answers);
    }
}
