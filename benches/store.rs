//! What a durable commit costs: sled commit, flush + fdatasync, and group commit under
//! concurrent writers. Run: `cargo bench --bench store` (on the disk that holds target/).

use imipd::store::{Change, Durability, Expect, GroupSync, SledStore, Store, Tag};
use std::sync::Arc;
use std::time::Instant;

fn object(i: usize) -> Change {
    Change::Put {
        account: "bob@example.com".into(),
        uid: format!("bench-{i}"),
        text: "BEGIN:VCALENDAR\r\n".to_string()
            + &"X-PAD:0123456789012345678901234567890123456789\r\n".repeat(120)
            + "END:VCALENDAR\r\n",
        expect: Expect::Any,
        tag: Tag::New,
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("imipd-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(SledStore::open(&dir).expect("store opens"));
    let n = 2000;

    let start = Instant::now();
    for i in 0..n {
        store
            .commit(&[object(i), Change::Seen(format!("m{i}").into_bytes(), 0)])
            .expect("commit");
    }
    let commit_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;

    let start = Instant::now();
    let rounds = 300;
    for i in 0..rounds {
        store.commit(&[object(n + i)]).expect("commit");
        store.sync().expect("sync");
    }
    let sync_us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows = Vec::new();
    for writers in [1usize, 4, 16, 64] {
        let per_writer = 1600 / writers;
        let store = store.clone();
        let elapsed = runtime.block_on(async move {
            let durability = Durability::start(store.clone());
            let start = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..writers {
                let (store, durability) = (store.clone(), durability.clone());
                tasks.push(tokio::spawn(async move {
                    for i in 0..per_writer {
                        let generation = store.generation();
                        store
                            .commit(&[object(100_000 + w * 10_000 + i)])
                            .expect("commit");
                        durability.wait(generation).await.expect("durable");
                    }
                }));
            }
            for t in tasks {
                t.await.expect("writer");
            }
            start.elapsed()
        });
        let total = writers * per_writer;
        rows.push((writers, total as f64 / elapsed.as_secs_f64()));
    }
    let _ = std::fs::remove_dir_all(&dir);

    println!("Object: 6 KB value per commit.\n");
    println!("| measure | value |");
    println!("|---|---:|");
    println!("| commit (no flush), µs | {commit_us:.1} |");
    println!("| commit + flush + fdatasync, one writer, µs | {sync_us:.1} |");
    println!("\n| concurrent writers (group commit) | durable commits/s |");
    println!("|---:|---:|");
    for (writers, per_sec) in rows {
        println!("| {writers} | {per_sec:.0} |");
    }
}
