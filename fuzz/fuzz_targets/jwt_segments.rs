//! Token splitting and header reading: never a panic; only three base64url segments with
//! an allowed asymmetric algorithm get past.
#![no_main]

use authgate::oidc::jwt::{allowed_header, well_formed};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|token: &str| {
    if well_formed(token) {
        assert_eq!(token.split('.').count(), 3);
        let _ = allowed_header(token);
    }
});
