//! timm's key layout for its inverted-residual networks (stem `conv_stem`, blocks
//! `blocks.<stage>.<index>.conv_dw` …, head `conv_head`, `classifier`), renamed into one of Orchard's layouts
//! ([`TimmLayout`]), which an architecture's spec names. The tensors themselves are laid out alike; only the
//! names differ. timm's ResNet keys are torchvision's already.
//!
//! timm numbers blocks per stage (`blocks.<stage>.<index>`), the others count them through the whole network,
//! so a block's flat position is its rank among the file's `(stage, index)` pairs.

use std::collections::{BTreeSet, HashMap};

use crate::import_rules::TimmLayout;

/// Orchard names in `target`'s layout for the tensors of a timm file (names without a `module.` prefix), when
/// the file is in timm's layout; `None` otherwise.
pub fn renames<'a>(
    target: TimmLayout,
    names: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<HashMap<String, String>> {
    if !names.clone().into_iter().any(|n| n == "conv_stem.weight") {
        return None;
    }
    let blocks: BTreeSet<(u32, u32)> =
        names.clone().into_iter().filter_map(|n| block_of(n).map(|(s, i, _)| (s, i))).collect();
    let flat: HashMap<(u32, u32), usize> = blocks.iter().enumerate().map(|(n, &b)| (b, n)).collect();
    // A block whose first layer is its depthwise convolution has no expansion (timm's DepthwiseSeparableConv).
    let depthwise_first: BTreeSet<(u32, u32)> = names
        .clone()
        .into_iter()
        .filter_map(|n| block_of(n).filter(|(_, _, rest)| rest.starts_with("conv_dw.")).map(|(s, i, _)| (s, i)))
        .filter(|b| !names.clone().into_iter().any(|n| n == format!("blocks.{}.{}.conv_pwl.weight", b.0, b.1)))
        .collect();
    let head_index = blocks.len() + 1;
    let mut out = HashMap::new();
    for name in names {
        let renamed = match block_of(name) {
            Some((s, i, rest)) => block_name(target, flat[&(s, i)], depthwise_first.contains(&(s, i)), rest),
            None => top_name(target, head_index, name),
        };
        if let Some(renamed) = renamed {
            out.insert(name.to_string(), renamed);
        }
    }
    Some(out)
}

/// `blocks.<s>.<i>.<rest>` → `(s, i, rest)`.
fn block_of(name: &str) -> Option<(u32, u32, &str)> {
    let rest = name.strip_prefix("blocks.")?;
    let (s, rest) = rest.split_once('.')?;
    let (i, rest) = rest.split_once('.')?;
    Some((s.parse().ok()?, i.parse().ok()?, rest))
}

/// Splits `layer.tensor` (e.g. `bn1.running_mean`).
fn layer_of(rest: &str) -> Option<(&str, &str)> {
    rest.split_once('.')
}

