//! Training-time augmentation, seeded per sample so that any (seed, epoch, index) reproduces exactly.
//!
//! The reference notebook flips left-right and up-down at random; the Plant Pathology winners added the
//! rest of this file (dihedral transforms, random resized crops, shift-scale-rotate, colour jitter, blur,
//! cutout). Each is off unless configured. Geometry that changes which source pixels are read (the random
//! resized crop) is decided before decoding, so a large JPEG is still decoded at the smallest DCT scale
//! that covers the crop; everything else works on the resized `RgbImage`.
//!
//! Defaults follow the libraries practitioners know: torchvision's `RandomResizedCrop` and `ColorJitter`,
//! albumentations' `ShiftScaleRotate` and `CoarseDropout`.

pub use orchard_files::config::{
    AugmentConfig, ColorJitter, Cutout, GaussianBlur, RandomResizedCrop, ShiftScaleRotate,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::image::{Dihedral, RgbImage};
use crate::resize::Crop;

/// The random stream of one sample in one epoch: the same triple always gives the same stream.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..].copy_from_slice(&index.to_le_bytes());
    ChaCha8Rng::from_seed(*blake3::hash(&key).as_bytes())
}

/// Draws the source crop (as fractions of the source's width and height) for a `src` image that will be
/// resized to `out`. Without a random resized crop this is the whole image. Call first, before [`apply`],
/// with the same `rng`.
pub fn sample_crop(
    config: &AugmentConfig,
    rng: &mut ChaCha8Rng,
    src: (usize, usize),
    out: (usize, usize),
) -> RelativeCrop {
    let Some(c) = &config.random_resized_crop else { return RelativeCrop::FULL };
    let (sw, sh) = (src.0 as f64, src.1 as f64);
    let out_ratio = out.0 as f64 / out.1 as f64;
    let area = sw * sh;
    let (log_lo, log_hi) = (c.ratio.0.ln(), c.ratio.1.ln());
    // torchvision's procedure: ten tries at a random area and ratio, then a centred fallback.
    for _ in 0..10 {
        let target_area = area * rng.random_range(c.scale.0..=c.scale.1);
        let ratio = out_ratio * rng.random_range(log_lo..=log_hi).exp();
        let w = (target_area * ratio).sqrt();
        let h = (target_area / ratio).sqrt();
        if w >= 1.0 && h >= 1.0 && w <= sw && h <= sh {
            let left = rng.random_range(0.0..=sw - w);
            let top = rng.random_range(0.0..=sh - h);
            return RelativeCrop { left: left / sw, top: top / sh, width: w / sw, height: h / sh };
        }
    }
    let src_ratio = sw / sh;
    let ratio = src_ratio.clamp(out_ratio * c.ratio.0, out_ratio * c.ratio.1);
    let (w, h) = if src_ratio > ratio { (sh * ratio, sh) } else { (sw, sw / ratio) };
    RelativeCrop { left: (sw - w) / 2.0 / sw, top: (sh - h) / 2.0 / sh, width: w / sw, height: h / sh }
}

