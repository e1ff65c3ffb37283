//! Following Sentinel failovers at once: every sentinel is subscribed to `+switch-master`;
//! when our master is switched, the store's connection epoch is bumped, which retires
//! every pooled connection to the old master (new ones ask the sentinels again). Without
//! this, connections to a demoted master keep accepting writes until Sentinel reconfigures
//! it, and those writes are lost when it resyncs from the new master.

use super::{CacheError, connection_addr};
use crate::config::RedisConfig;
use crate::retry::Backoff;
use futures_util::StreamExt;
use redis::IntoConnectionInfo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(super) fn watch_switches(
    config: &RedisConfig,
    epoch: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Result<(), CacheError> {
    for address in &config.sentinel.addresses {
        let mut settings = redis::RedisConnectionInfo::default();
        if !config.sentinel.username.is_empty() {
            settings = settings.set_username(&config.sentinel.username);
        }
        if !config.sentinel.password.is_empty() {
            settings = settings.set_password(config.sentinel.password.expose());
        }
        let info = connection_addr(config, address)?
            .into_connection_info()
            .map_err(|e| CacheError::Unavailable(e.to_string()))?
            .set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(|e| CacheError::Unavailable(e.to_string()))?;
        let master = config.sentinel.master_name.clone();
        let (epoch, stop, address) = (epoch.clone(), stop.clone(), address.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = watch_one(client, master, epoch, address) => {}
            }
        });
    }
    Ok(())
}

async fn watch_one(client: redis::Client, master: String, epoch: Arc<AtomicU64>, address: String) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if pubsub.subscribe("+switch-master").await.is_ok() {
                    backoff.reset();
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let payload: String = message.get_payload().unwrap_or_default();
                        // "<master-name> <old-ip> <old-port> <new-ip> <new-port>"
                        if payload.split(' ').next() == Some(master.as_str()) {
                            epoch.fetch_add(1, Ordering::SeqCst);
                            tracing::warn!(sentinel = %address, switch = %payload, "redis sentinel switched master: reconnecting");
                        }
                    }
                }
            }
            Err(error) => tracing::debug!(sentinel = %address, %error, "cannot subscribe to sentinel"),
        }
        backoff.wait().await;
    }
}
