//! Prints a bbolt file's buckets, keys and values (a debugging aid):
//! `cargo run -p oxcd-etcdb --example dump -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: dump FILE");
    let mut bytes = std::fs::read(&path).expect("read the file");
    if bytes.len() % 512 == 32 {
        bytes.truncate(bytes.len() - 32);
    }
    let layout = oxcd_etcdb::bbolt::layout(&bytes).expect("a bbolt file");
    println!("{layout:?}");
    let db = oxcd_etcdb::bbolt::read(&bytes).expect("a bbolt file");
    for (name, bucket) in &db.buckets {
        println!(
            "{}: {} keys",
            String::from_utf8_lossy(name),
            bucket.entries.len()
        );
        for (k, v) in &bucket.entries {
            println!("  {} = {}", show(k), show(v));
        }
    }
}

fn show(b: &[u8]) -> String {
    if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        format!("{:?}", String::from_utf8_lossy(b))
    } else {
        b.iter().map(|c| format!("{c:02x}")).collect()
    }
}
