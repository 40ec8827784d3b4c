//! Engine throughput on a realistic object, and memory per parsed object.
//! Run: `cargo bench --bench engine` (prints a Markdown table for BENCHMARKS.md).

use imipd::itip::{self, CalAddress, Calendar, Context, DeleteOptions};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};
use tikv_jemallocator::Jemalloc;

/// Counts live heap bytes so that memory per object is measured, not guessed; the bytes come
/// from jemalloc, the daemon's allocator, so that the figures are the daemon's. It counts only
/// while `COUNTING` is set: a locked add on every allocation and free was a twelfth of the timed
/// operations, a cost the daemon does not pay.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static COUNTING: AtomicBool = AtomicBool::new(false);

fn tally(bytes: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(bytes, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        tally(layout.size() as isize);
        unsafe { Jemalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        tally(-(layout.size() as isize));
        unsafe { Jemalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        tally(new_size as isize - layout.size() as isize);
        unsafe { Jemalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const ATTENDEES: usize = 10;

fn object(location: &str) -> String {
    let mut attendees = String::new();
    for i in 1..=ATTENDEES {
        attendees.push_str(&format!(
            "ATTENDEE;CN=Person {i};ROLE=REQ-PARTICIPANT;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:person{i}@example.com\r\n"
        ));
    }
    let mut text = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n\
BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n\
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\n\
BEGIN:DAYLIGHT\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\n\
TZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nEND:DAYLIGHT\r\nEND:VTIMEZONE\r\n\
BEGIN:VEVENT\r\nUID:bench-1\r\nDTSTAMP:20260101T000000Z\r\nSEQUENCE:0\r\n\
DTSTART;TZID=Europe/Berlin:20260105T090000\r\nDTEND;TZID=Europe/Berlin:20260105T100000\r\n\
RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=52\r\nEXDATE;TZID=Europe/Berlin:20260406T090000\r\n\
SUMMARY:Weekly planning\r\nLOCATION:{location}\r\nDESCRIPTION:Agenda in the shared folder.\r\n\
ORGANIZER;CN=Olga:mailto:olga@example.com\r\n\
ATTENDEE;CN=Olga;PARTSTAT=ACCEPTED:mailto:olga@example.com\r\n{attendees}\
BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT10M\r\nDESCRIPTION:Planning\r\nEND:VALARM\r\nEND:VEVENT\r\n"
    );
    for (week, hour) in [("20260112", "11"), ("20260119", "14"), ("20260209", "10")] {
        text.push_str(&format!(
            "BEGIN:VEVENT\r\nUID:bench-1\r\nDTSTAMP:20260101T000000Z\r\nSEQUENCE:0\r\n\
RECURRENCE-ID;TZID=Europe/Berlin:{week}T090000\r\nDTSTART;TZID=Europe/Berlin:{week}T{hour}0000\r\n\
DTEND;TZID=Europe/Berlin:{week}T{hour}3000\r\nSUMMARY:Weekly planning (moved)\r\nLOCATION:{location}\r\n\
ORGANIZER;CN=Olga:mailto:olga@example.com\r\nATTENDEE;CN=Olga;PARTSTAT=ACCEPTED:mailto:olga@example.com\r\n{attendees}END:VEVENT\r\n"
        ));
    }
    text.push_str("END:VCALENDAR\r\n");
    text
}

fn reply() -> Calendar {
    Calendar::parse(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nMETHOD:REPLY\r\nBEGIN:VEVENT\r\nUID:bench-1\r\n\
DTSTAMP:20260102T000000Z\r\nSEQUENCE:1\r\nORGANIZER:mailto:olga@example.com\r\n\
ATTENDEE;PARTSTAT=ACCEPTED;CN=Person 7:mailto:person7@example.com\r\nREQUEST-STATUS:2.0;Success\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .expect("reply parses")
}

/// Runs `op` for 1.5 s (or `IMIPD_BENCH_SECONDS`) after a warm-up, unless a command-line
/// filter excludes it (`cargo bench --bench engine -- update`: what to profile alone).
fn measure(name: &str, mut op: impl FnMut()) -> Option<(String, f64)> {
    measure_with(name, || (), |()| op())
}

/// Like `measure`, for an operation that consumes its input: the inputs (a parsed object the
/// daemon would have just parsed) are made in batches outside the timed part, so that the
/// figure is the engine's and not the benchmark's copying.
fn measure_with<I>(
    name: &str,
    mut input: impl FnMut() -> I,
    mut op: impl FnMut(I),
) -> Option<(String, f64)> {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
        return None;
    }
    const BATCH: usize = 64;
    let mut batch = || (0..BATCH).map(|_| input()).collect::<Vec<I>>();
    for i in batch() {
        op(i);
    }
    let seconds: f64 = std::env::var("IMIPD_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let budget = Duration::from_secs_f64(seconds);
    let mut timed = Duration::ZERO;
    let mut n = 0u64;
    while timed < budget {
        let inputs = batch();
        let start = Instant::now();
        for i in inputs {
            op(i);
        }
        timed += start.elapsed();
        n += BATCH as u64;
    }
    Some((name.to_string(), n as f64 / timed.as_secs_f64()))
}

fn main() {
    let organizer = [CalAddress::from_email("olga@example.com").expect("address")];
    let ctx = Context {
        now: 1_893_456_000,
        prodid: "-//imipd//bench//EN",
        addresses: &organizer,
        vouched_domain: None,
    };
    let text = object("Room 1");
    let new = Calendar::parse(&text).expect("object parses");
    let stored = itip::schedule_put(&ctx, None, new.clone())
        .expect("create")
        .stored;
    let moved = Calendar::parse(&object("Room 2")).expect("update parses");
    // The organizer's copy once its invitations were delivered: a status on every attendee line
    // (RFC 6638 3.2.9), which a client's next write leaves out and the server keeps.
    let delivered = Calendar::parse(
        &stored
            .to_string()
            .replace("ATTENDEE;", "ATTENDEE;SCHEDULE-STATUS=1.2;"),
    )
    .expect("delivered copy parses");
    let answer = reply();
    let person7 = CalAddress::from_email("person7@example.com").expect("address");
    assert_eq!(
        itip::schedule_put(&ctx, Some(&stored), moved.clone())
            .expect("update")
            .messages
            .len(),
        1
    );
    assert!(
        itip::receive(&ctx, &person7, Some(&stored), &answer)
            .expect("reply applies")
            .stored
            .is_some()
    );

    let rows = [
        measure("parse (iCalendar text to object)", || {
            black_box(Calendar::parse(black_box(&text)).ok());
        }),
        measure("serialize (object to iCalendar text)", || {
            black_box(stored.to_string());
        }),
        measure_with(
            "create (organizer PUT, 10 REQUESTs)",
            || new.clone(),
            |new| {
                black_box(itip::schedule_put(&ctx, None, new).ok());
            },
        ),
        measure_with(
            "update (new LOCATION, REQUEST to all)",
            || moved.clone(),
            |moved| {
                black_box(itip::schedule_put(&ctx, Some(&stored), moved).ok());
            },
        ),
        measure_with(
            "update after delivery (copy with SCHEDULE-STATUS)",
            || moved.clone(),
            |moved| {
                black_box(itip::schedule_put(&ctx, Some(&delivered), moved).ok());
            },
        ),
        measure("reply-apply (REPLY into organizer copy)", || {
            black_box(itip::receive(&ctx, &person7, Some(&stored), &answer).ok());
        }),
        measure("cancel (organizer DELETE, CANCEL to all)", || {
            black_box(itip::schedule_delete(&ctx, &stored, DeleteOptions::default()).ok());
        }),
    ];

    // Memory: live heap bytes held by parsed objects, averaged over many.
    let memory_wanted = std::env::args().skip(1).all(|a| a.starts_with('-'));
    let count = if memory_wanted { 2000 } else { 1 };
    COUNTING.store(true, Ordering::Relaxed);
    let kept: Vec<Calendar> = (0..count)
        .map(|_| Calendar::parse(&text).expect("parses"))
        .collect();
    COUNTING.store(false, Ordering::Relaxed);
    let per_object = LIVE.load(Ordering::Relaxed) as f64 / count as f64;
    black_box(&kept);
    drop(kept);

    println!(
        "Object: weekly series (52 weeks, Europe/Berlin VTIMEZONE), 3 overrides, {ATTENDEES} attendees + organizer.\n"
    );
    println!("| operation | ops/s | µs/op |");
    println!("|---|---:|---:|");
    for (name, per_sec) in rows.into_iter().flatten() {
        println!("| {name} | {per_sec:.0} | {:.1} |", 1e6 / per_sec);
    }
    println!("\n| memory | bytes |");
    println!("|---|---:|");
    println!(
        "| iCalendar text of the stored copy | {} |",
        stored.to_string().len()
    );
    println!("| parsed object in memory (heap) | {per_object:.0} |");
}
