//! A training configuration (`orchard train --config`, an experiment's `[defaults]` and members, a run's
//! saved `config.toml`): parsed, validated and, when valid, written back and read again unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchard_files::TrainConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(config) = TrainConfig::from_toml(text) else { return };
    if config.validate().is_ok() {
        let again = TrainConfig::from_toml(&config.to_toml()).expect("a written configuration reads back");
        assert_eq!(again.to_toml(), config.to_toml());
        let _ = again.check_resumable(&config);
    }
});
