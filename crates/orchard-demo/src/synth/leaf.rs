//! The leaf a picture is about: its shape, its blade, veins and petiole, and the harmless look-alikes
//! (mottling, yellowed margins, water drops) that appear on it in every class.

use rand::Rng;
use tiny_skia::{FillRule, LineCap, Mask, Path as SkPath, PathBuilder, Pixmap, Point, Stroke, Transform};

use super::paint::{circle, linear, paint, placed, radial, Rgb, BLACK, WHITE};
use super::scene::Scene;
use super::uniform;

/// A leaf's outline in its own frame: the midrib runs along +x from the base at `(-half, 0)` to the tip
/// at `(half, 0)`, gently bent; `up` and `down` are the half-widths on either side.
#[derive(Clone, Copy, Debug)]
pub(super) struct LeafShape {
    half: f32,
    pub(super) up: f32,
    pub(super) down: f32,
    /// Where the leaf is widest, as a fraction of its length from the base (ovate: below the middle).
    widest: f32,
    /// How rounded the base is (control-point height as a fraction of the half-width).
    base: f32,
    /// How drawn-out the tip is: larger is more acuminate.
    tip: f32,
    /// Midrib curvature, as the sideways offset of its middle over the half-length.
    bend: f32,
}

impl LeafShape {
    pub(super) fn sample(rng: &mut impl Rng, length: f32) -> LeafShape {
        let half = length / 2.0;
        let width = half * uniform(rng, 0.48, 0.66);
        LeafShape {
            half,
            up: width * uniform(rng, 0.9, 1.05),
            down: width * uniform(rng, 0.9, 1.05),
            widest: uniform(rng, 0.36, 0.5),
            base: uniform(rng, 0.45, 0.85),
            tip: uniform(rng, 0.25, 0.5),
            bend: uniform(rng, -0.08, 0.08),
        }
    }

    /// A point of the leaf frame, with the bend applied.
    fn point(&self, x: f32, y: f32) -> Point {
        let t = x / self.half;
        Point::from_xy(x, y + self.bend * self.half * (1.0 - t * t))
    }

    /// The outline: two cubic Béziers a side, meeting at the widest point, with a pointed tip.
    pub(super) fn outline(&self) -> Option<SkPath> {
        let a = self.half;
        let xw = -a + 2.0 * a * self.widest;
        let p = |x, y| self.point(x, y);
        let mut pb = PathBuilder::new();
        let base = p(-a, 0.0);
        pb.move_to(base.x, base.y);
        for side in [-1.0f32, 1.0] {
            let hw = if side < 0.0 { self.up } else { self.down } * side;
            // Base → widest → tip on the upper side; tip → widest → base on the lower one.
            let segments = [
                [p(-a + 0.08 * a, hw * self.base), p(xw - 0.5 * (xw + a), hw), p(xw, hw)],
                [p(xw + 0.45 * (a - xw), hw), p(a - self.tip * (a - xw), hw * 0.12), p(a, 0.0)],
            ];
            if side < 0.0 {
                for [c1, c2, end] in segments {
                    pb.cubic_to(c1.x, c1.y, c2.x, c2.y, end.x, end.y);
                }
            } else {
                // The same curves, reversed.
                let [[c1a, c2a, wide], [c1b, c2b, _tip]] = segments;
                pb.cubic_to(c2b.x, c2b.y, c1b.x, c1b.y, wide.x, wide.y);
                pb.cubic_to(c2a.x, c2a.y, c1a.x, c1a.y, base.x, base.y);
            }
        }
        pb.close();
        pb.finish()
    }

    /// The approximate half-width at `x` on one side (`up` or `down`), for placing veins.
    fn half_width(&self, x: f32, hw: f32) -> f32 {
        let a = self.half;
        let xw = -a + 2.0 * a * self.widest;
        if x <= xw {
            let t = ((x + a) / (xw + a)).clamp(0.0, 1.0);
            hw * (1.0 - (1.0 - t).powi(2)).sqrt()
        } else {
            let t = ((x - xw) / (a - xw)).clamp(0.0, 1.0);
            hw * (1.0 - t.powf(1.6))
        }
    }
}

/// The main leaf once drawn: where it is, for placing lesions on it.
pub(super) struct DrawnLeaf {
    shape: LeafShape,
    transform: Transform,
    /// Coverage of the leaf (255 inside), the size of the picture.
    pub(super) mask: Mask,
}

