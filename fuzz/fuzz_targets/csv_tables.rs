//! Every CSV reader of a run's inputs and outputs on the same bytes: the table itself, predictions, truth
//! (labels), folds, a sample submission and a test table. Each may refuse the file; none may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchard_ensemble::submission::{Sample, TestIds};
use orchard_files::{folds, table::Table, Predictions, Truth};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let path = common::write("table.csv", data);
    let ids: Vec<String> = match Table::read(&path) {
        Ok(table) => {
            let _ = table.problems();
            table.rows.iter().filter_map(|r| r.fields.first().cloned()).collect()
        }
        Err(_) => Vec::new(),
    };
    let _ = Predictions::parse(&path);
    if let Ok(truth) = Truth::read_csv(&path) {
        let _ = truth.folds(&path, &ids);
    }
    let _ = folds::read_csv(&path, &ids);
    let _ = folds::count_csv(&path);
    let _ = Sample::read(&path);
    let _ = TestIds::read(&path);
});
