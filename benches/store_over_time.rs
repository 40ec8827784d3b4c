//! How a sled store grows with objects, messages and time (issue 24 goal 3): days of
//! deliveries written as intake writes them (the copy, the schedule inbox item, the delivery
//! record), with the daily expiry of delivery records older than the duplicate window, and
//! what the store holds and takes on disk at the end of each day.
//!
//! Run: `cargo bench --bench store_over_time [-- DAYS MESSAGES_A_DAY WINDOW_DAYS [OBJECTS]
//! [--rate MESSAGES_A_SECOND [--burst DAYS]]]` (defaults 40, 4000 and 30, as
//! `inbound.duplicate_window`). No engine and no sockets: the writes of `imipd bench`'s
//! messages (3 creates, 3 updates and 1 cancel in every 7) to 100 accounts, committed 16 at a
//! time between syncs, as a group commit under load does; with OBJECTS, updates only, of that
//! many objects (`imipd bench --objects`).
//!
//! Without `--rate` the days are written as fast as the store takes them. sled cleans its log
//! from a thread of its own, in wall time (woken every 20 ms: `FLUSH_EVERY_MS`), so days
//! written in seconds may leave it behind where a day of mail would not: `--rate` spaces the
//! messages out (and `--burst` writes the first DAYS flat out, then the rest at the rate, as
//! after an import or a backlog).

use imipd::loadgen::{self, Kind};
use imipd::store::{Change, Expect, Expiry, GroupSync, SledStore, Store, Tag};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 100;
const DAY: i64 = 86_400;

/// The calendar part of a message `imipd bench` sends.
fn calendar(step: &loadgen::Step) -> String {
    let mail = String::from_utf8(loadgen::render(step)).expect("the load's mail is UTF-8");
    let start = mail.find("BEGIN:VCALENDAR").expect("a calendar part");
    let end = mail.find("END:VCALENDAR\r\n").expect("its end") + "END:VCALENDAR\r\n".len();
    mail[start..end].to_string()
}

/// What a delivery of `step` writes, recorded at `at` under the `n`th delivery key.
fn delivery(step: &loadgen::Step, n: u64, at: i64) -> Vec<Change> {
    let text = calendar(step);
    let mut key = n.to_be_bytes().to_vec();
    key.extend_from_slice(&(n ^ 0x9e37_79b9_7f4a_7c15).to_be_bytes());
    vec![
        Change::Put {
            account: step.account.clone(),
            uid: step.uid.clone(),
            text: text.clone(),
            expect: Expect::Any,
            tag: if step.kind == Kind::Create {
                Tag::New
            } else {
                Tag::Kept
            },
        },
        Change::Inbox {
            account: step.account.clone(),
            text,
            keep: 200,
            keep_bytes: 1 << 20,
        },
        Change::Seen(key, at),
    ]
}

/// The positional numbers, and the messages a second from `--rate` with the days of
/// `--burst` written before it takes effect.
fn arguments() -> (Vec<i64>, Option<f64>, i64) {
    let mut numbers = Vec::new();
    let (mut rate, mut burst) = (None, 0);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => rate = args.next().and_then(|r| r.parse().ok()),
            "--burst" => burst = args.next().and_then(|b| b.parse().ok()).unwrap_or(0),
            _ => numbers.extend(arg.parse::<i64>().ok()),
        }
    }
    (numbers, rate, burst)
}

fn main() {
    let (numbers, rate, burst) = arguments();
    let days = numbers.first().copied().unwrap_or(40);
    let per_day = numbers.get(1).copied().unwrap_or(4000) as usize;
    let window = numbers.get(2).copied().unwrap_or(30);
    let shared = numbers.get(3).map(|n| *n as usize);
    let dir = std::env::temp_dir().join(format!("imipd-store-over-time-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SledStore::open(&dir).expect("the store opens");
    println!(
        "| day | messages | msg/s | objects | delivery records | on disk MB | on disk a message |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut n = 0u64;
    let mut records = 0u64;
    for day in 0..days {
        let at = 1_800_000_000 + day * DAY;
        let steps = match shared {
            None => loadgen::plan(&format!("d{day}"), 0, per_day, ACCOUNTS, "example.com"),
            Some(count) => {
                let mut steps =
                    loadgen::shared_plan("s", 0, per_day, count, ACCOUNTS, "example.com");
                // Each day's updates come after the last day's.
                for step in &mut steps {
                    step.sequence += (day as usize * per_day) as u32;
                }
                steps
            }
        };
        let paced = rate.filter(|_| day >= burst);
        let started = Instant::now();
        for (i, chunk) in steps.chunks(16).enumerate() {
            for step in chunk {
                store.commit(&delivery(step, n, at)).expect("commit");
                n += 1;
            }
            store.sync().expect("sync");
            if let Some(rate) = paced {
                let due = Duration::from_secs_f64(((i + 1) * 16) as f64 / rate);
                std::thread::sleep(due.saturating_sub(started.elapsed()));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let expired = store
            .expire(
                Expiry {
                    seen_before: at - window * DAY,
                    sent_before: at - window * DAY,
                    tallies_before: at - DAY,
                },
                usize::MAX,
            )
            .expect("expiry");
        store.sync().expect("sync");
        records = records + per_day as u64 - expired.seen as u64;
        let disk = store.size_on_disk().expect("size");
        let objects: u64 = (1..=ACCOUNTS)
            .map(|i| store.usage(&format!("user{i}@example.com")))
            .map(|usage| usage.expect("usage").objects)
            .sum();
        println!(
            "| {} | {n} | {:.0} | {objects} | {records} (expired {}) | {:.1} | {} |",
            day + 1,
            per_day as f64 / seconds,
            expired.seen,
            disk as f64 / 1e6,
            disk / n
        );
    }
    drop(store);
    // Kept for `cargo bench --bench store_sizes -- DIR` when asked (IMIPD_KEEP).
    match std::env::var_os("IMIPD_KEEP") {
        Some(_) => println!("\nthe store: {}", dir.display()),
        None => {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