impl DrawnLeaf {
    /// A point uniformly spread over the visible part of the leaf, away from its edge.
    pub(super) fn sample_point(&self, rng: &mut impl Rng) -> Point {
        let (w, h) = (self.mask.width() as i64, self.mask.height() as i64);
        let a = self.shape.half;
        for _ in 0..200 {
            let local =
                self.shape.point(uniform(rng, -0.92 * a, 0.92 * a), uniform(rng, -self.shape.up, self.shape.down));
            let mut at = local;
            self.transform.map_point(&mut at);
            let (x, y) = (at.x.floor() as i64, at.y.floor() as i64);
            if x >= 0 && y >= 0 && x < w && y < h && self.mask.data()[(y * w + x) as usize] == 255 {
                return at;
            }
        }
        // Nearly all of the leaf is out of view: fall back to its centre, which is in view.
        let mut centre = self.shape.point(0.0, 0.0);
        self.transform.map_point(&mut centre);
        centre
    }
}

/// A leaf green between yellow-green and dark green.
/// Draws the path `path` holds as a line `width` wide with round caps, in `color`, under `mask`.
fn stroke(
    pixmap: &mut Pixmap,
    path: PathBuilder,
    width: f32,
    color: tiny_skia::Color,
    transform: Transform,
    mask: Option<&Mask>,
) {
    if let Some(path) = path.finish() {
        let stroke = Stroke { width, line_cap: LineCap::Round, ..Stroke::default() };
        pixmap.stroke_path(&path, &paint(color), &stroke, transform, mask);
    }
}

pub(super) fn leaf_color(rng: &mut impl Rng) -> Rgb {
    Rgb::hsv(uniform(rng, 68.0, 118.0), uniform(rng, 0.45, 0.85), uniform(rng, 0.3, 0.75))
}

