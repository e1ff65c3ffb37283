//! `Cookie` header parsing and flow-cookie opening: never a panic, and nothing that was not
//! sealed by authgate ever opens.
#![no_main]

use authgate::authz::browser::parse_cookies;
use authgate::config::{Config, Secret};
use authgate::session::{Cipher, Purpose};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static CIPHER: LazyLock<Cipher> = LazyLock::new(|| {
    let config = Config { session_encryption_key: Secret::new("fuzzing-key-0123456789abcdef-0123"), ..Config::default() };
    Cipher::new(&config, Purpose::FlowCookie)
});

fuzz_target!(|header: &str| {
    for cookie in parse_cookies(header) {
        assert!(!cookie.name().contains(';'));
        // Random input never authenticates as a sealed value.
        assert!(CIPHER.open_text::<serde_json::Value>(cookie.value(), cookie.name()).is_none());
    }
});
