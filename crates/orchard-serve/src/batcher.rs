//! The one thread that owns the models: it takes jobs from a bounded queue, gathers them until the batch is
//! full or the first has waited the maximum delay, runs one forward pass per fold model for the whole
//! batch, and replies to each job on its oneshot channel with the batch size it ran in. A job whose
//! deadline passed while it waited is answered without being computed: its client has stopped waiting.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use orchard_data::image::RgbImage;
use tokio::sync::oneshot;

use crate::ensemble::{Answer, Description, Ensemble};
use crate::metrics::Metrics;
use crate::{Config, Result, ServeError};

/// A request's images (each as every member's input), when it must be answered by, and where its answers
/// go.
pub struct Job {
    pub images: Vec<Vec<RgbImage>>,
    /// When it was queued.
    pub queued: Instant,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Reply>,
}

/// The answers to a job (one per image) and the number of images in the batch it ran in.
pub type Reply = std::result::Result<(Vec<Answer>, usize), Failed>;

/// Why a queued job was not answered.
#[derive(Debug)]
pub enum Failed {
    /// Its deadline passed before its batch started.
    Expired,
    /// The forward pass failed.
    Forward(String),
}

/// The model thread as the HTTP side sees it.
#[derive(Clone)]
pub struct Model {
    pub description: Description,
    queue: Sender<Job>,
    metrics: Arc<Metrics>,
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
        let sent = self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Busy,
            TrySendError::Disconnected(_) => Refused::Stopped,
        });
        self.metrics.queued.set(self.queue.len() as i64);
        sent
    }
}

impl Model {
    /// A model thread that has stopped, for tests of what surrounds it.
    #[cfg(test)]
    pub fn stopped(metrics: Arc<Metrics>) -> Model {
        let description = Description { classes: vec!["a".into()], members: vec!["m".into()], pipelines: Vec::new() };
        Model { description, queue: bounded(1).0, metrics }
    }
}

/// Starts the model thread, which loads the ensemble; returns once it is loaded (or failed to load).
pub fn start(config: &Config, metrics: Arc<Metrics>) -> Result<Model> {
    let (queue, jobs) = bounded::<Job>(config.queue);
    let (loaded, ready) = bounded::<Result<Description>>(1);
    let (dir, device, max_batch, max_delay) = (config.dir.clone(), config.device, config.max_batch, config.max_delay);
    let precision = config.precision;
    let model_metrics = metrics.clone();
    std::thread::Builder::new().name("orchard-model".into()).spawn(move || {
        let ensemble = match Ensemble::load(&dir, device, precision) {
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
        run(&ensemble, &jobs, max_batch, max_delay, &model_metrics);
    })?;
    let description =
        ready.recv().map_err(|_| ServeError::Experiment("the model thread stopped while loading".into()))??;
    Ok(Model { description, queue, metrics })
}

/// Serves jobs until every sender is gone.
fn run(ensemble: &Ensemble, jobs: &Receiver<Job>, max_batch: usize, max_delay: std::time::Duration, metrics: &Metrics) {
    while let Some(batch) = gather(jobs, max_batch, max_delay, metrics) {
        let images: usize = batch.iter().map(|j| j.images.len()).sum();
        let inputs: Vec<&[RgbImage]> = batch.iter().flat_map(|j| j.images.iter().map(|i| i.as_slice())).collect();
        let started = Instant::now();
        // libtorch reports errors by panicking: that fails this batch, not the server. The client is told
        // only that it failed; libtorch's message (paths, sizes) goes to the server's log.
        let result = orchard_torch::failure::catch(|| ensemble.predict(&inputs)).unwrap_or_else(|failure| {
            eprintln!("orchard serve: a forward pass of {images} images failed: {failure}");
            Err(ServeError::Experiment("the forward pass failed (see the server's log)".into()))
        });
        metrics.forward.observe(started.elapsed().as_secs_f64());
        metrics.batch_images.observe(images as f64);
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
                    let _ = job.reply.send(Err(Failed::Forward(e.to_string())));
                }
            }
        }
    }
}

/// The next batch: jobs taken until `max_batch` images or until the first has waited `max_delay`, with
/// expired jobs answered and left out. `None` once every sender is gone.
fn gather(
    jobs: &Receiver<Job>,
    max_batch: usize,
    max_delay: std::time::Duration,
    metrics: &Metrics,
) -> Option<Vec<Job>> {
    let mut batch: Vec<Job> = Vec::new();
    let mut images = 0;
    let mut until = None;
    while images < max_batch {
        let job = match until {
            None => jobs.recv().ok()?,
            Some(until) => match jobs.recv_deadline(until) {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        metrics.queued.set(jobs.len() as i64);
        let now = Instant::now();
        if job.deadline <= now {
            metrics.expired.inc();
            let _ = job.reply.send(Err(Failed::Expired));
            continue;
        }
        until.get_or_insert(now + max_delay);
        images += job.images.len();
        batch.push(job);
    }
    let now = Instant::now();
    for job in &batch {
        metrics.queue_wait.observe(now.saturating_duration_since(job.queued).as_secs_f64());
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A job of `images` empty images due in `due`, and the receiver of its reply.
    fn job(images: usize, due: Duration) -> (Job, oneshot::Receiver<Reply>) {
        let (reply, answer) = oneshot::channel();
        let now = Instant::now();
        (Job { images: vec![Vec::new(); images], queued: now, deadline: now + due, reply }, answer)
    }

    #[test]
    fn submitting_never_waits_a_full_queue_is_refused() {
        let (queue, jobs) = bounded(2);
        let metrics = Arc::new(Metrics::new());
        let model = Model {
            description: Description { classes: Vec::new(), members: Vec::new(), pipelines: Vec::new() },
            queue,
            metrics: metrics.clone(),
        };
        let hour = Duration::from_secs(3600);
        assert!(model.submit(job(1, hour).0).is_ok() && model.submit(job(1, hour).0).is_ok());
        assert_eq!(metrics.queued.get(), 2);
        assert!(matches!(model.submit(job(1, hour).0), Err(Refused::Busy)));
        jobs.recv().unwrap();
        assert!(model.submit(job(1, hour).0).is_ok(), "room again once the model thread takes one");
        drop(jobs);
        assert!(matches!(model.submit(job(1, hour).0), Err(Refused::Stopped)));
    }

    #[test]
    fn batches_stop_at_the_image_limit_and_skip_expired_jobs() {
        let (queue, jobs) = bounded(16);
        let metrics = Metrics::new();
        let hour = Duration::from_secs(3600);
        let (expired, expired_reply) = job(1, Duration::ZERO);
        queue.send(expired).unwrap();
        let mut replies = Vec::new();
        for images in [2, 3, 4, 1] {
            let (j, r) = job(images, hour);
            queue.send(j).unwrap();
            replies.push(r);
        }
        // 2 + 3 + 4 reaches 8 images: the job of one waits for the next batch.
        let batch = gather(&jobs, 8, hour, &metrics).unwrap();
        assert_eq!(batch.iter().map(|j| j.images.len()).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(matches!(expired_reply.blocking_recv(), Ok(Err(Failed::Expired))));
        assert_eq!(metrics.expired.get(), 1);
        // Alone in the queue, it waits out the delay, then runs alone.
        let started = Instant::now();
        let batch = gather(&jobs, 8, Duration::from_millis(50), &metrics).unwrap();
        assert_eq!(batch.len(), 1);
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(queue);
        assert!(gather(&jobs, 8, hour, &metrics).is_none());
    }
}
