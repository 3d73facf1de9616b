//! The `orchard` binary as a user runs it: real processes on real files, each topic in its own module,
//! sharing the helpers in `common`.

mod bad_inputs;
mod bench_serve;
mod common;
mod data;
mod distributed;
mod ensemble;
mod full_disk;
mod locks;
mod plan;
mod reliability;
mod report;
mod resume;
mod runs;
mod serve;
mod skip_bad;
mod soak;
mod starting;
mod train;
mod weights;
