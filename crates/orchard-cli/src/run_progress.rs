//! The overall progress of `orchard run`: units done out of all of them, time elapsed and time left. On a
//! terminal, a bar above each epoch's bar; to a pipe or a file, one line per unit finished:
//! `unit 3/9 done (b0/2) elapsed 2m10s, eta 4m20s`.
//!
//! The estimate of the time left is the mean time of the units this process trained, times the units left,
//! divided by the units trained at once; units already complete when the run started count as done and not
//! in the mean.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use orchard_experiment::duration_text;
use orchard_train::progress::Console;

/// Units done and the time they took.
pub struct Overall {
    total: usize,
    done: usize,
    /// Units trained by this run, and their seconds.
    trained: usize,
    trained_seconds: f64,
    /// Units trained at once.
    parallel: usize,
    started: Instant,
    multi: Option<(MultiProgress, ProgressBar)>,
}

impl Overall {
    /// Progress over `total` units of which `complete` are already done, `parallel` trained at once; a bar
    /// when standard error is a terminal.
    pub fn new(total: usize, complete: usize, parallel: usize) -> Overall {
        let multi = std::io::stderr().is_terminal().then(|| {
            let multi = MultiProgress::new();
            let bar = multi.add(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template("units {pos}/{len} [{bar:30}] elapsed {elapsed} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_position(complete as u64);
            bar.enable_steady_tick(Duration::from_secs(1));
            (multi, bar)
        });
        let parallel = parallel.max(1);
        Overall { total, done: complete, trained: 0, trained_seconds: 0.0, parallel, started: Instant::now(), multi }
    }

    /// A console for a unit's epochs: its bar under the overall one on a terminal.
    pub fn console(&self) -> Console {
        match &self.multi {
            Some((multi, _)) => Console::under(multi.clone()),
            None => Console::new(),
        }
    }

    /// Prints a line: above the bars on a terminal.
    pub fn note(&self, line: &str) {
        match &self.multi {
            Some((multi, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Unit `name` has been trained, in `seconds`; `detail` goes after its name.
    pub fn unit_done(&mut self, name: &str, detail: &str, seconds: f64) {
        self.done += 1;
        self.trained += 1;
        self.trained_seconds += seconds;
        let eta = self.eta().map_or_else(|| "-".to_string(), duration_text);
        let elapsed = duration_text(self.started.elapsed().as_secs_f64());
        self.note(&format!("unit {}/{} done ({name}{detail}) elapsed {elapsed}, eta {eta}", self.done, self.total));
        if let Some((_, bar)) = &self.multi {
            bar.set_position(self.done as u64);
            bar.set_message(format!("eta {eta}"));
        }
    }

    /// Seconds left: the mean unit's time, for the units left, `parallel` at a time.
    fn eta(&self) -> Option<f64> {
        (self.trained > 0).then(|| {
            let left = self.total.saturating_sub(self.done);
            self.trained_seconds / self.trained as f64 * left.div_ceil(self.parallel) as f64
        })
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some((_, bar)) = &self.multi {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_is_the_mean_unit_for_the_units_left_in_parallel() {
        let mut o = Overall { multi: None, ..Overall::new(9, 3, 2) };
        assert_eq!(o.eta(), None, "nothing trained yet");
        o.unit_done("b0/0", "", 10.0);
        o.unit_done("b0/1", "", 20.0);
        // 4 units left, 2 at a time: 2 rounds of the mean 15 s.
        assert_eq!((o.done, o.eta()), (5, Some(30.0)));
        o.unit_done("b0/2", "", 15.0);
        // 3 left: still 2 rounds.
        assert_eq!((o.done, o.eta()), (6, Some(30.0)));
    }
}