impl Scene {
    /// Draws the leaf the picture is about, with its harmless look-alikes, and returns where it is.
    pub(super) fn main_leaf(&self, pixmap: &mut Pixmap, rng: &mut impl Rng) -> DrawnLeaf {
        let length = self.s * uniform(rng, 0.3, 0.8);
        let shape = LeafShape::sample(rng, length);
        let a = shape.half;
        let at = if rng.random_bool(0.2) {
            // Partly out of frame: the centre anywhere, so up to about half the leaf is cut off.
            Point::from_xy(uniform(rng, 0.1 * a, self.w - 0.1 * a), uniform(rng, 0.1 * a, self.h - 0.1 * a))
        } else {
            let (mx, my) = ((0.75 * a).min(self.w / 2.0), (0.75 * a).min(self.h / 2.0));
            Point::from_xy(uniform(rng, mx, self.w - mx), uniform(rng, my, self.h - my))
        };
        let transform = Transform::from_translate(at.x, at.y).pre_rotate(uniform(rng, 0.0, 360.0));
        let color = leaf_color(rng);

        let mut mask = Mask::new(pixmap.width(), pixmap.height()).expect("the pixmap's size is valid");
        let Some(outline) = shape.outline() else {
            return DrawnLeaf { shape, transform, mask };
        };
        mask.fill_path(&outline, FillRule::Winding, true, transform);

        // A drop shadow on the background.
        if rng.random_bool(0.5) {
            let offset =
                Transform::from_translate(uniform(rng, -0.04, 0.04) * length, uniform(rng, -0.04, 0.04) * length);
            pixmap.fill_path(
                &outline,
                &paint(BLACK.color(uniform(rng, 0.1, 0.3))),
                FillRule::Winding,
                offset.pre_concat(transform),
                None,
            );
        }
        // The petiole.
        let stem_color = color.mix(Rgb::hsv(35.0, 0.5, 0.45), uniform(rng, 0.2, 0.7));
        let mut stem = PathBuilder::new();
        let base = shape.point(-a, 0.0);
        stem.move_to(base.x, base.y);
        let bend = uniform(rng, -0.1, 0.1) * a;
        stem.quad_to(-a - 0.15 * a, bend, -a - uniform(rng, 0.15, 0.35) * a, 2.0 * bend);
        stroke(pixmap, stem, length * uniform(rng, 0.015, 0.025), stem_color.color(1.0), transform, None);

        // The blade: shaded across, mottled, veined.
        let fill = linear(
            Point::from_xy(0.0, -shape.up),
            Point::from_xy(0.0, shape.down),
            &[(0.0, color.scale(uniform(rng, 1.0, 1.2)), 1.0), (1.0, color.scale(uniform(rng, 0.7, 0.92)), 1.0)],
        );
        pixmap.fill_path(&outline, &fill, FillRule::Winding, transform, None);
        for _ in 0..rng.random_range(2..=6) {
            let tone = match rng.random_range(0..3) {
                0 => color.scale(uniform(rng, 1.1, 1.3)),
                1 => color.scale(uniform(rng, 0.7, 0.9)),
                _ => color.mix(Rgb::hsv(uniform(rng, 55.0, 70.0), 0.7, 0.8), uniform(rng, 0.2, 0.5)),
            };
            let centre = shape.point(uniform(rng, -0.8, 0.8) * a, uniform(rng, -0.6, 0.6) * shape.up);
            let r = length * uniform(rng, 0.1, 0.3);
            let mottle = radial(centre, r, &[(0.0, tone, uniform(rng, 0.15, 0.4)), (1.0, tone, 0.0)]);
            if let Some(path) = PathBuilder::from_circle(centre.x, centre.y, r) {
                pixmap.fill_path(&path, &mottle, FillRule::Winding, transform, Some(&mask));
            }
        }
        let vein_color = color.mix(Rgb::hsv(60.0, 0.3, 0.95), uniform(rng, 0.25, 0.5));
        let mut midrib = PathBuilder::new();
        let tip = shape.point(0.92 * a, 0.0);
        let middle = shape.point(0.0, 0.0);
        midrib.move_to(base.x, base.y);
        midrib.quad_to(middle.x, 2.0 * middle.y, tip.x, tip.y);
        let (width, alpha) = (length * uniform(rng, 0.01, 0.018), uniform(rng, 0.6, 0.85));
        stroke(pixmap, midrib, width, vein_color.color(alpha), transform, Some(&mask));
        let pairs = rng.random_range(5..=8);
        let mut veins = PathBuilder::new();
        for i in 0..pairs {
            let x0 = -0.8 * a + 1.45 * a * (i as f32 + uniform(rng, 0.3, 0.7)) / pairs as f32;
            for (side, hw) in [(-1.0, shape.up), (1.0, shape.down)] {
                let x1 = x0 + (a - x0) * 0.2 + 0.12 * a;
                let y1 = side * 0.88 * shape.half_width(x1, hw);
                let (start, control, end) =
                    (shape.point(x0, 0.0), shape.point(x0 + 0.35 * (x1 - x0), 0.55 * y1), shape.point(x1, y1));
                veins.move_to(start.x, start.y);
                veins.quad_to(control.x, control.y, end.x, end.y);
            }
        }
        let (width, alpha) = (length * uniform(rng, 0.004, 0.008), uniform(rng, 0.3, 0.55));
        stroke(pixmap, veins, width, vein_color.color(alpha), transform, Some(&mask));
        let drawn = DrawnLeaf { shape, transform, mask };

        // Look-alikes, equally likely in every class: yellowed margins and water drops.
        if rng.random_bool(0.3) {
            let yellow = Rgb::hsv(uniform(rng, 45.0, 62.0), uniform(rng, 0.5, 0.85), uniform(rng, 0.7, 0.95));
            let stroke = Stroke { width: length * uniform(rng, 0.04, 0.12), ..Stroke::default() };
            pixmap.stroke_path(
                &outline,
                &paint(yellow.color(uniform(rng, 0.25, 0.55))),
                &stroke,
                transform,
                Some(&drawn.mask),
            );
        }
        if rng.random_bool(0.4) {
            for _ in 0..rng.random_range(1..=6) {
                let at = drawn.sample_point(rng);
                self.water_drop(pixmap, rng, at, color);
            }
        }
        // A darker rim.
        let stroke = Stroke { width: (length * 0.006).max(0.7), ..Stroke::default() };
        pixmap.stroke_path(&outline, &paint(color.scale(0.6).color(0.5)), &stroke, transform, None);
        drawn
    }

    fn water_drop(&self, pixmap: &mut Pixmap, rng: &mut impl Rng, at: Point, leaf: Rgb) {
        let r = self.s * uniform(rng, 0.008, 0.022);
        let ts = placed(at, uniform(rng, 0.0, 180.0), uniform(rng, 0.7, 1.0));
        let rim = leaf.scale(0.55);
        let body = radial(
            Point::zero(),
            r,
            &[(0.0, leaf.scale(1.15), 0.35), (0.7, leaf.scale(1.05), 0.2), (0.9, rim, 0.5), (1.0, rim, 0.0)],
        );
        if let Some(path) = circle(r) {
            pixmap.fill_path(&path, &body, FillRule::Winding, ts, None);
        }
        let glint = Point::from_xy(-0.35 * r, -0.35 * r);
        let highlight = radial(glint, 0.35 * r, &[(0.0, WHITE, uniform(rng, 0.7, 0.95)), (1.0, WHITE, 0.0)]);
        if let Some(path) = PathBuilder::from_circle(glint.x, glint.y, 0.35 * r) {
            pixmap.fill_path(&path, &highlight, FillRule::Winding, ts, None);
        }
    }
}
