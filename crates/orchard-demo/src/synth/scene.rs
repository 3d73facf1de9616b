//! The picture being drawn, and the background the leaf is photographed against.

use rand::Rng;
use tiny_skia::{FillRule, Pixmap, Point, Rect, Transform};

use super::leaf::{leaf_color, LeafShape};
use super::paint::{circle, linear, paint, placed, radial, Rgb};
use super::uniform;

/// The kinds of surroundings a leaf is photographed against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ground {
    Soil,
    Grass,
    Sky,
    Grey,
    Foliage,
}

impl Ground {
    fn sample(rng: &mut impl Rng) -> Ground {
        match rng.random_range(0..10) {
            0..=1 => Ground::Soil,
            2..=3 => Ground::Grass,
            4 => Ground::Sky,
            5..=6 => Ground::Grey,
            _ => Ground::Foliage,
        }
    }

    fn color(self, rng: &mut impl Rng) -> Rgb {
        match self {
            Ground::Soil => Rgb::hsv(uniform(rng, 15.0, 42.0), uniform(rng, 0.25, 0.65), uniform(rng, 0.2, 0.6)),
            Ground::Grass => Rgb::hsv(uniform(rng, 55.0, 125.0), uniform(rng, 0.3, 0.75), uniform(rng, 0.25, 0.65)),
            Ground::Sky => Rgb::hsv(uniform(rng, 190.0, 225.0), uniform(rng, 0.05, 0.35), uniform(rng, 0.6, 0.95)),
            Ground::Grey => Rgb::hsv(uniform(rng, 0.0, 360.0), uniform(rng, 0.0, 0.1), uniform(rng, 0.25, 0.85)),
            Ground::Foliage => Rgb::hsv(uniform(rng, 70.0, 145.0), uniform(rng, 0.35, 0.85), uniform(rng, 0.08, 0.4)),
        }
    }
}

/// The picture being drawn; lengths are in pixels, `s` is the short side.
pub(super) struct Scene {
    pub(super) w: f32,
    pub(super) h: f32,
    pub(super) s: f32,
}

impl Scene {
    pub(super) fn full_rect(&self) -> Rect {
        Rect::from_xywh(0.0, 0.0, self.w, self.h)
            .unwrap_or_else(|| Rect::from_xywh(0.0, 0.0, 1.0, 1.0).expect("unit rect"))
    }

    pub(super) fn random_point(&self, rng: &mut impl Rng, margin: f32) -> Point {
        Point::from_xy(uniform(rng, -margin, self.w + margin), uniform(rng, -margin, self.h + margin))
    }

    /// Gradients of soil, grass, sky or grey, soft blobs, sometimes gravel and other leaves.
    pub(super) fn background(&self, pixmap: &mut Pixmap, rng: &mut impl Rng) {
        let grounds = [Ground::sample(rng), Ground::sample(rng)];
        let base = grounds[0].color(rng);
        pixmap.fill(base.color(1.0));

        // A two- or three-tone gradient across the picture.
        let angle = uniform(rng, 0.0, std::f32::consts::TAU);
        let (dx, dy) = (angle.cos() * self.w * 0.6, angle.sin() * self.h * 0.6);
        let centre = Point::from_xy(self.w / 2.0, self.h / 2.0);
        let mid = if rng.random_bool(0.5) { grounds[1].color(rng) } else { base.mix(grounds[1].color(rng), 0.5) };
        let stops = [(0.0, base, 1.0), (uniform(rng, 0.3, 0.7), mid, 1.0), (1.0, grounds[1].color(rng), 1.0)];
        let gradient =
            linear(Point::from_xy(centre.x - dx, centre.y - dy), Point::from_xy(centre.x + dx, centre.y + dy), &stops);
        pixmap.fill_rect(self.full_rect(), &gradient, Transform::identity(), None);

        // Out-of-focus blobs.
        for _ in 0..rng.random_range(5..=14) {
            let ground = if rng.random_bool(0.75) { grounds[rng.random_range(0..2)] } else { Ground::sample(rng) };
            let color = ground.color(rng);
            let at = self.random_point(rng, 0.1 * self.s);
            let r = self.s * uniform(rng, 0.06, 0.45);
            let alpha = uniform(rng, 0.3, 0.85);
            let blob = radial(
                Point::zero(),
                r,
                &[(0.0, color, alpha), (uniform(rng, 0.2, 0.6), color, alpha * 0.8), (1.0, color, 0.0)],
            );
            if let Some(path) = circle(r) {
                pixmap.fill_path(
                    &path,
                    &blob,
                    FillRule::Winding,
                    placed(at, uniform(rng, 0.0, 180.0), uniform(rng, 0.5, 1.0)),
                    None,
                );
            }
        }

        // Gravel, dry grass and specks: small dots in lesion-like colours, off the leaf.
        if grounds.contains(&Ground::Soil) || grounds.contains(&Ground::Grey) || rng.random_bool(0.2) {
            let count = (self.w * self.h / (self.s * self.s) * uniform(rng, 30.0, 160.0)) as usize;
            for _ in 0..count {
                let color = match rng.random_range(0..4) {
                    0 => Ground::Grey.color(rng),
                    1 => Rgb::hsv(uniform(rng, 20.0, 50.0), uniform(rng, 0.4, 0.9), uniform(rng, 0.45, 0.95)),
                    _ => Ground::Soil.color(rng).scale(uniform(rng, 0.5, 1.4)),
                };
                let r = self.s * uniform(rng, 0.002, 0.009);
                if let Some(path) = circle(r) {
                    let at = self.random_point(rng, 0.0);
                    let ts = placed(at, uniform(rng, 0.0, 180.0), uniform(rng, 0.4, 1.0));
                    pixmap.fill_path(&path, &paint(color.color(uniform(rng, 0.4, 0.95))), FillRule::Winding, ts, None);
                }
            }
        }

        // Other leaves, partly in view, without lesions.
        if rng.random_bool(0.5) {
            for _ in 0..rng.random_range(1..=3) {
                let length = self.s * uniform(rng, 0.5, 1.1);
                let shape = LeafShape::sample(rng, length);
                let at = match rng.random_range(0..4) {
                    0 => Point::from_xy(uniform(rng, -0.1, 0.15) * self.w, uniform(rng, 0.0, self.h)),
                    1 => Point::from_xy(uniform(rng, 0.85, 1.1) * self.w, uniform(rng, 0.0, self.h)),
                    2 => Point::from_xy(uniform(rng, 0.0, self.w), uniform(rng, -0.1, 0.15) * self.h),
                    _ => Point::from_xy(uniform(rng, 0.0, self.w), uniform(rng, 0.85, 1.1) * self.h),
                };
                let color = if rng.random_bool(0.2) {
                    Rgb::hsv(uniform(rng, 25.0, 45.0), uniform(rng, 0.3, 0.6), uniform(rng, 0.3, 0.6))
                } else {
                    leaf_color(rng).scale(uniform(rng, 0.5, 1.0))
                };
                let ts = Transform::from_translate(at.x, at.y).pre_rotate(uniform(rng, 0.0, 360.0));
                if let Some(outline) = shape.outline() {
                    let fill = linear(
                        Point::from_xy(0.0, -shape.up),
                        Point::from_xy(0.0, shape.down),
                        &[(0.0, color.scale(1.1), 1.0), (1.0, color.scale(0.8), 1.0)],
                    );
                    pixmap.fill_path(&outline, &fill, FillRule::Winding, ts, None);
                }
            }
        }
    }
}
