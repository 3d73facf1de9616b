//! Test-time augmentation by name: which symmetric copies of each image a prediction averages over. The
//! tensor work is `orchard_infer::tta`'s; experiments, manifests and the command line name it with this.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which copies of a batch are averaged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tta {
    /// The batch as it is.
    #[default]
    None,
    /// Identity, left-right, up-down and both flips.
    Flips,
    /// The eight symmetries of the square (the flips on non-square inputs).
    Dihedral,
}

impl fmt::Display for Tta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tta::None => "none",
            Tta::Flips => "flips",
            Tta::Dihedral => "dihedral",
        })
    }
}

impl FromStr for Tta {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Tta::None),
            "flips" => Ok(Tta::Flips),
            "dihedral" => Ok(Tta::Dihedral),
            other => Err(format!("unknown TTA mode {other:?}: expected none, flips or dihedral")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_print_and_serialise_alike() {
        for tta in [Tta::None, Tta::Flips, Tta::Dihedral] {
            assert_eq!(tta.to_string().parse::<Tta>().unwrap(), tta);
            assert_eq!(serde_json::to_string(&tta).unwrap(), format!("\"{tta}\""));
        }
        assert!("rot".parse::<Tta>().unwrap_err().contains("none, flips or dihedral"));
    }
}
