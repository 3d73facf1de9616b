//! Progress of a run: a bar per epoch with images/second, loss and ETA on a terminal (under other bars
//! when given a `MultiProgress`, such as an experiment's overall progress), one plain line per epoch
//! otherwise, nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use orchard_files::history::EpochRecord;

/// Receives the loop's events.
pub trait Progress {
    fn epoch_start(&mut self, epoch: u32, epochs: u32, batches: usize);
    /// After micro-batch `done` (1-based) of `images` images with loss `loss`.
    fn batch(&mut self, done: usize, images: usize, loss: f64);
    fn epoch_end(&mut self, record: &EpochRecord, monitor: &str, best: Option<f64>, stopped_early: bool);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn epoch_start(&mut self, _: u32, _: u32, _: usize) {}
    fn batch(&mut self, _: usize, _: usize, _: f64) {}
    fn epoch_end(&mut self, _: &EpochRecord, _: &str, _: Option<f64>, _: bool) {}
}

/// Writes to standard error: a progress bar when it is a terminal, plain lines when it is not.
pub struct Console {
    bar: Option<ProgressBar>,
    /// The bars this one's go under, and above which its lines print.
    multi: Option<MultiProgress>,
    terminal: bool,
    started: Instant,
    images: usize,
    loss_sum: f64,
    batches: usize,
}

impl Console {
    pub fn new() -> Self {
        Console {
            bar: None,
            multi: None,
            terminal: std::io::stderr().is_terminal(),
            started: Instant::now(),
            images: 0,
            loss_sum: 0.0,
            batches: 0,
        }
    }
}

impl Console {
    /// A console whose epoch bars go below the bars of `multi` and whose lines print above them.
    pub fn under(multi: MultiProgress) -> Self {
        Console { multi: Some(multi), ..Console::new() }
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Console {
    fn epoch_start(&mut self, epoch: u32, epochs: u32, batches: usize) {
        (self.started, self.images, self.loss_sum, self.batches) = (Instant::now(), 0, 0.0, 0);
        if self.terminal {
            let bar = ProgressBar::new(batches as u64);
            bar.set_style(
                ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
            self.bar = Some(match &self.multi {
                Some(multi) => multi.add(bar),
                None => bar,
            });
        }
    }

    fn batch(&mut self, done: usize, images: usize, loss: f64) {
        self.images += images;
        self.loss_sum += loss;
        self.batches += 1;
        if let Some(bar) = &self.bar {
            let rate = self.images as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_position(done as u64);
            bar.set_message(format!("loss {:.4} {rate:.1} img/s", self.loss_sum / self.batches as f64));
        }
    }

    fn epoch_end(&mut self, r: &EpochRecord, monitor: &str, best: Option<f64>, stopped_early: bool) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
        let line = format!(
            "epoch {} lr {:.3e} train_loss {:.4} val_loss {} val_acc {} val_auc {} ({:.1} img/s, {:.0}+{:.0} s); best {monitor} {}{}",
            r.epoch, r.lr, r.train_loss, opt(r.val_loss), opt(r.val_accuracy), opt(r.val_auc), r.images_per_second, r.train_seconds, r.val_seconds,
            opt(best), if stopped_early { "; early stop" } else { "" }
        );
        match (&self.multi, self.terminal) {
            (Some(multi), true) => {
                let _ = multi.println(line);
            }
            _ => eprintln!("{line}"),
        }
    }
}
