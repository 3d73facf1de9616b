//! One sample from source to final pixels: read, decode at the right DCT scale, crop-and-resize to the
//! model's input size, augment. The loader runs this on worker threads; evaluation, prediction and the
//! cache use it with augmentation off.

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::augment::{self, sample_rng, AugmentConfig, RelativeCrop};
use crate::cache::Cache;
use crate::decode::{self, DecodeError, DecodeOptions};
use crate::image::RgbImage;
use crate::resize::{self, Filter};

/// What every sample becomes. Saved with a run's config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineConfig {
    /// Output width and height in pixels (rectangular sizes such as 768×512 are fine).
    pub size: (usize, usize),
    /// Resampling filter for the resize.
    pub filter: Filter,
    /// Augmentation, used only in training mode.
    pub augment: AugmentConfig,
    /// Seed of every random choice; with the epoch and the sample index it fixes each sample's stream.
    pub seed: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self { size: (224, 224), filter: Filter::default(), augment: AugmentConfig::default(), seed: 0 }
    }
}

/// Where the pixels come from.
#[derive(Clone)]
pub enum Source {
    /// Encoded image files, one per sample.
    Files(Arc<Vec<PathBuf>>),
    /// A memory-mapped cache of images already decoded at the output size.
    Cache(Arc<Cache>),
}

impl Source {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Source::Files(paths) => paths.len(),
            Source::Cache(cache) => cache.len(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A configured sample transform over a source.
#[derive(Clone)]
pub struct Pipeline {
    pub config: PipelineConfig,
    pub source: Source,
}

impl Pipeline {
    pub fn new(config: PipelineConfig, source: Source) -> Self {
        Self { config, source }
    }

    /// Produces sample `index` for `epoch`; `train` turns augmentation on.
    pub fn sample(&self, index: usize, epoch: u64, train: bool) -> Result<RgbImage, DecodeError> {
        match &self.source {
            Source::Files(paths) => {
                let path = &paths[index];
                let bytes = crate::decode::read_file(path)?;
                self.sample_bytes(&bytes, path, index, epoch, train)
            }
            Source::Cache(cache) => {
                let out = self.config.size;
                let (mut rng, augment) = self.randomness(index, epoch, train);
                let (w, h) = cache.size();
                let crop = augment::sample_crop(augment, &mut rng, (w, h), out);
                let stored = cache.image(index);
                let resized = if crop == RelativeCrop::FULL && (w, h) == out {
                    stored
                } else {
                    crop_resize(&stored, crop, out, self.config.filter)
                };
                Ok(augment::apply(augment, &mut rng, resized))
            }
        }
    }

    /// Produces sample `index` for `epoch` from an encoded image held in memory, exactly as [`Self::sample`]
    /// makes it from a file: a server prepares an uploaded image as evaluation prepared the test split.
    /// `path` only names the image in errors.
    pub fn sample_bytes(
        &self,
        bytes: &[u8],
        path: &Path,
        index: usize,
        epoch: u64,
        train: bool,
    ) -> Result<RgbImage, DecodeError> {
        let out = self.config.size;
        let (mut rng, augment) = self.randomness(index, epoch, train);
        let info = decode::probe_bytes(bytes, path)?;
        let crop = augment::sample_crop(augment, &mut rng, (info.width, info.height), out);
        let options = DecodeOptions { min_size: Some(crop.min_source_size(out)), ..Default::default() };
        let decoded = decode::decode_bytes(bytes, path, &options)?;
        let resized = crop_resize(&decoded, crop, out, self.config.filter);
        Ok(augment::apply(augment, &mut rng, resized))
    }

    /// The sample's random stream and the augmentation in force (none outside training).
    fn randomness(&self, index: usize, epoch: u64, train: bool) -> (ChaCha8Rng, &AugmentConfig) {
        let rng = sample_rng(self.config.seed, epoch, index as u64);
        static NONE: std::sync::LazyLock<AugmentConfig> = std::sync::LazyLock::new(AugmentConfig::default);
        (rng, if train { &self.config.augment } else { &NONE })
    }
}

fn crop_resize(src: &RgbImage, crop: RelativeCrop, out: (usize, usize), filter: Filter) -> RgbImage {
    resize::resize_crop(src, crop.to_pixels(src.width, src.height), out.0, out.1, filter)
}
