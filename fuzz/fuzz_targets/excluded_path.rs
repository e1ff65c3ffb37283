//! `excludedURLs`: a path that matches `/public` stays under `/public` however an upstream
//! normalises it.
#![no_main]

use authgate::authz::ExcludedPaths;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    let excluded = ExcludedPaths::new(&["/public".to_owned()]);
    if excluded.matches(path) {
        let base = url::Url::parse("http://upstream/").unwrap();
        let reading = base.join(path).unwrap().path().to_owned();
        assert!(reading == "/public" || reading.starts_with("/public/"), "{path:?} read as {reading:?}");
    }
});
