//! Test-time augmentation: a model's probabilities averaged over symmetric copies of each batch.
//!
//! The copies are the flips (identity, left-right, up-down, both: the reference's training augmentation)
//! or the eight elements of the dihedral group D4 (the flips, and the same after a transpose: the rotations
//! by 90° and the two diagonal mirrors). They are applied to the N×C×H×W batch tensor, not to the decoded
//! pictures, so the images are decoded once. A transpose would turn an H×W batch into W×H, so on
//! non-square inputs `dihedral` uses the four flips only.
//!
//! The average is taken over the transforms' probabilities *sorted* per entry before summing. A plain sum
//! in transform order would round differently when the batch is itself a transformed copy of another (its
//! copies are the same set in another order), so the result would be invariant only to about 1e-7; with the
//! sorted sum, predictions over a group are exactly invariant under that group.

use orchard_data::image::Dihedral;
use orchard_torch::Layout;
use tch::Tensor;

pub use orchard_files::Tta;

/// The transforms of `tta` for an input of `height` × `width` pixels: only those that keep its shape.
pub fn transforms(tta: Tta, height: i64, width: i64) -> Vec<Dihedral> {
    let all = Dihedral::all();
    match tta {
        Tta::None => vec![Dihedral::IDENTITY],
        Tta::Flips => all.into_iter().filter(|d| !d.transpose).collect(),
        Tta::Dihedral if height == width => all.to_vec(),
        Tta::Dihedral => all.into_iter().filter(|d| !d.transpose).collect(),
    }
}

/// `d` applied to every image of an N×C×H×W batch, as [`Dihedral`] acts on pictures: transpose first,
/// then mirror left-right, then up-down. The result is laid out in `layout`.
pub fn apply(xs: &Tensor, d: Dihedral, layout: Layout) -> Tensor {
    if d == Dihedral::IDENTITY {
        return xs.shallow_clone();
    }
    let mut x = if d.transpose { xs.transpose(2, 3) } else { xs.shallow_clone() };
    if d.flip_x {
        x = x.flip([3]);
    }
    if d.flip_y {
        x = x.flip([2]);
    }
    match layout {
        Layout::ChannelsLast => orchard_torch::channels_last(&x),
        Layout::Contiguous => x.contiguous(),
    }
}

/// The mean of `f` over `tta`'s copies of the batch `xs` (N×C×H×W); `f` returns N×K probabilities.
pub fn average(xs: &Tensor, tta: Tta, layout: Layout, mut f: impl FnMut(&Tensor) -> Tensor) -> Tensor {
    let size = xs.size();
    let transforms = transforms(tta, size[2], size[3]);
    if transforms.len() == 1 {
        return f(xs);
    }
    let outputs: Vec<Tensor> = transforms.iter().map(|&d| f(&apply(xs, d, layout))).collect();
    let (sorted, _) = Tensor::stack(&outputs, 0).sort(0, false);
    sorted.sum_dim_intlist(0, false, None) / transforms.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// A batch whose every entry differs, so any misplaced value shows.
    fn batch(h: i64, w: i64) -> Tensor {
        Tensor::arange(2 * 3 * h * w, (Kind::Float, Device::Cpu)).view([2, 3, h, w])
    }

    #[test]
    fn tensor_transforms_match_the_picture_transforms() {
        let (h, w) = (3, 3);
        let xs = batch(h, w);
        for d in Dihedral::all() {
            let t = apply(&xs, d, Layout::Contiguous);
            for y in 0..h as usize {
                for x in 0..w as usize {
                    // Output pixel (ox, oy) = d.map_point(x, y): the value of source (x, y) lands there.
                    let (ox, oy) = d.map_point(x, y, w as usize, h as usize);
                    for c in 0..3 {
                        assert_eq!(
                            t.double_value(&[1, c, oy as i64, ox as i64]),
                            xs.double_value(&[1, c, y as i64, x as i64]),
                            "{d:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn shapes_are_kept_and_layouts_honoured() {
        assert_eq!(transforms(Tta::Dihedral, 4, 4).len(), 8);
        assert_eq!(transforms(Tta::Dihedral, 4, 6).len(), 4, "no transposes on a non-square input");
        assert_eq!(transforms(Tta::Flips, 4, 4).len(), 4);
        assert_eq!(transforms(Tta::None, 4, 6), [Dihedral::IDENTITY]);
        let xs = batch(4, 6);
        for d in transforms(Tta::Dihedral, 4, 6) {
            assert_eq!(apply(&xs, d, Layout::Contiguous).size(), [2, 3, 4, 6]);
            let cl = apply(&xs, d, Layout::ChannelsLast);
            assert!(cl.equal(&apply(&xs, d, Layout::Contiguous)), "{d:?}: same values");
            if d != Dihedral::IDENTITY {
                assert_eq!(cl.stride(), [72, 1, 18, 3], "{d:?}: channels-last strides");
            }
        }
        assert_eq!(apply(&xs, Dihedral::ROT90, Layout::Contiguous).size(), [2, 3, 6, 4]);
    }

    #[test]
    fn the_average_is_the_mean_over_the_copies() {
        let xs = batch(3, 3);
        // f sums the top-left pixel's channels: each copy puts another corner (or edge) pixel there.
        let f = |x: &Tensor| {
            x.narrow(2, 0, 1).narrow(3, 0, 1).sum_dim_intlist([1, 2, 3].as_slice(), false, None).view([2, 1])
        };
        let flips = average(&xs, Tta::Flips, Layout::Contiguous, f);
        let corner = |y: i64, x: i64| (0..3).map(|c| xs.double_value(&[0, c, y, x])).sum::<f64>();
        let want = (corner(0, 0) + corner(0, 2) + corner(2, 0) + corner(2, 2)) / 4.0;
        assert_eq!(flips.double_value(&[0, 0]), want);
    }
}
