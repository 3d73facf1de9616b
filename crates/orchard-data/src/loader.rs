//! Batches for an epoch: a seeded order, worker threads running the [`Pipeline`], bounded prefetch, and
//! delivery in order.
//!
//! Batch `j` of an epoch is built whole by worker `j mod workers` into one contiguous N×H×W×3 buffer, which
//! is handed over as is (libtorch wraps it without copying). Each worker has its own bounded channel, and the
//! consumer takes batch `j` from worker `j mod workers`, so delivery is in order and at most
//! `workers × (prefetch + 1)` batches exist at once, however slow the consumer. Dropping the iterator stops
//! the workers.
//!
//! For data-parallel training each replica builds a loader with its own `shard`: all replicas draw the
//! same global order and replica `r` of `w` takes batches `r, r + w, …`, with the batch list cut to a
//! multiple of `w` so every replica runs the same number of steps.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;

use crate::augment::sample_rng;
use crate::decode::DecodeError;
use crate::pipeline::Pipeline;

/// How batches are formed.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch (per replica).
    pub batch_size: usize,
    /// Reshuffle the order every epoch (seeded by the pipeline's seed and the epoch).
    pub shuffle: bool,
    /// Drop the last, smaller batch.
    pub drop_last: bool,
    /// Decode threads.
    pub workers: usize,
    /// Batches each worker may finish ahead of the consumer.
    pub prefetch: usize,
    /// Augment (training) or not (evaluation, prediction).
    pub train: bool,
    /// This replica's index and the number of replicas.
    pub shard: (usize, usize),
}

impl Default for LoaderConfig {
    fn default() -> Self {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { batch_size: 16, shuffle: false, drop_last: false, workers, prefetch: 2, train: false, shard: (0, 1) }
    }
}

/// A batch of samples, pixels in N×H×W×3 order.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Which samples (indices into the loader's sample list), in batch order.
    pub indices: Vec<usize>,
    /// 8-bit RGB pixels, N×H×W×3, contiguous.
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
    /// Targets, N×C, contiguous (empty when the samples have none).
    pub targets: Vec<f32>,
    /// Number of target columns C.
    pub classes: usize,
}

impl Batch {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True for a batch without samples (never produced by the loader).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Loads batches of a fixed list of samples.
#[derive(Clone)]
pub struct Loader {
    pipeline: Arc<Pipeline>,
    /// Indices into the pipeline's source (e.g. one fold's training rows).
    samples: Arc<Vec<usize>>,
    /// Targets per source index, all of the same length (may be empty).
    targets: Arc<Vec<Vec<f32>>>,
    config: LoaderConfig,
}

impl Loader {
    /// A loader over `samples` (indices into the pipeline's source); `targets[i]` belongs to source index
    /// `i` (pass an empty vector for unlabelled data).
    ///
    /// # Panics
    /// On a zero batch size, zero workers, a shard index out of range, or a sample index beyond the source.
    pub fn new(
        pipeline: Arc<Pipeline>,
        samples: Vec<usize>,
        targets: Arc<Vec<Vec<f32>>>,
        config: LoaderConfig,
    ) -> Self {
        assert!(config.batch_size > 0 && config.workers > 0, "batch size and workers must be positive: {config:?}");
        assert!(config.shard.0 < config.shard.1, "shard {:?} out of range", config.shard);
        let n = pipeline.source.len();
        assert!(samples.iter().all(|&i| i < n), "sample index beyond the {n} sources");
        assert!(targets.is_empty() || targets.len() == n, "targets for {} of {n} sources", targets.len());
        Self { pipeline, samples: Arc::new(samples), targets, config }
    }

    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The batches (lists of source indices) this replica gets in `epoch`.
    pub fn plan(&self, epoch: u64) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = self.samples.to_vec();
        if self.config.shuffle {
            order.shuffle(&mut sample_rng(self.pipeline.config.seed, epoch, u64::MAX));
        }
        let mut batches: Vec<Vec<usize>> = order.chunks(self.config.batch_size).map(<[usize]>::to_vec).collect();
        let last = batches.last().map_or(0, Vec::len);
        // A training batch of one image is dropped too: batch norm's statistics of one value per channel
        // (at the last layers' 1×1 maps) divide by zero, and the running variance turns NaN (PyTorch refuses
        // such a batch).
        let lone = self.config.train && last == 1 && self.config.batch_size > 1;
        if (self.config.drop_last && last < self.config.batch_size) || lone {
            batches.pop();
        }
        let (rank, world) = self.config.shard;
        let usable = batches.len() / world * world;
        batches.into_iter().take(usable).skip(rank).step_by(world).collect()
    }

