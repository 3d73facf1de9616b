//! What a class adds to the leaf: cedar apple rust spots and apple scab blotches.

use rand::Rng;
use tiny_skia::{FillRule, Mask, Path as SkPath, PathBuilder, Pixmap, Point, Transform};

use super::paint::{circle, paint, placed, radial, Rgb};
use super::scene::Scene;
use super::uniform;

impl Scene {
    /// Cedar apple rust: a round orange-yellow spot in a paler (chlorotic) halo, sometimes ringed in
    /// red, sometimes with dark specks (pycnidia) in the middle.
    pub(super) fn rust_spot(&self, pixmap: &mut Pixmap, mask: &Mask, rng: &mut impl Rng, at: Point) {
        let r = self.s * uniform(rng, 0.018, 0.032);
        let core = Rgb::hsv(uniform(rng, 22.0, 42.0), uniform(rng, 0.8, 1.0), uniform(rng, 0.85, 1.0));
        let halo = Rgb::hsv(uniform(rng, 48.0, 62.0), uniform(rng, 0.45, 0.8), uniform(rng, 0.85, 1.0));
        let outer = r * uniform(rng, 1.5, 2.0);
        let k = r / outer;
        let mut stops = vec![(0.0, core.scale(1.05), 1.0), (0.75 * k, core, 1.0)];
        if rng.random_bool(0.35) {
            let ring = Rgb::hsv(uniform(rng, 8.0, 22.0), uniform(rng, 0.8, 1.0), uniform(rng, 0.6, 0.8));
            stops.extend([(0.95 * k, ring, 1.0), (1.15 * k, halo, 0.85)]);
        } else {
            stops.push((1.05 * k, halo, 0.85));
        }
        stops.push((1.0, halo, 0.0));
        let spot = radial(Point::zero(), outer, &stops);
        let ts = placed(at, uniform(rng, 0.0, 180.0), uniform(rng, 0.75, 1.0));
        if let Some(path) = circle(outer) {
            pixmap.fill_path(&path, &spot, FillRule::Winding, ts, Some(mask));
        }
        if rng.random_bool(0.3) {
            let dark = Rgb::hsv(uniform(rng, 10.0, 25.0), 0.8, uniform(rng, 0.2, 0.4));
            for _ in 0..rng.random_range(1..=3) {
                let dot = Point::from_xy(uniform(rng, -0.35, 0.35) * r, uniform(rng, -0.35, 0.35) * r);
                if let Some(path) = PathBuilder::from_circle(dot.x, dot.y, r * uniform(rng, 0.1, 0.18)) {
                    pixmap.fill_path(&path, &paint(dark.color(0.8)), FillRule::Winding, ts, Some(mask));
                }
            }
        }
    }

    /// Apple scab: a dark brown blotch with an irregular edge, in a feathery olive-tan margin.
    pub(super) fn scab_blotch(&self, pixmap: &mut Pixmap, mask: &Mask, rng: &mut impl Rng, at: Point) {
        let r = self.s * uniform(rng, 0.03, 0.06);
        let dark = Rgb::hsv(uniform(rng, 18.0, 42.0), uniform(rng, 0.45, 0.8), uniform(rng, 0.1, 0.28));
        let margin = Rgb::hsv(uniform(rng, 38.0, 58.0), uniform(rng, 0.35, 0.65), uniform(rng, 0.35, 0.55));
        let ts = Transform::from_translate(at.x, at.y).pre_rotate(uniform(rng, 0.0, 360.0));
        // The margin: a jagged outline, fading outwards.
        if let Some(path) = jagged(rng, r * 1.15, 0.7) {
            let fill = radial(Point::zero(), r * 1.15, &[(0.0, margin, 0.9), (0.7, margin, 0.85), (1.0, margin, 0.2)]);
            pixmap.fill_path(&path, &fill, FillRule::Winding, ts, Some(mask));
        }
        // The blotch: overlapping dark lobes around a jagged core.
        for _ in 0..rng.random_range(2..=4) {
            let tone = dark.scale(uniform(rng, 0.8, 1.3));
            let er = r * uniform(rng, 0.3, 0.5);
            let centre = Point::from_xy(uniform(rng, -0.45, 0.45) * r, uniform(rng, -0.45, 0.45) * r);
            let local = ts.pre_concat(placed(centre, uniform(rng, 0.0, 180.0), uniform(rng, 0.5, 1.0)));
            let lobe = radial(Point::zero(), er, &[(0.0, tone, 0.95), (0.7, tone, 0.85), (1.0, tone, 0.0)]);
            if let Some(path) = circle(er) {
                pixmap.fill_path(&path, &lobe, FillRule::Winding, local, Some(mask));
            }
        }
        let core_r = r * uniform(rng, 0.55, 0.75);
        if let Some(path) = jagged(rng, core_r, 0.6) {
            let core =
                radial(Point::zero(), r * 0.75, &[(0.0, dark.scale(0.85), 0.95), (0.7, dark, 0.9), (1.0, dark, 0.6)]);
            pixmap.fill_path(&path, &core, FillRule::Winding, ts, Some(mask));
        }
    }
}

/// A closed polygon around the origin whose vertices lie between `min · r` and `r` from it.
fn jagged(rng: &mut impl Rng, r: f32, min: f32) -> Option<SkPath> {
    let n = rng.random_range(9..=15);
    let mut pb = PathBuilder::new();
    for i in 0..n {
        let angle = std::f32::consts::TAU * (i as f32 + uniform(rng, -0.3, 0.3)) / n as f32;
        let radius = r * uniform(rng, min, 1.0);
        let (x, y) = (radius * angle.cos(), radius * angle.sin());
        if i == 0 {
            pb.move_to(x, y);
        } else {
            pb.line_to(x, y);
        }
    }
    pb.close();
    pb.finish()
}
