//! Instruction profile of the redis-mode read path, for `valgrind --tool=callgrind`:
//! `cargo bench --bench profile_cache --no-run`, then run the binary under callgrind with a
//! redis-server port as the argument. Not a timing benchmark (see `cache.rs`).

use authgate::cache::{CacheSystem, Kind};
use authgate::config::{CacheMode, Config, RedisConfig};
use std::time::Duration;

fn main() {
    let port: u16 = std::env::args().nth(1).expect("redis port").parse().unwrap();
    let ops: usize = std::env::args().nth(2).map_or(20_000, |n| n.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let config = Config {
            redis: RedisConfig {
                enabled: true,
                address: format!("127.0.0.1:{port}"),
                cache_mode: Some(CacheMode::Redis),
                ..RedisConfig::default()
            },
            ..Config::default()
        };
        let system = CacheSystem::start(&config).unwrap();
        let cache = system.cache().clone();
        cache.set_raw(Kind::Session, "k", &[7u8; 256], Duration::from_secs(600)).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    for _ in 0..ops / 50 {
                        cache.get_raw(Kind::Session, "k").await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
}