/// Applies everything after the crop-and-resize, in a fixed order: dihedral/flips, shift-scale-rotate, colour
/// jitter, blur, cutout.
pub fn apply(config: &AugmentConfig, rng: &mut ChaCha8Rng, mut img: RgbImage) -> RgbImage {
    let square = img.width == img.height;
    let mut t = Dihedral::IDENTITY;
    if config.dihedral {
        let all = Dihedral::all();
        t = if square { all[rng.random_range(0..8)] } else { all[rng.random_range(0..4)] };
    } else {
        t.flip_x = config.flip_x && rng.random_bool(0.5);
        t.flip_y = config.flip_y && rng.random_bool(0.5);
    }
    if t != Dihedral::IDENTITY {
        img = img.transformed(t);
    }
    if let Some(s) = &config.shift_scale_rotate {
        if rng.random_bool(s.p) {
            let dx = rng.random_range(-s.shift..=s.shift);
            let dy = rng.random_range(-s.shift..=s.shift);
            let zoom = rng.random_range(1.0 - s.scale..=1.0 + s.scale);
            let angle = rng.random_range(-s.rotate..=s.rotate).to_radians();
            img = warp_affine(&img, dx, dy, zoom, angle);
        }
    }
    if let Some(j) = &config.color_jitter {
        if rng.random_bool(j.p) {
            let b = rng.random_range(1.0 - j.brightness..=1.0 + j.brightness);
            let c = rng.random_range(1.0 - j.contrast..=1.0 + j.contrast);
            let s = rng.random_range(1.0 - j.saturation..=1.0 + j.saturation);
            let h = rng.random_range(-j.hue..=j.hue);
            color_jitter(&mut img, b as f32, c as f32, s as f32, h as f32);
        }
    }
    if let Some(b) = &config.blur {
        if rng.random_bool(b.p) {
            let sigma = rng.random_range(b.sigma.0..=b.sigma.1);
            img = gaussian_blur(&img, sigma as f32);
        }
    }
    if let Some(c) = &config.cutout {
        if rng.random_bool(c.p) {
            let holes = rng.random_range(1..=c.holes);
            for _ in 0..holes {
                let hw = ((img.width as f64 * c.size * rng.random_range(0.5..=1.0)).round() as usize).max(1);
                let hh = ((img.height as f64 * c.size * rng.random_range(0.5..=1.0)).round() as usize).max(1);
                let x0 = rng.random_range(0..=img.width - hw.min(img.width));
                let y0 = rng.random_range(0..=img.height - hh.min(img.height));
                fill_rect(&mut img, x0, y0, hw, hh, c.fill);
            }
        }
    }
    img
}

/// A crop as fractions of the source's width and height, so it can be drawn before the decoder picks
/// its scale and applied to whatever size comes out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelativeCrop {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl RelativeCrop {
    pub const FULL: RelativeCrop = RelativeCrop { left: 0.0, top: 0.0, width: 1.0, height: 1.0 };

    /// The crop in pixels of a `width` × `height` image.
    pub fn to_pixels(self, width: usize, height: usize) -> Crop {
        let (w, h) = (width as f64, height as f64);
        Crop {
            left: self.left * w,
            top: self.top * h,
            width: (self.width * w).max(1.0),
            height: (self.height * h).max(1.0),
        }
    }

    /// The smallest source size whose crop still covers `out` pixels: what the decoder must deliver.
    pub fn min_source_size(self, out: (usize, usize)) -> (usize, usize) {
        ((out.0 as f64 / self.width).ceil() as usize, (out.1 as f64 / self.height).ceil() as usize)
    }
}

fn fill_rect(img: &mut RgbImage, x0: usize, y0: usize, w: usize, h: usize, fill: [u8; 3]) {
    for y in y0..(y0 + h).min(img.height) {
        for x in x0..(x0 + w).min(img.width) {
            let i = (y * img.width + x) * 3;
            img.data[i..i + 3].copy_from_slice(&fill);
        }
    }
}

/// Reflects an out-of-range coordinate back inside [0, n) without repeating the edge (OpenCV's
/// `BORDER_REFLECT_101`, albumentations' default).
fn reflect101(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m < n as isize { m } else { period - m }) as usize
}

