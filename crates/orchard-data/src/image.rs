//! The in-memory picture every stage passes along, and the eight dihedral transforms of a rectangle.
//!
//! Pixels are 8-bit RGB, interleaved, row-major, with no padding between rows: the layout libjpeg-turbo
//! writes and the NHWC layout a batch is made of, so no stage converts.

/// An 8-bit RGB image, interleaved (`data.len() == width * height * 3`).
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    /// A black image.
    pub fn new(width: usize, height: usize) -> Self {
        Self { width, height, data: vec![0; width * height * 3] }
    }

    /// Wraps interleaved RGB pixels.
    ///
    /// # Panics
    /// If `data.len() != width * height * 3`.
    pub fn from_raw(width: usize, height: usize, data: Vec<u8>) -> Self {
        assert_eq!(
            data.len(),
            width * height * 3,
            "RgbImage::from_raw: {width}x{height} needs {} bytes",
            width * height * 3
        );
        Self { width, height, data }
    }

    /// The pixel at column `x`, row `y`.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// Applies one of the eight symmetries of the rectangle.
    pub fn transformed(&self, t: Dihedral) -> RgbImage {
        if t == Dihedral::IDENTITY {
            return self.clone();
        }
        let (w, h) = (self.width, self.height);
        let (ow, oh) = if t.transpose { (h, w) } else { (w, h) };
        let mut out = vec![0u8; self.data.len()];
        for oy in 0..oh {
            for ox in 0..ow {
                let (sx, sy) = t.source_of(ox, oy, ow, oh);
                let s = (sy * w + sx) * 3;
                let o = (oy * ow + ox) * 3;
                out[o..o + 3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        RgbImage { width: ow, height: oh, data: out }
    }
}

/// One element of the dihedral group D4 acting on images: optionally transpose (swap x and y), then
/// optionally mirror left-right, then optionally mirror up-down.
///
/// The eight values cover the reference's random flips (`flip_x`, `flip_y`), the rotations by 90°, and
/// the EXIF orientations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dihedral {
    pub transpose: bool,
    pub flip_x: bool,
    pub flip_y: bool,
}

impl Dihedral {
    pub const IDENTITY: Dihedral = Dihedral { transpose: false, flip_x: false, flip_y: false };
    pub const FLIP_X: Dihedral = Dihedral { transpose: false, flip_x: true, flip_y: false };
    pub const FLIP_Y: Dihedral = Dihedral { transpose: false, flip_x: false, flip_y: true };
    /// Rotation by 90° clockwise.
    pub const ROT90: Dihedral = Dihedral { transpose: true, flip_x: true, flip_y: false };

    /// All eight elements, in a fixed order (index = transpose·4 + flip_y·2 + flip_x).
    pub fn all() -> [Dihedral; 8] {
        std::array::from_fn(|i| Dihedral { transpose: i & 4 != 0, flip_y: i & 2 != 0, flip_x: i & 1 != 0 })
    }

    /// The transform that turns a stored image with this EXIF `Orientation` tag (1–8) upright.
    pub fn from_exif_orientation(tag: u32) -> Option<Dihedral> {
        let d = |transpose, flip_x, flip_y| Dihedral { transpose, flip_x, flip_y };
        Some(match tag {
            1 => d(false, false, false),
            2 => d(false, true, false),
            3 => d(false, true, true),
            4 => d(false, false, true),
            5 => d(true, false, false),
            6 => d(true, true, false), // stored rotated 90° counter-clockwise: rotate clockwise
            7 => d(true, true, true),
            8 => d(true, false, true), // rotate counter-clockwise
            _ => return None,
        })
    }

    /// Source coordinates of output pixel (`ox`, `oy`) in an output of size `ow` × `oh`.
    fn source_of(self, ox: usize, oy: usize, ow: usize, oh: usize) -> (usize, usize) {
        let x = if self.flip_x { ow - 1 - ox } else { ox };
        let y = if self.flip_y { oh - 1 - oy } else { oy };
        if self.transpose {
            (y, x)
        } else {
            (x, y)
        }
    }

    /// Where `self` maps source pixel (`x`, `y`) of a `w` × `h` image, and the output size.
    pub fn map_point(self, x: usize, y: usize, w: usize, h: usize) -> (usize, usize) {
        let (tx, ty, tw, th) = if self.transpose { (y, x, h, w) } else { (x, y, w, h) };
        let ox = if self.flip_x { tw - 1 - tx } else { tx };
        let oy = if self.flip_y { th - 1 - ty } else { ty };
        (ox, oy)
    }

    /// `self` followed by `then`.
    pub fn then(self, then: Dihedral) -> Dihedral {
        // Compose by tracking where three corners of a 2×3 rectangle go; unique for D4.
        let (w, h) = (2usize, 3usize);
        let probe = |t: Dihedral, x, y, w, h| t.map_point(x, y, w, h);
        let (mw, mh) = if self.transpose { (h, w) } else { (w, h) };
        let target: Vec<(usize, usize)> = [(0, 0), (1, 0), (0, 1)]
            .iter()
            .map(|&(x, y)| {
                let (a, b) = probe(self, x, y, w, h);
                probe(then, a, b, mw, mh)
            })
            .collect();
        *Dihedral::all()
            .iter()
            .find(|c| [(0, 0), (1, 0), (0, 1)].iter().zip(&target).all(|(&(x, y), &t)| c.map_point(x, y, w, h) == t))
            .expect("D4 is closed under composition")
    }

    /// The transform that undoes `self`.
    pub fn inverse(self) -> Dihedral {
        *Dihedral::all()
            .iter()
            .find(|c| self.then(**c) == Dihedral::IDENTITY)
            .expect("every element of D4 has an inverse")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(w: usize, h: usize) -> RgbImage {
        let data = (0..w * h).flat_map(|i| [(i % 251) as u8, (i / 251) as u8, 7]).collect();
        RgbImage::from_raw(w, h, data)
    }

    #[test]
    fn every_flip_twice_is_the_identity() {
        let img = numbered(5, 3);
        for t in [Dihedral::FLIP_X, Dihedral::FLIP_Y, Dihedral { transpose: true, flip_x: false, flip_y: false }] {
            assert_ne!(img.transformed(t), img);
            assert_eq!(img.transformed(t).transformed(t), img);
        }
    }

    #[test]
    fn the_eight_transforms_are_distinct_and_closed_under_composition() {
        let img = numbered(4, 3);
        let all = Dihedral::all();
        let images: Vec<_> = all.iter().map(|&t| img.transformed(t)).collect();
        for i in 0..8 {
            for j in 0..i {
                assert_ne!(images[i], images[j], "{:?} and {:?} agree", all[i], all[j]);
            }
        }
        for &a in &all {
            for &b in &all {
                let c = a.then(b);
                assert_eq!(img.transformed(a).transformed(b), img.transformed(c), "{a:?} then {b:?}");
            }
            assert_eq!(img.transformed(a).transformed(a.inverse()), img);
        }
    }

    #[test]
    fn rot90_four_times_is_the_identity_and_turns_clockwise() {
        let img = numbered(4, 3);
        let r = img.transformed(Dihedral::ROT90);
        assert_eq!((r.width, r.height), (3, 4));
        // Clockwise: the top-left pixel goes to the top-right corner.
        assert_eq!(r.pixel(2, 0), img.pixel(0, 0));
        let r4 = (0..4).fold(img.clone(), |acc, _| acc.transformed(Dihedral::ROT90));
        assert_eq!(r4, img);
    }

    #[test]
    fn exif_orientations_undo_the_stored_rotation() {
        let upright = numbered(4, 3);
        // A camera held rotated stores the picture turned; tag 6 means "rotate 90° clockwise to view".
        let stored6 = upright.transformed(Dihedral::ROT90.inverse());
        assert_eq!(stored6.transformed(Dihedral::from_exif_orientation(6).unwrap()), upright);
        let stored8 = upright.transformed(Dihedral::ROT90);
        assert_eq!(stored8.transformed(Dihedral::from_exif_orientation(8).unwrap()), upright);
        let stored3 = upright.transformed(Dihedral { transpose: false, flip_x: true, flip_y: true });
        assert_eq!(stored3.transformed(Dihedral::from_exif_orientation(3).unwrap()), upright);
        assert!(Dihedral::from_exif_orientation(0).is_none());
        assert!(Dihedral::from_exif_orientation(9).is_none());
    }
}
