//! Configuration parsing: any text is a configuration or a list of problems.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

fuzz_target!(|yaml: &str| {
    let _ = authgate::config::load_str_lenient(yaml, &HashMap::new());
});
