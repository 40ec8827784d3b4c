//! What a sled store holds, tree by tree: entries, key bytes and value bytes, against its size
//! on disk (the rest is sled's log-structured space not reclaimed yet). Run on a stopped
//! daemon's `data_dir`: `cargo bench --bench store_sizes -- DIR` (`benches/store_size.py`
//! loads a daemon and runs it).

fn main() {
    let Some(dir) = std::env::args().skip(1).find(|a| !a.starts_with('-')) else {
        // `cargo bench` runs every bench: without a folder there is nothing to measure.
        eprintln!("store_sizes: no DATA_DIR given (cargo bench --bench store_sizes -- DATA_DIR)");
        return;
    };
    let dir = std::path::Path::new(&dir);
    // The store is made with 8 MiB segments (`sled_store::Trees::open`; sled refuses another
    // size), the footprints' database with sled's default.
    let databases = [
        ("store", dir.to_path_buf(), Some(8 * 1024 * 1024)),
        ("footprints", dir.join("footprints"), None),
    ];
    for (name, path, segment_size) in databases {
        let config = sled::Config::new().path(&path);
        let config = match segment_size {
            Some(size) => config.segment_size(size),
            None => config,
        };
        let db = config
            .open()
            .expect("the store opens (is the daemon stopped?)");
        println!("\n{name} ({})\n", path.display());
        println!("| tree | entries | key bytes | value bytes |");
        println!("| --- | ---: | ---: | ---: |");
        let mut logical = 0;
        for tree_name in db.tree_names() {
            let tree = db.open_tree(&tree_name).expect("tree opens");
            let (mut entries, mut keys, mut values) = (0u64, 0u64, 0u64);
            for item in tree.iter() {
                let (key, value) = item.expect("readable");
                entries += 1;
                keys += key.len() as u64;
                values += value.len() as u64;
            }
            logical += keys + values;
            if entries > 0 {
                let shown = String::from_utf8_lossy(&tree_name);
                println!("| {shown} | {entries} | {keys} | {values} |");
            }
        }
        let on_disk = db.size_on_disk().expect("size");
        println!("\nkeys and values {logical} bytes; on disk {on_disk} bytes");
    }
}
