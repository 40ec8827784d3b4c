//! The scenario runner: replays scenario files against the engine, in-process.

mod compare;
mod script;

use crate::itip::{self, CalAddress, Calendar, Context, DeleteOptions, ItipError, ItipMessage};
use compare::Stamps;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The PRODID the shared scenarios were written with.
pub const PRODID: &str = "-//Stalwart Labs LLC//Stalwart Server//EN";
/// The fixed "now" of a run, 2030-01-01T00:00:00Z: later than any DTSTAMP a scenario
/// writes, as the real clock would be.
pub const NOW: i64 = 1_893_456_000;

/// A step that did not produce what the file expects.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The scenario file.
    pub file: String,
    /// Line of the step.
    pub line: usize,
    /// The step's name (its comment).
    pub name: String,
    /// What the file expects.
    pub expected: String,
    /// What the engine produced.
    pub actual: String,
}

/// Totals over the steps of one or more files.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Steps that passed.
    pub passed: usize,
    /// Steps that failed, with details.
    pub failures: Vec<Failure>,
}

enum Pending {
    Nothing,
    Messages(Vec<ItipMessage>),
    Error(ItipError),
    Itip {
        from: String,
        to: Vec<String>,
        text: String,
    },
}

/// The in-memory calendars of a scenario and its pending result.
struct World {
    calendars: BTreeMap<(String, String), Calendar>,
    counters: Vec<(String, Calendar)>,
    pending: Pending,
    stamps: Stamps,
}

impl Report {
    /// Adds another report's counts.
    pub fn merge(&mut self, other: Report) {
        self.passed += other.passed;
        self.failures.extend(other.failures);
    }

    /// The closing line: `N passed, N failed`.
    pub fn totals(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failures.len())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "FAILED {}:{} ({})", self.file, self.line, self.name)?;
        writeln!(f, "--- expected")?;
        writeln!(f, "{}", self.expected.trim_end())?;
        writeln!(f, "--- actual")?;
        writeln!(f, "{}", self.actual.trim_end())
    }
}

