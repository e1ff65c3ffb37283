//! Logging setup. `logLevel` sets the level of authgate's own events (`RUST_LOG`, when set,
//! overrides it with a full filter); `logFormat: json` gives one JSON object per line.
//! Logs go to standard error, so `check-config` output on standard output stays clean.

use crate::config::{LogFormat, LogLevel};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Call once, from `main`.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,authgate={}", level.as_str())));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).init(),
        LogFormat::Text => builder.with_target(false).init(),
    }
}
