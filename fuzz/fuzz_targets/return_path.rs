//! The post-login return path: whatever a client asks for, the browser is sent to this
//! origin.
#![no_main]

use authgate::authz::browser::return_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let chosen = return_path("app.example", path);
    assert!(chosen == "/" || chosen == path);
    let base = url::Url::parse("https://app.example/").unwrap();
    let resolved = base.join(&chosen).unwrap();
    assert_eq!(resolved.origin(), base.origin(), "{path:?}");
});
