//! Claim values as header values: never a control byte, lists never split differently.
#![no_main]

use authgate::authz::identity::{header_list, header_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|items: Vec<String>| {
    for item in &items {
        if let Some(value) = header_value(item) {
            assert!(!value.chars().any(|c| c.is_ascii_control()));
        }
    }
    let items: Vec<String> = items.into_iter().filter(|i| !i.is_empty()).collect();
    if let Some(list) = header_list(&items)
        && !list.is_empty()
    {
        assert_eq!(list.split(',').count(), items.len());
    }
});
