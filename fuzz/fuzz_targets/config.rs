//! Arbitrary text through `Config::parse` (TOML, then validation) and
//! `Config::parse_seed` (a region seed file).
//!
//! Checked: no panic; a syntax error points at a line and column inside
//! the text; parsing is a function of the text (a second parse agrees on
//! success or failure and on the message).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use portier::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.toml");
    let first = Config::parse(path, &text);
    if let Err(ConfigError::Invalid { line, column, .. }) = &first {
        let lines = text.matches('\n').count() + 1;
        assert!(*line <= lines, "line {line} of {lines}");
        assert!(*line == 0 || *column >= 1);
    }
    let second = Config::parse(path, &text);
    assert_eq!(
        first.as_ref().map(|_| ()).map_err(ToString::to_string),
        second.as_ref().map(|_| ()).map_err(ToString::to_string),
        "parse is not a function of the text"
    );
    let _ = Config::parse_seed(path, &text);
});
