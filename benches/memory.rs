//! Memory per session: RSS of this process (the server's allocator) before and after
//! storing N session records in the memory store (memory mode, and the hybrid L1, which is
//! the same store), for N = 100,000 and 1,000,000. Prints bytes per session beyond the
//! record itself.
//!
//!     cargo bench --bench memory      (scripts/bench-check.sh runs it too)

use authgate::cache::Kind;
use authgate::cache::memory::MemoryStore;
use authgate::cache::{Cache, Store};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A typical encrypted session record: the provider's ID, access and refresh tokens plus
/// claims, sealed (measured on the test provider's sessions: 1.5 to 2.5 KB).
const RECORD: usize = 2048;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("memory per session (record {RECORD} B, key = 64 hex digits of a SHA-256)");
    println!("{:>10} | {:>12} | {:>14} | {:>22}", "sessions", "RSS before", "RSS after", "bytes/session beyond record");
    for n in [100_000u64, 1_000_000] {
        let store = MemoryStore::new(n + 1000, (n + 1000) * (RECORD as u64 + 512));
        let cache = Cache::new(Arc::new(store.clone()));
        let before = rss_bytes();
        let record = vec![0x5a_u8; RECORD];
        for i in 0..n {
            let id = authgate::cache::token_key(&format!("session-{i}"));
            cache.set_raw(Kind::Session, &id, &record, Duration::from_secs(3600)).await.unwrap();
        }
        store.sync();
        let after = rss_bytes();
        assert!(store.entries() >= n * 99 / 100, "the store kept {} of {n}", store.entries());
        // A read, so nothing was optimised away.
        assert!(store.get(&format!("session:{}", authgate::cache::token_key("session-1"))).await.unwrap().is_some());
        let per = (after.saturating_sub(before)) as f64 / n as f64;
        println!(
            "{n:>10} | {:>9} MB | {:>11} MB | {:>22.0}",
            before / (1 << 20),
            after / (1 << 20),
            per - RECORD as f64
        );
        drop(cache);
        drop(store);
    }
}
