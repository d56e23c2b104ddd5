//! The configuration loader and the rule compiler: any text as a config file, and every
//! config that parses compiled into rules. Either step may refuse; neither may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use streamwarden::config::Config;
use streamwarden::rules::RuleSet;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(config) = Config::parse(&text, None) {
        let _ = RuleSet::compile(&config);
    }
});
