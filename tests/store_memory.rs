//! What a sled store keeps allocated once a load of writes has ended, counted by this test
//! binary's own allocator: the daemon commits and reads on its workers and syncs on threads of
//! the blocking pool, which then wait for more; what those calls replaced (old versions of
//! pages, old log buffers of 8 MiB each) must not stay allocated while the threads wait.

use imipd::store::{Change, Durable, Expect, SledStore, Store, Tag};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::mpsc;

/// The system's allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const MIB: isize = 1 << 20;
/// Threads of the blocking pool that sync.
const POOL: usize = 4;
/// Rounds of 16 objects, of texts of this many bytes.
const ROUNDS: u64 = 300;
const TEXT: usize = 12_000;

/// A text LZ4 cannot shrink much, so that the rounds fill several log segments.
fn text(seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(TEXT + 40);
    out.push_str("BEGIN:VCALENDAR\r\n");
    while out.len() < TEXT {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.push_str(&format!("X-NOISE:{state:016x}\r\n"));
    }
    out.push_str("END:VCALENDAR\r\n");
    out
}

#[test]
fn what_sled_replaced_is_freed_while_the_threads_wait() {
    let dir = std::env::temp_dir().join(format!("imipd-store-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SledStore::open(&dir).unwrap();
    let opened = LIVE.load(Ordering::Relaxed);

    std::thread::scope(|scope| {
        // The blocking pool's threads: each syncs when asked (the pool hands a round to any
        // idle thread), and stays alive between rounds.
        let store = &store;
        let (done, rounds) = mpsc::channel::<()>();
        let pool: Vec<mpsc::Sender<()>> = (0..POOL)
            .map(|_| {
                let (ask, asked) = mpsc::channel::<()>();
                let done = done.clone();
                scope.spawn(move || {
                    for () in asked {
                        match store.durable() {
                            Durable::BySync(sync) => sync.sync().unwrap(),
                            Durable::OnCommit => unreachable!("sled syncs by rounds"),
                        };
                        done.send(()).unwrap();
                    }
                });
                ask
            })
            .collect();
        // Two workers commit while the rounds sync, as the daemon's do (about 60 MB of texts,
        // several of the store's 8 MiB log segments), then wait for more mail.
        let (finished, worked) = mpsc::channel::<()>();
        let mut more_mail = Vec::new();
        for worker in 0..2u64 {
            let finished = finished.clone();
            let (mail, waiting) = mpsc::channel::<()>();
            more_mail.push(mail);
            scope.spawn(move || {
                for round in (worker..ROUNDS).step_by(2) {
                    let changes: Vec<Change> = (0..16)
                        .map(|i| Change::Put {
                            account: format!("user{}", i % 10),
                            uid: format!("{round}-{i}"),
                            text: text(round * 16 + i),
                            expect: Expect::Absent,
                            tag: Tag::New,
                        })
                        .collect();
                    store.commit(&changes).unwrap();
                    // A delivery reads the copy it replaces, often one long paged out.
                    for back in [1, 7, 31, 127] {
                        let earlier = round.saturating_sub(back);
                        store
                            .get(&format!("user{}", earlier % 10), &format!("{earlier}-0"))
                            .unwrap();
                    }
                }
                finished.send(()).unwrap();
                let _ = waiting.recv();
            });
        }
        let (mut round, mut idle) = (0, 0);
        while idle < more_mail.len() {
            idle += worked.try_iter().count();
            pool[round % POOL].send(()).unwrap();
            rounds.recv().unwrap();
            round += 1;
        }
        // An idle daemon's housekeeping still reads now and then.
        for _ in 0..100 {
            store.get("user0", "0-0").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let held = LIVE.load(Ordering::Relaxed) - opened;
        // The workers and the syncing threads are all still alive, waiting.
        eprintln!("allocated since the store opened: {} KiB", held / 1024);
        // The log buffer being filled (one segment), sled's cache (8 MiB by default, more in
        // memory than its count of bytes on disk) and what the last reads replaced are
        // expected, 17 MiB here; not what the waiting threads' writes and syncs replaced (50
        // MiB more when they did not hand it over).
        assert!(
            held < 32 * MIB,
            "{} MiB still allocated after the writes ended",
            held / MIB
        );
        drop(pool);
        drop(more_mail);
    });
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}
