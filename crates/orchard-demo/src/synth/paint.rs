//! Colours, and the tiny-skia paints, gradients, shapes and placements the drawing shares.

use tiny_skia::{
    Color, GradientStop, LinearGradient, Paint, Path as SkPath, PathBuilder, Point, RadialGradient, Shader, SpreadMode,
    Transform,
};

/// A colour with components in 0..=1.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rgb([f32; 3]);

impl Rgb {
    /// From hue in degrees, saturation and value in 0..=1.
    pub(super) fn hsv(h: f32, s: f32, v: f32) -> Rgb {
        let h = h.rem_euclid(360.0) / 60.0;
        let c = v * s;
        let x = c * (1.0 - (h % 2.0 - 1.0).abs());
        let (r, g, b) = match h as u32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let m = v - c;
        Rgb([r + m, g + m, b + m])
    }

    pub(super) fn scale(self, k: f32) -> Rgb {
        Rgb(self.0.map(|c| c * k))
    }

    pub(super) fn mix(self, other: Rgb, t: f32) -> Rgb {
        Rgb([0, 1, 2].map(|i| self.0[i] + (other.0[i] - self.0[i]) * t))
    }

    pub(super) fn color(self, alpha: f32) -> Color {
        let [r, g, b] = self.0.map(|c| c.clamp(0.0, 1.0));
        Color::from_rgba(r, g, b, alpha.clamp(0.0, 1.0)).unwrap_or(Color::BLACK)
    }
}

pub(super) const WHITE: Rgb = Rgb([1.0, 1.0, 1.0]);
pub(super) const BLACK: Rgb = Rgb([0.0, 0.0, 0.0]);

pub(super) fn paint(color: Color) -> Paint<'static> {
    let mut paint = Paint::default();
    paint.set_color(color);
    paint.anti_alias = true;
    paint
}

/// A paint with `shader`, or one that draws nothing if the gradient was degenerate.
fn shader_paint(shader: Option<Shader<'static>>) -> Paint<'static> {
    let mut paint = paint(Color::TRANSPARENT);
    if let Some(shader) = shader {
        paint.shader = shader;
    }
    paint
}

/// A radial gradient around `centre` out to `radius`, through `stops` of (offset, colour, alpha).
pub(super) fn radial(centre: Point, radius: f32, stops: &[(f32, Rgb, f32)]) -> Paint<'static> {
    let stops: Vec<GradientStop> = stops.iter().map(|&(t, c, a)| GradientStop::new(t, c.color(a))).collect();
    shader_paint(RadialGradient::new(
        centre,
        0.0,
        centre,
        radius.max(1e-3),
        stops,
        SpreadMode::Pad,
        Transform::identity(),
    ))
}

/// A linear gradient from `start` to `end`, through `stops` of (offset, colour, alpha).
pub(super) fn linear(start: Point, end: Point, stops: &[(f32, Rgb, f32)]) -> Paint<'static> {
    let stops: Vec<GradientStop> = stops.iter().map(|&(t, c, a)| GradientStop::new(t, c.color(a))).collect();
    shader_paint(LinearGradient::new(start, end, stops, SpreadMode::Pad, Transform::identity()))
}

pub(super) fn circle(r: f32) -> Option<SkPath> {
    PathBuilder::from_circle(0.0, 0.0, r.max(1e-3))
}

/// A transform placing the unit frame at `at`, turned by `degrees` and squashed to `aspect` along y.
pub(super) fn placed(at: Point, degrees: f32, aspect: f32) -> Transform {
    Transform::from_translate(at.x, at.y).pre_rotate(degrees).pre_scale(1.0, aspect)
}