/// Shifts by (`dx`·width, `dy`·height), zooms by `zoom` and rotates by `angle` radians (counter-clockwise
/// on screen) about the centre, sampling bilinearly with reflected edges.
pub fn warp_affine(src: &RgbImage, dx: f64, dy: f64, zoom: f64, angle: f64) -> RgbImage {
    let (w, h) = (src.width, src.height);
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let (sin, cos) = angle.sin_cos();
    let mut out = RgbImage::new(w, h);
    for oy in 0..h {
        for ox in 0..w {
            // Inverse map: undo the shift, the rotation and the zoom, about the pixel-centre grid.
            let u = ox as f64 + 0.5 - cx - dx * w as f64;
            let v = oy as f64 + 0.5 - cy - dy * h as f64;
            // y points down on screen, so a counter-clockwise rotation uses +sin on x.
            let sx = (cos * u - sin * v) / zoom + cx - 0.5;
            let sy = (sin * u + cos * v) / zoom + cy - 0.5;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
            let xs = [reflect101(x0 as isize, w), reflect101(x0 as isize + 1, w)];
            let ys = [reflect101(y0 as isize, h), reflect101(y0 as isize + 1, h)];
            let o = (oy * w + ox) * 3;
            for c in 0..3 {
                let p = |x: usize, y: usize| src.data[(y * w + x) * 3 + c] as f32;
                let top = p(xs[0], ys[0]) * (1.0 - fx) + p(xs[1], ys[0]) * fx;
                let bottom = p(xs[0], ys[1]) * (1.0 - fx) + p(xs[1], ys[1]) * fx;
                out.data[o + c] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// ITU-R 601 luma, as torchvision's `rgb_to_grayscale`.
fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

/// Brightness (scale), contrast (blend with the mean luma), saturation (blend with the pixel's luma),
/// hue (rotate in HSV by `hue` turns), as torchvision's `ColorJitter` in a fixed order.
pub fn color_jitter(img: &mut RgbImage, brightness: f32, contrast: f32, saturation: f32, hue: f32) {
    let clamp = |v: f32| v.clamp(0.0, 255.0);
    let mut px: Vec<[f32; 3]> = img.data.chunks_exact(3).map(|p| [p[0] as f32, p[1] as f32, p[2] as f32]).collect();
    for p in px.iter_mut() {
        *p = p.map(|v| clamp(v * brightness));
    }
    let mean = px.iter().map(|p| luma(p[0], p[1], p[2])).sum::<f32>() / px.len().max(1) as f32;
    for p in px.iter_mut() {
        *p = p.map(|v| clamp(contrast * v + (1.0 - contrast) * mean));
        let l = luma(p[0], p[1], p[2]);
        *p = p.map(|v| clamp(saturation * v + (1.0 - saturation) * l));
        if hue != 0.0 {
            *p = shift_hue(*p, hue);
        }
    }
    for (d, p) in img.data.chunks_exact_mut(3).zip(&px) {
        for c in 0..3 {
            d[c] = p[c].round() as u8;
        }
    }
}

fn shift_hue([r, g, b]: [f32; 3], turns: f32) -> [f32; 3] {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    if delta == 0.0 {
        return [r, g, b];
    }
    let h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    } / 6.0;
    let h = (h + turns).rem_euclid(1.0) * 6.0;
    let (s, v) = (delta / max, max);
    let i = h.floor();
    let f = h - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as u32 % 6 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Separable Gaussian blur with reflected edges; the kernel spans ±3 sigma.
pub fn gaussian_blur(src: &RgbImage, sigma: f32) -> RgbImage {
    let radius = (3.0 * sigma).ceil().max(1.0) as isize;
    let mut kernel: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let (w, h) = (src.width, src.height);
    let pass = |data: &[f32], horizontal: bool| -> Vec<f32> {
        let mut out = vec![0f32; data.len()];
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = 0.0;
                    for (k, &weight) in kernel.iter().enumerate() {
                        let d = k as isize - radius;
                        let (sx, sy) = if horizontal {
                            (reflect101(x as isize + d, w), y)
                        } else {
                            (x, reflect101(y as isize + d, h))
                        };
                        acc += weight * data[(sy * w + sx) * 3 + c];
                    }
                    out[(y * w + x) * 3 + c] = acc;
                }
            }
        }
        out
    };
    let data: Vec<f32> = src.data.iter().map(|&v| v as f32).collect();
    let blurred = pass(&pass(&data, true), false);
    RgbImage::from_raw(w, h, blurred.iter().map(|v| v.round().clamp(0.0, 255.0) as u8).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(w: usize, h: usize, seed: u64) -> RgbImage {
        let mut rng = sample_rng(seed, 0, 0);
        RgbImage::from_raw(w, h, (0..w * h * 3).map(|_| rng.random()).collect())
    }

    fn everything() -> AugmentConfig {
        AugmentConfig {
            flip_x: true,
            flip_y: true,
            dihedral: true,
            random_resized_crop: Some(Default::default()),
            shift_scale_rotate: Some(ShiftScaleRotate { p: 1.0, ..Default::default() }),
            color_jitter: Some(ColorJitter { p: 1.0, ..Default::default() }),
            blur: Some(GaussianBlur { p: 1.0, ..Default::default() }),
            cutout: Some(Cutout { p: 1.0, ..Default::default() }),
        }
    }

    #[test]
    fn the_same_seed_epoch_and_index_reproduce_exactly() {
        let cfg = everything();
        cfg.validate().unwrap();
        let img = noise(32, 32, 1);
        let run = |seed, epoch, index| {
            let mut rng = sample_rng(seed, epoch, index);
            let crop = sample_crop(&cfg, &mut rng, (640, 480), (32, 32));
            (crop, apply(&cfg, &mut rng, img.clone()))
        };
        assert_eq!(run(7, 3, 11), run(7, 3, 11));
        assert_ne!(run(7, 3, 11).1, run(7, 4, 11).1);
        assert_ne!(run(7, 3, 11).1, run(7, 3, 12).1);
        assert_ne!(run(7, 3, 11).1, run(8, 3, 11).1);
    }

    #[test]
    fn reference_flips_produce_all_four_flip_states_and_nothing_else() {
        let cfg = AugmentConfig::reference();
        let img = noise(6, 4, 2);
        let flips: Vec<RgbImage> = Dihedral::all()[..4].iter().map(|&t| img.transformed(t)).collect();
        let mut seen = [0usize; 4];
        for index in 0..400 {
            let out = apply(&cfg, &mut sample_rng(0, 0, index), img.clone());
            let k = flips.iter().position(|f| *f == out).expect("output is one of the four flips");
            seen[k] += 1;
        }
        // Each state has probability 1/4: 400 draws put each within [60, 140] with overwhelming odds.
        assert!(seen.iter().all(|&n| (60..=140).contains(&n)), "{seen:?}");
    }

    #[test]
    fn dihedral_reaches_all_eight_on_square_images_and_keeps_rectangles_rectangular() {
        let cfg = AugmentConfig { dihedral: true, ..Default::default() };
        let sq = noise(5, 5, 3);
        let mut seen = std::collections::HashSet::new();
        for index in 0..200 {
            let out = apply(&cfg, &mut sample_rng(1, 0, index), sq.clone());
            seen.insert(Dihedral::all().iter().position(|&t| sq.transformed(t) == out).unwrap());
        }
        assert_eq!(seen.len(), 8);
        let rect = noise(6, 4, 4);
        for index in 0..50 {
            let out = apply(&cfg, &mut sample_rng(1, 0, index), rect.clone());
            assert_eq!((out.width, out.height), (6, 4));
        }
    }

    #[test]
    fn random_resized_crops_respect_area_and_ratio_bounds() {
        let cfg = AugmentConfig {
            random_resized_crop: Some(RandomResizedCrop { scale: (0.2, 0.6), ratio: (0.75, 1.3333) }),
            ..Default::default()
        };
        for index in 0..300 {
            let c = sample_crop(&cfg, &mut sample_rng(0, 0, index), (300, 200), (64, 64));
            assert!(
                c.left >= 0.0 && c.top >= 0.0 && c.left + c.width <= 1.0 + 1e-9 && c.top + c.height <= 1.0 + 1e-9,
                "{c:?}"
            );
            let area = c.width * c.height;
            assert!((0.2 - 1e-9..=0.6 + 1e-9).contains(&area), "area {area}");
            let ratio = (c.width * 300.0) / (c.height * 200.0);
            assert!((0.75 - 1e-6..=1.3334).contains(&ratio), "ratio {ratio}");
        }
        assert_eq!(
            sample_crop(&AugmentConfig::default(), &mut sample_rng(0, 0, 0), (30, 20), (8, 8)),
            RelativeCrop::FULL
        );
        let c = RelativeCrop { left: 0.5, top: 0.0, width: 0.25, height: 0.5 };
        assert_eq!(c.min_source_size((224, 224)), (896, 448));
    }

    #[test]
    fn identity_warp_is_exact_and_a_half_turn_matches_the_double_flip() {
        let img = noise(9, 7, 5);
        assert_eq!(warp_affine(&img, 0.0, 0.0, 1.0, 0.0), img);
        let half_turn = warp_affine(&img, 0.0, 0.0, 1.0, std::f64::consts::PI);
        assert_eq!(half_turn, img.transformed(Dihedral { transpose: false, flip_x: true, flip_y: true }));
        // A shift by exactly one pixel moves pixels by one (away from the reflected edge).
        let shifted = warp_affine(&img, 1.0 / 9.0, 0.0, 1.0, 0.0);
        for y in 0..7 {
            for x in 1..9 {
                assert_eq!(shifted.pixel(x, y), img.pixel(x - 1, y));
            }
        }
    }

    #[test]
    fn neutral_colour_jitter_is_the_identity_and_zero_saturation_is_grey() {
        let img = noise(8, 8, 6);
        let mut same = img.clone();
        color_jitter(&mut same, 1.0, 1.0, 1.0, 0.0);
        assert_eq!(same, img);
        let mut grey = img.clone();
        color_jitter(&mut grey, 1.0, 1.0, 0.0, 0.0);
        assert!(grey.data.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        let mut full_turn = img.clone();
        color_jitter(&mut full_turn, 1.0, 1.0, 1.0, 1.0 / 3.0);
        // A third of a turn maps pure red to pure green.
        let mut red = RgbImage::from_raw(1, 1, vec![200, 0, 0]);
        color_jitter(&mut red, 1.0, 1.0, 1.0, 1.0 / 3.0);
        assert_eq!(red.data, vec![0, 200, 0]);
    }

    #[test]
    fn blur_keeps_flat_images_and_the_mean_and_smooths_noise() {
        let flat = RgbImage::from_raw(10, 10, [50u8, 100, 150].repeat(100));
        assert_eq!(gaussian_blur(&flat, 1.5), flat);
        let img = noise(32, 32, 7);
        let out = gaussian_blur(&img, 2.0);
        let var = |im: &RgbImage| {
            let m = im.data.iter().map(|&v| v as f64).sum::<f64>() / im.data.len() as f64;
            (m, im.data.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / im.data.len() as f64)
        };
        let (m0, v0) = var(&img);
        let (m1, v1) = var(&out);
        assert!((m0 - m1).abs() < 2.0, "{m0} vs {m1}");
        assert!(v1 < v0 / 10.0, "{v1} vs {v0}");
    }

    #[test]
    fn cutout_fills_holes_with_the_fill_colour() {
        let cfg = AugmentConfig {
            cutout: Some(Cutout { holes: 1, size: 0.5, fill: [1, 2, 3], p: 1.0 }),
            ..Default::default()
        };
        let img = RgbImage::from_raw(20, 20, [200u8; 3].repeat(400));
        let out = apply(&cfg, &mut sample_rng(0, 0, 0), img);
        let holes = out.data.chunks(3).filter(|p| *p == [1, 2, 3]).count();
        assert!((25..=100).contains(&holes), "{holes} pixels cut");
        assert!(out.data.chunks(3).all(|p| p == [1, 2, 3] || p == [200, 200, 200]));
    }

    #[test]
    fn invalid_configs_are_refused_with_the_field_name() {
        let bad = AugmentConfig { blur: Some(GaussianBlur { sigma: (0.0, 1.0), p: 0.5 }), ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("blur.sigma"));
        let bad = AugmentConfig { cutout: Some(Cutout { p: 1.5, ..Default::default() }), ..Default::default() };
        assert!(bad.validate().unwrap_err().contains("cutout.p"));
    }
}
