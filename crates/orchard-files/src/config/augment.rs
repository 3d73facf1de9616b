//! The `[augment]` table of a run's configuration: which training-time augmentations run, and how strongly.
//! The sampling itself is the input pipeline's (`orchard_data::augment`); these are the settings a run
//! records.
//!
//! Defaults follow the libraries practitioners know: torchvision's `RandomResizedCrop` and `ColorJitter`,
//! albumentations' `ShiftScaleRotate` and `CoarseDropout`.

use serde::{Deserialize, Serialize};

/// Which augmentations run, and how strongly. Serialised as the `[augment]` table of a run's config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Mirror left-right with probability 1/2 (the reference's `random_flip_left_right`).
    pub flip_x: bool,
    /// Mirror up-down with probability 1/2 (the reference's `random_flip_up_down`).
    pub flip_y: bool,
    /// Apply one of the 8 symmetries of the square, uniformly (flips plus 90° rotations and transposes).
    /// On a non-square output only the four flips are used, since a transpose would change the shape.
    pub dihedral: bool,
    pub random_resized_crop: Option<RandomResizedCrop>,
    pub shift_scale_rotate: Option<ShiftScaleRotate>,
    pub color_jitter: Option<ColorJitter>,
    pub blur: Option<GaussianBlur>,
    pub cutout: Option<Cutout>,
}

/// Crop a random area fraction and aspect ratio of the source, then resize to the output size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RandomResizedCrop {
    /// Range of the crop's area as a fraction of the source's (torchvision: 0.08–1).
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio, width / height, relative to the output's (torchvision: 3/4–4/3).
    pub ratio: (f64, f64),
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        Self { scale: (0.08, 1.0), ratio: (3.0 / 4.0, 4.0 / 3.0) }
    }
}

/// Random affine warp: shift, zoom and rotation about the centre, edges reflected.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShiftScaleRotate {
    /// Largest shift, as a fraction of width and height.
    pub shift: f64,
    /// Largest zoom change: the factor is drawn from [1 - scale, 1 + scale].
    pub scale: f64,
    /// Largest rotation, in degrees, either way.
    pub rotate: f64,
    /// Probability of applying the warp.
    pub p: f64,
}

impl Default for ShiftScaleRotate {
    fn default() -> Self {
        Self { shift: 0.0625, scale: 0.1, rotate: 45.0, p: 0.5 }
    }
}

/// Random brightness, contrast, saturation and hue changes, applied in that order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ColorJitter {
    /// Brightness factor drawn from [1 - b, 1 + b].
    pub brightness: f64,
    /// Contrast factor drawn from [1 - c, 1 + c] (blend with the mean grey).
    pub contrast: f64,
    /// Saturation factor drawn from [1 - s, 1 + s] (blend with the grey image).
    pub saturation: f64,
    /// Hue shift drawn from [-h, h], in turns (0.5 = half the colour wheel).
    pub hue: f64,
    /// Probability of applying the jitter.
    pub p: f64,
}

impl Default for ColorJitter {
    fn default() -> Self {
        Self { brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.02, p: 0.8 }
    }
}

/// Gaussian blur with a random standard deviation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GaussianBlur {
    /// Range of sigma, in output pixels.
    pub sigma: (f64, f64),
    /// Probability of blurring.
    pub p: f64,
}

impl Default for GaussianBlur {
    fn default() -> Self {
        Self { sigma: (0.1, 2.0), p: 0.5 }
    }
}

/// Blank out random rectangles (DeVries & Taylor 2017).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cutout {
    /// Up to this many holes (at least one).
    pub holes: u32,
    /// Largest hole side, as a fraction of the image side.
    pub size: f64,
    /// Fill colour.
    pub fill: [u8; 3],
    /// Probability of cutting any holes.
    pub p: f64,
}

impl Default for Cutout {
    fn default() -> Self {
        Self { holes: 8, size: 0.1, fill: [0, 0, 0], p: 0.5 }
    }
}

impl AugmentConfig {
    /// The reference notebook's augmentation: random left-right and up-down flips.
    pub fn reference() -> Self {
        Self { flip_x: true, flip_y: true, ..Self::default() }
    }

    /// Checks ranges once, so sampling never meets a nonsensical value.
    pub fn validate(&self) -> Result<(), String> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{name}.p = {p} is not in [0, 1]"))
            }
        };
        if let Some(c) = &self.random_resized_crop {
            if !(c.scale.0 > 0.0 && c.scale.0 <= c.scale.1 && c.scale.1 <= 1.0) {
                return Err(format!("random_resized_crop.scale = {:?} must satisfy 0 < min <= max <= 1", c.scale));
            }
            if !(c.ratio.0 > 0.0 && c.ratio.0 <= c.ratio.1 && c.ratio.1.is_finite()) {
                return Err(format!("random_resized_crop.ratio = {:?} must satisfy 0 < min <= max", c.ratio));
            }
        }
        if let Some(s) = &self.shift_scale_rotate {
            prob("shift_scale_rotate", s.p)?;
            if !((0.0..=1.0).contains(&s.shift) && (0.0..1.0).contains(&s.scale) && (0.0..=180.0).contains(&s.rotate)) {
                return Err(format!(
                    "shift_scale_rotate = {s:?}: need 0 <= shift <= 1, 0 <= scale < 1, 0 <= rotate <= 180"
                ));
            }
        }
        if let Some(j) = &self.color_jitter {
            prob("color_jitter", j.p)?;
            if [j.brightness, j.contrast, j.saturation].iter().any(|&v| !(0.0..=1.0).contains(&v))
                || !(0.0..=0.5).contains(&j.hue)
            {
                return Err(format!(
                    "color_jitter = {j:?}: brightness, contrast, saturation in [0, 1], hue in [0, 0.5]"
                ));
            }
        }
        if let Some(b) = &self.blur {
            prob("blur", b.p)?;
            if !(b.sigma.0 > 0.0 && b.sigma.0 <= b.sigma.1 && b.sigma.1 <= 32.0) {
                return Err(format!("blur.sigma = {:?} must satisfy 0 < min <= max <= 32", b.sigma));
            }
        }
        if let Some(c) = &self.cutout {
            prob("cutout", c.p)?;
            if c.holes == 0 || !(c.size > 0.0 && c.size <= 1.0) {
                return Err(format!("cutout = {c:?}: need holes >= 1 and 0 < size <= 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_flips_and_ranges_are_checked() {
        let reference = AugmentConfig::reference();
        assert!(reference.flip_x && reference.flip_y && !reference.dihedral);
        reference.validate().unwrap();
        let bad = AugmentConfig { blur: Some(GaussianBlur { sigma: (0.0, 1.0), p: 0.5 }), ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("blur.sigma"));
        let bad = AugmentConfig { cutout: Some(Cutout { p: 1.5, ..Default::default() }), ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("cutout.p = 1.5"));
    }
}