fn block_name(target: TimmLayout, n: usize, depthwise_first: bool, rest: &str) -> Option<String> {
    let (layer, tensor) = layer_of(rest)?;
    let mapped = match (target, depthwise_first, layer) {
        (TimmLayout::TorchvisionFeatures, true, "conv_dw") => format!("features.{}.conv.0.0", n + 1),
        (TimmLayout::TorchvisionFeatures, true, "bn1") => format!("features.{}.conv.0.1", n + 1),
        (TimmLayout::TorchvisionFeatures, true, "conv_pw") => format!("features.{}.conv.1", n + 1),
        (TimmLayout::TorchvisionFeatures, true, "bn2") => format!("features.{}.conv.2", n + 1),
        (TimmLayout::TorchvisionFeatures, false, "conv_pw") => format!("features.{}.conv.0.0", n + 1),
        (TimmLayout::TorchvisionFeatures, false, "bn1") => format!("features.{}.conv.0.1", n + 1),
        (TimmLayout::TorchvisionFeatures, false, "conv_dw") => format!("features.{}.conv.1.0", n + 1),
        (TimmLayout::TorchvisionFeatures, false, "bn2") => format!("features.{}.conv.1.1", n + 1),
        (TimmLayout::TorchvisionFeatures, false, "conv_pwl") => format!("features.{}.conv.2", n + 1),
        (TimmLayout::TorchvisionFeatures, false, "bn3") => format!("features.{}.conv.3", n + 1),
        (TimmLayout::Lukemelas, true, "conv_dw") => format!("_blocks.{n}._depthwise_conv"),
        (TimmLayout::Lukemelas, true, "bn1") => format!("_blocks.{n}._bn1"),
        (TimmLayout::Lukemelas, true, "conv_pw") => format!("_blocks.{n}._project_conv"),
        (TimmLayout::Lukemelas, true, "bn2") => format!("_blocks.{n}._bn2"),
        (TimmLayout::Lukemelas, false, "conv_pw") => format!("_blocks.{n}._expand_conv"),
        (TimmLayout::Lukemelas, false, "bn1") => format!("_blocks.{n}._bn0"),
        (TimmLayout::Lukemelas, false, "conv_dw") => format!("_blocks.{n}._depthwise_conv"),
        (TimmLayout::Lukemelas, false, "bn2") => format!("_blocks.{n}._bn1"),
        (TimmLayout::Lukemelas, false, "conv_pwl") => format!("_blocks.{n}._project_conv"),
        (TimmLayout::Lukemelas, false, "bn3") => format!("_blocks.{n}._bn2"),
        _ => return None,
    };
    Some(format!("{mapped}.{tensor}"))
}

fn top_name(target: TimmLayout, head_index: usize, name: &str) -> Option<String> {
    let (layer, tensor) = layer_of(name)?;
    let mapped = match (target, layer) {
        (TimmLayout::TorchvisionFeatures, "conv_stem") => "features.0.0".to_string(),
        (TimmLayout::TorchvisionFeatures, "bn1") => "features.0.1".to_string(),
        (TimmLayout::TorchvisionFeatures, "conv_head") => format!("features.{head_index}.0"),
        (TimmLayout::TorchvisionFeatures, "bn2") => format!("features.{head_index}.1"),
        (TimmLayout::TorchvisionFeatures, "classifier") => "classifier.1".to_string(),
        (TimmLayout::Lukemelas, "conv_stem") => "_conv_stem".to_string(),
        (TimmLayout::Lukemelas, "bn1") => "_bn0".to_string(),
        (TimmLayout::Lukemelas, "conv_head") => "_conv_head".to_string(),
        (TimmLayout::Lukemelas, "bn2") => "_bn1".to_string(),
        (TimmLayout::Lukemelas, "classifier") => "_fc".to_string(),
        _ => return None,
    };
    Some(format!("{mapped}.{tensor}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_numbered_through_the_network_and_expansion_is_told_apart() {
        let names = [
            "conv_stem.weight",
            "blocks.0.0.conv_dw.weight",
            "blocks.0.0.conv_pw.weight",
            "blocks.1.0.conv_pw.weight",
            "blocks.1.0.conv_pwl.weight",
            "blocks.1.1.bn3.running_var",
            "conv_head.weight",
            "classifier.bias",
        ];
        let m = renames(TimmLayout::TorchvisionFeatures, names.iter().copied()).unwrap();
        assert_eq!(m["blocks.0.0.conv_pw.weight"], "features.1.conv.1.weight");
        assert_eq!(m["blocks.1.0.conv_pw.weight"], "features.2.conv.0.0.weight");
        assert_eq!(m["blocks.1.1.bn3.running_var"], "features.3.conv.3.running_var");
        assert_eq!(m["conv_head.weight"], "features.4.0.weight");
        let l = renames(TimmLayout::Lukemelas, names.iter().copied()).unwrap();
        assert_eq!(l["blocks.0.0.conv_pw.weight"], "_blocks.0._project_conv.weight");
        assert_eq!(l["blocks.1.0.conv_pw.weight"], "_blocks.1._expand_conv.weight");
        assert_eq!(l["classifier.bias"], "_fc.bias");
        assert!(renames(TimmLayout::TorchvisionFeatures, ["features.0.0.weight"].into_iter()).is_none());
    }
}
