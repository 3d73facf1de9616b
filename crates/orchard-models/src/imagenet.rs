//! ImageNet-1k class names, for models with a 1000-class ImageNet head (`orchard classify`).
//!
//! The names are torchvision's (`_IMAGENET_CATEGORIES`, BSD 3-Clause; see `data/README.md`), one per line in
//! class-index order, embedded at compile time.

/// The file, one name per line.
const CLASSES: &str = include_str!("../data/imagenet_classes.txt");

/// Number of ImageNet-1k classes.
pub const NUM_CLASSES: usize = 1000;

/// The name of ImageNet class `index` (0-based), `None` past the last.
pub fn label(index: usize) -> Option<&'static str> {
    CLASSES.lines().nth(index)
}

/// All names in class order.
pub fn labels() -> Vec<&'static str> {
    CLASSES.lines().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_a_thousand_names_in_torchvisions_order() {
        assert_eq!(labels().len(), NUM_CLASSES);
        assert_eq!(label(0), Some("tench"));
        assert_eq!(label(285), Some("Egyptian cat"));
        assert_eq!(label(967), Some("espresso"));
        assert_eq!(label(999), Some("toilet tissue"));
        assert_eq!(label(1000), None);
    }
}