    /// Number of batches per epoch for this replica.
    pub fn batches_per_epoch(&self) -> usize {
        self.plan(0).len()
    }

    /// Starts the workers for `epoch` and returns the batches in order.
    pub fn epoch(&self, epoch: u64) -> Batches {
        let plan = Arc::new(self.plan(epoch));
        let workers = self.config.workers.min(plan.len()).max(1);
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = bounded(self.config.prefetch);
            receivers.push(rx);
            let (plan, pipeline, targets, train) =
                (plan.clone(), self.pipeline.clone(), self.targets.clone(), self.config.train);
            handles.push(std::thread::spawn(move || {
                for indices in plan.iter().skip(w).step_by(workers) {
                    let batch = build_batch(&pipeline, &targets, indices, epoch, train);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        return; // the consumer is gone, or this worker has reported its error
                    }
                }
            }));
        }
        Batches { receivers, handles, next: 0, total: plan.len(), failed: false }
    }
}

fn build_batch(
    pipeline: &Pipeline,
    targets: &[Vec<f32>],
    indices: &[usize],
    epoch: u64,
    train: bool,
) -> Result<Batch, DecodeError> {
    let (width, height) = pipeline.config.size;
    let per_image = width * height * 3;
    let mut pixels = vec![0u8; indices.len() * per_image];
    for (slot, &index) in pixels.chunks_exact_mut(per_image).zip(indices) {
        let image = pipeline.sample(index, epoch, train)?;
        debug_assert_eq!((image.width, image.height), (width, height));
        slot.copy_from_slice(&image.data);
    }
    let classes = targets.first().map_or(0, Vec::len);
    let targets =
        if classes == 0 { Vec::new() } else { indices.iter().flat_map(|&i| targets[i].iter().copied()).collect() };
    Ok(Batch { indices: indices.to_vec(), pixels, width, height, targets, classes })
}

/// The batches of one epoch, in order. Yields an error (naming the file) and then stops if a sample
/// cannot be read.
pub struct Batches {
    receivers: Vec<Receiver<Result<Batch, DecodeError>>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    total: usize,
    failed: bool,
}