/// Rewrites a scenario file with the engine's actual output as the payload of every
/// `get`, `expect` and `send` step (DTSTAMP values numbered), for writing new scenarios:
/// the result must be read and judged before it is kept.
pub fn bless(text: &str) -> String {
    let mut world = World {
        calendars: BTreeMap::new(),
        counters: Vec::new(),
        pending: Pending::Nothing,
        stamps: Stamps::default(),
    };
    let mut numbers: Vec<String> = Vec::new();
    let mut actuals: BTreeMap<usize, String> = BTreeMap::new();
    for step in script::parse(text) {
        let actual = match step.command.as_str() {
            "get" | "expect" | "send" => {
                let actual = match step.command.as_str() {
                    "get" => world
                        .calendars
                        .get(&(step.args[0].to_lowercase(), step.args[1].clone()))
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| ItipError::EventNotFound.to_string()),
                    "expect" => world.print_pending(),
                    _ => world.send(),
                };
                Some(number_stamps(&actual, &mut numbers))
            }
            _ => {
                let _ = world.step(&step);
                None
            }
        };
        if let Some(actual) = actual {
            actuals.insert(step.line, actual);
        }
    }
    let mut out = String::new();
    let mut skipping = false;
    for (index, line) in text.lines().enumerate() {
        if skipping {
            if line.trim().is_empty() {
                skipping = false;
            } else {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
        if let Some(actual) = actuals.get(&(index + 1)) {
            for l in actual.lines().filter(|l| !l.trim().is_empty()) {
                out.push_str(l.trim_end_matches('\r'));
                out.push('\n');
            }
            skipping = true;
        }
    }
    out
}

fn number_stamps(text: &str, numbers: &mut Vec<String>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        match line.trim_end_matches('\r').strip_prefix("DTSTAMP:") {
            Some(value) => {
                let n = numbers.iter().position(|v| v == value).unwrap_or_else(|| {
                    numbers.push(value.to_string());
                    numbers.len() - 1
                });
                let _ = writeln!(out, "DTSTAMP:{n}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Runs one scenario file given its name and text.
pub fn run(file: &str, text: &str) -> Report {
    let mut world = World {
        calendars: BTreeMap::new(),
        counters: Vec::new(),
        pending: Pending::Nothing,
        stamps: Stamps::default(),
    };
    let mut report = Report::default();
    for step in script::parse(text) {
        let result = world.step(&step);
        match result {
            Ok(()) => report.passed += 1,
            Err((expected, actual)) => report.failures.push(Failure {
                file: file.to_string(),
                line: step.line,
                name: step.name.clone(),
                expected,
                actual,
            }),
        }
    }
    report
}

fn address(account: &str) -> Vec<CalAddress> {
    CalAddress::from_email(account).into_iter().collect()
}

impl World {
    fn step(&mut self, step: &script::Step) -> Result<(), (String, String)> {
        let arg = |i: usize| step.args.get(i).cloned().unwrap_or_default();
        match step.command.as_str() {
            "put" => {
                let (account, name) = (arg(0).to_lowercase(), arg(1));
                let addresses = address(&account);
                let ctx = context(&addresses);
                self.pending = match Calendar::parse(&step.payload) {
                    Err(e) => Pending::Error(e),
                    Ok(new) => {
                        let key = (account, name);
                        match itip::schedule_put(&ctx, self.calendars.get(&key), new) {
                            Ok(outcome) => {
                                self.calendars.insert(key, outcome.stored);
                                pending_of(outcome.messages, outcome.silent)
                            }
                            Err(e) => Pending::Error(e),
                        }
                    }
                };
                Ok(())
            }
            "delete" | "delete-force-send" => {
                let key = (arg(0).to_lowercase(), arg(1));
                let addresses = address(&key.0);
                let ctx = context(&addresses);
                self.pending = match self.calendars.remove(&key) {
                    None => Pending::Error(ItipError::EventNotFound),
                    Some(old) => {
                        let options = DeleteOptions {
                            force_send: step.command == "delete-force-send",
                            suppress_reply: false,
                        };
                        match itip::schedule_delete(&ctx, &old, options) {
                            Ok(outcome) => pending_of(outcome.messages, outcome.silent),
                            Err(e) => Pending::Error(e),
                        }
                    }
                };
                Ok(())
            }
            "get" => {
                let key = (arg(0).to_lowercase(), arg(1));
                let actual = match self.calendars.get(&key) {
                    Some(cal) => cal.to_string(),
                    None => ItipError::EventNotFound.to_string(),
                };
                self.check(&step.payload, actual)
            }
            "expect" => {
                let actual = self.print_pending();
                self.check(&step.payload, actual)
            }
            "send" => {
                let actual = self.send();
                self.check(&step.payload, actual)
            }
            "itip" => {
                self.pending = Pending::Itip {
                    from: arg(0),
                    to: step.args.iter().skip(1).cloned().collect(),
                    text: step.payload.clone(),
                };
                Ok(())
            }
            "reset" => {
                self.calendars.clear();
                self.counters.clear();
                self.pending = Pending::Nothing;
                self.stamps = Stamps::default();
                Ok(())
            }
            other => Err((format!("a known command, not {other:?}"), String::new())),
        }
    }

    fn check(&mut self, expected: &str, actual: String) -> Result<(), (String, String)> {
        if compare::matches(expected, &actual, &mut self.stamps) {
            Ok(())
        } else {
            Err((expected.to_string(), actual))
        }
    }

    fn print_pending(&self) -> String {
        match &self.pending {
            Pending::Nothing => String::new(),
            Pending::Error(e) => e.to_string(),
            Pending::Messages(list) => join(list.iter().map(ItipMessage::render)),
            Pending::Itip { from, to, text } => {
                format!("from: {from}\nto: {}\n{text}", to.join(", "))
            }
        }
    }

    /// Delivers every pending message to each recipient and prints what processing says.
    fn send(&mut self) -> String {
        let pending = std::mem::replace(&mut self.pending, Pending::Nothing);
        let deliveries: Vec<(CalAddress, Vec<String>, Result<Calendar, ItipError>)> = match pending
        {
            Pending::Messages(list) => list
                .into_iter()
                .map(|m| {
                    (
                        m.from.clone(),
                        m.to.iter().map(|a| a.to_string()).collect(),
                        Ok(m.calendar),
                    )
                })
                .collect(),
            Pending::Itip { from, to, text } => match CalAddress::from_email(&from) {
                Some(sender) => vec![(sender, to, Calendar::parse(&text))],
                None => return ItipError::SenderIsNotOrganizerNorAttendee.to_string(),
            },
            _ => return String::new(),
        };
        let mut outputs = Vec::new();
        for (sender, recipients, calendar) in deliveries {
            for recipient in recipients {
                match &calendar {
                    Err(e) => outputs.push(e.to_string()),
                    Ok(message) => {
                        if let Some(out) = self.deliver(&sender, &recipient.to_lowercase(), message)
                        {
                            outputs.push(out);
                        }
                    }
                }
            }
        }
        join(outputs.into_iter())
    }

    fn deliver(
        &mut self,
        sender: &CalAddress,
        recipient: &str,
        message: &Calendar,
    ) -> Option<String> {
        let addresses = address(recipient);
        let ctx = context(&addresses);
        let uid = itip::uid_of(message).unwrap_or_default().to_string();
        let key = (recipient.to_string(), uid);
        match itip::receive(&ctx, sender, self.calendars.get(&key), message) {
            Err(e) => Some(e.to_string()),
            Ok(received) => {
                if let Some(copy) = received.stored {
                    self.calendars.insert(key, copy);
                }
                if let Some(proposal) = received.proposal {
                    self.counters.push((recipient.to_string(), proposal));
                }
                (!received.responses.is_empty())
                    .then(|| join(received.responses.iter().map(ItipMessage::render)))
            }
        }
    }
}

fn context(addresses: &[CalAddress]) -> Context<'_> {
    Context {
        now: NOW,
        prodid: PRODID,
        addresses,
        vouched_domain: None,
    }
}

fn pending_of(messages: Vec<ItipMessage>, silent: Option<ItipError>) -> Pending {
    match (messages.is_empty(), silent) {
        (false, _) => Pending::Messages(messages),
        (true, Some(e)) => Pending::Error(e),
        (true, None) => Pending::Nothing,
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    let mut out = String::new();
    for (i, item) in items.enumerate() {
        if i > 0 {
            let _ = writeln!(out, "{}", "=".repeat(32));
        }
        out.push_str(item.trim_end());
        out.push('\n');
    }
    out
}
