//! An experiment file (`orchard run EXPERIMENT`): its members resolved into training configurations and
//! validated (`orchard_files::experiment_file`), then its `[ensemble]` table with the compared blends
//! (`orchard_ensemble::spec::EnsembleTable`), as `orchard_experiment::config::Experiment::parse` reads it.
//! Every member of a file that parses is a valid configuration that writes and reads back unchanged, with
//! the fold settings the experiment owns.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchard_ensemble::spec::EnsembleTable;
use orchard_files::experiment_file::ExperimentFile;
use orchard_files::TrainConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = ExperimentFile::parse(text) else { return };
    assert!(file.folds >= 2 && !file.members.is_empty());
    for member in &file.members {
        assert!(member.config.validate().is_ok());
        assert_eq!(member.config.data.folds, Some(file.folds));
        assert_eq!(member.config.data.skip_bad, file.skip_bad);
        let again = TrainConfig::from_toml(&member.config.to_toml()).expect("a member's configuration reads back");
        assert_eq!(again.to_toml(), member.config.to_toml());
    }
    if let Ok(ensemble) = EnsembleTable::parse(file.ensemble_table.clone(), &file.member_names()) {
        assert!(ensemble.spec.combiner().is_ok());
        for blend in &ensemble.compare {
            assert!(blend.spec.combiner().is_ok());
        }
    }
});