impl Batches {
    /// Number of batches in this epoch.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next >= self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        match rx.recv() {
            Ok(item) => {
                self.failed = item.is_err();
                Some(item)
            }
            Err(_) => {
                self.failed = true;
                Some(Err(DecodeError::Io {
                    path: "<loader>".into(),
                    source: std::io::Error::other("a loader worker stopped unexpectedly"),
                }))
            }
        }
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.receivers.clear(); // workers blocked on a full channel now fail to send and exit
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::AugmentConfig;
    use crate::image::RgbImage;
    use crate::pipeline::{PipelineConfig, Source};
    use std::path::PathBuf;

    /// Ten small JPEGs whose first pixel encodes their index.
    fn fixture(dir: &std::path::Path) -> Arc<Vec<PathBuf>> {
        Arc::new(
            (0..10)
                .map(|i| {
                    let img = RgbImage::from_raw(24, 16, [(i * 20) as u8, 50, 100].repeat(24 * 16));
                    let p = dir.join(format!("{i}.jpg"));
                    std::fs::write(&p, crate::decode::encode_jpeg(&img, 95).unwrap()).unwrap();
                    p
                })
                .collect(),
        )
    }

    fn loader(paths: Arc<Vec<PathBuf>>, config: LoaderConfig, augment: AugmentConfig) -> Loader {
        let pipeline = Pipeline::new(
            PipelineConfig { size: (12, 8), augment, seed: 5, ..Default::default() },
            Source::Files(paths),
        );
        let targets = (0..10).map(|i| vec![i as f32, 1.0]).collect();
        Loader::new(Arc::new(pipeline), (0..10).collect(), Arc::new(targets), config)
    }

    #[test]
    fn every_sample_once_per_epoch_in_a_seeded_order_with_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let config = LoaderConfig { batch_size: 3, shuffle: true, workers: 3, prefetch: 1, ..Default::default() };
        let l = loader(fixture(dir.path()), config, AugmentConfig::default());
        let epoch: Vec<Batch> = l.epoch(0).map(Result::unwrap).collect();
        assert_eq!(epoch.iter().map(Batch::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
        let mut seen: Vec<usize> = epoch.iter().flat_map(|b| b.indices.clone()).collect();
        assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        for b in &epoch {
            assert_eq!(b.pixels.len(), b.len() * 12 * 8 * 3);
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(b.targets[k * 2], i as f32);
                let first = b.pixels[k * 12 * 8 * 3] as i32;
                assert!((first - (i * 20) as i32).abs() <= 3, "sample {i} has red {first}");
            }
        }
        let again: Vec<Batch> = l.epoch(0).map(Result::unwrap).collect();
        assert_eq!(again, epoch);
        let next: Vec<Vec<usize>> = l.epoch(1).map(|b| b.unwrap().indices).collect();
        assert_ne!(next, epoch.iter().map(|b| b.indices.clone()).collect::<Vec<_>>());
    }

    #[test]
    fn augmented_batches_do_not_depend_on_the_number_of_workers() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fixture(dir.path());
        let aug = AugmentConfig { random_resized_crop: Some(Default::default()), ..AugmentConfig::reference() };
        let run = |workers| {
            let config = LoaderConfig { batch_size: 4, shuffle: true, workers, train: true, ..Default::default() };
            loader(paths.clone(), config, aug.clone()).epoch(3).map(Result::unwrap).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(4));
    }

    #[test]
    fn a_last_training_batch_of_one_image_is_dropped_and_kept_for_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fixture(dir.path());
        assert_eq!(paths.len(), 10);
        let plan = |train| {
            let config = LoaderConfig { batch_size: 3, train, ..Default::default() };
            loader(paths.clone(), config, AugmentConfig::default()).plan(0)
        };
        assert_eq!(plan(true).iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3]);
        assert_eq!(plan(false).iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 3, 1]);
    }

    #[test]
    fn drop_last_and_shards_split_the_epoch_evenly() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fixture(dir.path());
        let l = loader(
            paths.clone(),
            LoaderConfig { batch_size: 3, drop_last: true, ..Default::default() },
            AugmentConfig::default(),
        );
        assert_eq!(l.plan(0), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8]]);
        let shard = |rank| {
            loader(
                paths.clone(),
                LoaderConfig { batch_size: 2, shuffle: true, shard: (rank, 2), ..Default::default() },
                AugmentConfig::default(),
            )
            .plan(4)
        };
        let (a, b) = (shard(0), shard(1));
        assert_eq!((a.len(), b.len()), (2, 2), "5 batches cut to 4, two each");
        let mut all: Vec<usize> = a.iter().chain(&b).flatten().copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8, "the replicas see disjoint samples");
    }

    #[test]
    fn an_unreadable_file_is_reported_by_name_and_ends_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fixture(dir.path());
        std::fs::write(&paths[4], b"garbage").unwrap();
        let l =
            loader(paths, LoaderConfig { batch_size: 2, workers: 2, ..Default::default() }, AugmentConfig::default());
        let results: Vec<_> = l.epoch(0).collect();
        let err = results.iter().find_map(|r| r.as_ref().err()).expect("an error");
        assert!(err.to_string().contains("4.jpg"), "{err}");
        assert!(results.last().unwrap().is_err(), "nothing after the error");
    }

    #[test]
    fn dropping_an_epoch_early_stops_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        let l = loader(
            fixture(dir.path()),
            LoaderConfig { batch_size: 1, workers: 2, prefetch: 1, ..Default::default() },
            AugmentConfig::default(),
        );
        let mut batches = l.epoch(0);
        assert!(batches.next().unwrap().is_ok());
        drop(batches); // joins the workers: returns only if they stopped
    }
}
