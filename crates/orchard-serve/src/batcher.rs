//! The one thread that owns the models: it takes jobs from a bounded queue, gathers them until the batch is
//! full or the first has waited the maximum delay, runs one forward pass per fold model for the whole
//! batch, and replies to each job on its oneshot channel with the batch size it ran in.

use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use orchard_data::image::RgbImage;
use tokio::sync::oneshot;

use crate::ensemble::{Answer, Description, Ensemble};
use crate::{Config, Result, ServeError};

/// A request's images (each as every member's input) and where its answers go.
pub struct Job {
    pub images: Vec<Vec<RgbImage>>,
    pub reply: oneshot::Sender<Reply>,
}

/// The answers to a job (one per image) and the number of images in the batch it ran in, or why it failed.
pub type Reply = std::result::Result<(Vec<Answer>, usize), String>;

/// The model thread as the HTTP side sees it.
#[derive(Clone)]
pub struct Model {
    pub description: Description,
    queue: Sender<Job>,
}

/// Why a job was not queued.
pub enum Refused {
    /// The queue is full: try again shortly.
    Busy,
    /// The model thread has stopped.
    Stopped,
}

impl Model {
    /// Queues `job` without waiting.
    pub fn submit(&self, job: Job) -> std::result::Result<(), Refused> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Busy,
            TrySendError::Disconnected(_) => Refused::Stopped,
        })
    }
}

/// Starts the model thread, which loads the ensemble; returns once it is loaded (or failed to load).
pub fn start(config: &Config) -> Result<Model> {
    let (queue, jobs) = bounded::<Job>(config.queue);
    let (loaded, ready) = bounded::<Result<Description>>(1);
    let (dir, device, max_batch, max_delay) = (config.dir.clone(), config.device, config.max_batch, config.max_delay);
    std::thread::Builder::new().name("orchard-model".into()).spawn(move || {
        let ensemble = match Ensemble::load(&dir, device) {
            Ok((ensemble, description)) => {
                let _ = loaded.send(Ok(description));
                ensemble
            }
            Err(e) => {
                let _ = loaded.send(Err(e));
                return;
            }
        };
        drop(loaded);
        run(&ensemble, &jobs, max_batch, max_delay);
    })?;
    let description =
        ready.recv().map_err(|_| ServeError::Experiment("the model thread stopped while loading".into()))??;
    Ok(Model { description, queue })
}

/// Serves jobs until every sender is gone.
fn run(ensemble: &Ensemble, jobs: &Receiver<Job>, max_batch: usize, max_delay: std::time::Duration) {
    while let Ok(first) = jobs.recv() {
        let deadline = Instant::now() + max_delay;
        let mut images = first.images.len();
        let mut batch = vec![first];
        while images < max_batch {
            match jobs.recv_deadline(deadline) {
                Ok(job) => {
                    images += job.images.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        let inputs: Vec<&[RgbImage]> = batch.iter().flat_map(|j| j.images.iter().map(|i| i.as_slice())).collect();
        // libtorch reports errors by panicking: that fails this batch, not the server.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ensemble.predict(&inputs)))
            .unwrap_or_else(|_| Err(ServeError::Experiment("the forward pass failed (see the server's log)".into())));
        match result {
            Ok(answers) => {
                let mut answers = answers.into_iter();
                for job in batch {
                    let mine: Vec<Answer> = answers.by_ref().take(job.images.len()).collect();
                    let _ = job.reply.send(Ok((mine, images)));
                }
            }
            Err(e) => {
                for job in batch {
                    let _ = job.reply.send(Err(e.to_string()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job { images: Vec::new(), reply: oneshot::channel().0 }
    }

    #[test]
    fn submitting_never_waits_a_full_queue_is_refused() {
        let (queue, jobs) = bounded(2);
        let model = Model {
            description: Description { classes: Vec::new(), members: Vec::new(), pipelines: Vec::new() },
            queue,
        };
        assert!(model.submit(job()).is_ok() && model.submit(job()).is_ok());
        assert!(matches!(model.submit(job()), Err(Refused::Busy)));
        jobs.recv().unwrap();
        assert!(model.submit(job()).is_ok(), "room again once the model thread takes one");
        drop(jobs);
        assert!(matches!(model.submit(job()), Err(Refused::Stopped)));
    }
}
