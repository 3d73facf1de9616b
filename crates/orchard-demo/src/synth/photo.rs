//! The photograph: lighting over the whole scene, then the camera's exposure, colour and sensor noise.

use orchard_data::image::RgbImage;
use rand::Rng;
use tiny_skia::{Pixmap, Point, Transform};

use super::paint::{linear, radial, Rgb, BLACK};
use super::scene::Scene;
use super::uniform;

impl Scene {
    /// A soft cast shadow, a highlight and a vignette, each sometimes.
    pub(super) fn lighting(&self, pixmap: &mut Pixmap, rng: &mut impl Rng) {
        let rect = self.full_rect();
        if rng.random_bool(0.35) {
            let angle = uniform(rng, 0.0, std::f32::consts::TAU);
            let centre = Point::from_xy(self.w / 2.0, self.h / 2.0);
            let reach = 0.6 * (self.w + self.h) / 2.0;
            let (dx, dy) = (angle.cos() * reach, angle.sin() * reach);
            let edge = uniform(rng, 0.25, 0.7);
            let depth = uniform(rng, 0.25, 0.55);
            let shadow = linear(
                Point::from_xy(centre.x - dx, centre.y - dy),
                Point::from_xy(centre.x + dx, centre.y + dy),
                &[
                    (0.0, BLACK, 0.0),
                    (edge, BLACK, 0.0),
                    ((edge + uniform(rng, 0.05, 0.25)).min(1.0), BLACK, depth),
                    (1.0, BLACK, depth),
                ],
            );
            pixmap.fill_rect(rect, &shadow, Transform::identity(), None);
        }
        if rng.random_bool(0.3) {
            let at = self.random_point(rng, 0.0);
            let warm = Rgb::hsv(uniform(rng, 30.0, 60.0), uniform(rng, 0.0, 0.3), 1.0);
            let highlight =
                radial(at, self.s * uniform(rng, 0.4, 1.0), &[(0.0, warm, uniform(rng, 0.15, 0.4)), (1.0, warm, 0.0)]);
            pixmap.fill_rect(rect, &highlight, Transform::identity(), None);
        }
        if rng.random_bool(0.3) {
            let centre = Point::from_xy(self.w / 2.0, self.h / 2.0);
            let reach = (self.w * self.w + self.h * self.h).sqrt() / 2.0;
            let vignette = radial(
                centre,
                reach,
                &[(0.0, BLACK, 0.0), (uniform(rng, 0.4, 0.7), BLACK, 0.0), (1.0, BLACK, uniform(rng, 0.2, 0.45))],
            );
            pixmap.fill_rect(rect, &vignette, Transform::identity(), None);
        }
    }
}

/// wyrand: a tiny fast generator for per-pixel noise (seeded from the image's ChaCha stream).
struct WyRand(u64);

impl WyRand {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xA076_1D64_78BD_642F);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xE703_7ED1_A0B4_28DB) as u128);
        ((t >> 64) ^ t) as u64
    }

    /// Two approximately normal values (each the sum of two uniforms, scaled to unit variance).
    fn normal_pair(&mut self) -> (f32, f32) {
        let v = self.next();
        let u = |shift: u32| ((v >> shift) & 0xFFFF) as f32 / 65536.0;
        const SCALE: f32 = 2.449_489_7; // √6: the sum of two uniforms has variance 1/6.
        ((u(0) + u(16) - 1.0) * SCALE, (u(32) + u(48) - 1.0) * SCALE)
    }
}

/// The camera: global brightness, contrast, colour temperature and saturation, then sensor noise;
/// converts tiny-skia's premultiplied RGBA (opaque everywhere) to RGB.
pub(super) fn finish(pixmap: &Pixmap, rng: &mut impl Rng) -> RgbImage {
    let brightness = uniform(rng, 0.65, 1.3);
    let contrast = uniform(rng, 0.7, 1.3);
    let temperature = uniform(rng, -1.0, 1.0);
    let tint = uniform(rng, -0.05, 0.05);
    let gain =
        [brightness * (1.0 + 0.14 * temperature), brightness * (1.0 + tint), brightness * (1.0 - 0.14 * temperature)];
    let saturation = uniform(rng, 0.65, 1.25);
    let luma_noise = uniform(rng, 0.5, 5.0);
    let chroma_noise = uniform(rng, 0.5, 3.5);
    let mut noise = WyRand(rng.random());
    // Contrast and gain per channel as a table of the 256 input levels.
    let table: Vec<[f32; 256]> = gain
        .iter()
        .map(|&g| std::array::from_fn(|v| ((v as f32 / 255.0 - 0.5) * contrast + 0.5) * g * 255.0))
        .collect();

    let mut data = Vec::with_capacity(pixmap.width() as usize * pixmap.height() as usize * 3);
    for px in pixmap.data().chunks_exact(4) {
        let rgb = [table[0][px[0] as usize], table[1][px[1] as usize], table[2][px[2] as usize]];
        let luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
        let (n0, n1) = noise.normal_pair();
        let (n2, n3) = noise.normal_pair();
        let shared = n0 * luma_noise;
        for (c, n) in rgb.into_iter().zip([n1, n2, n3]) {
            let v = luma + saturation * (c - luma) + shared + n * chroma_noise;
            data.push(v.round().clamp(0.0, 255.0) as u8);
        }
    }
    RgbImage::from_raw(pixmap.width() as usize, pixmap.height() as usize, data)
}
