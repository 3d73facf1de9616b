//! timm's key layout for its EfficientNet-style models (`mobilenetv2_100`, `tf_efficientnet_lite0`…), mapped
//! onto the keys Orchard's MobileNetV2 (torchvision's) and EfficientNet-Lite (the lukemelas port's) use. The
//! tensors themselves are laid out alike; only the names differ. timm's ResNet keys are torchvision's already.
//!
//! timm numbers blocks per stage (`blocks.<stage>.<index>`), the others count them through the whole network,
//! so a block's flat position is its rank among the file's `(stage, index)` pairs.

use std::collections::{BTreeSet, HashMap};

/// Which of Orchard's layouts a timm file maps onto.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// torchvision's MobileNetV2: `features.<n>.conv.…`, head conv `features.<last>`, `classifier.1`.
    TorchvisionMobileNet,
    /// lukemelas' EfficientNet(-Lite): `_blocks.<n>._expand_conv`, `_conv_head`, `_fc`.
    Lukemelas,
}

/// Orchard names for the tensors of a timm file (names without a `module.` prefix), when the architecture is
/// one whose timm layout is known and the file is in it; `None` otherwise.
pub fn renames<'a>(arch: &str, names: impl IntoIterator<Item = &'a str> + Clone) -> Option<HashMap<String, String>> {
    let target = if arch == "mobilenet_v2" {
        Target::TorchvisionMobileNet
    } else if arch.starts_with("efficientnet_lite") {
        Target::Lukemelas
    } else {
        return None;
    };
    if !names.clone().into_iter().any(|n| n == "conv_stem.weight") {
        return None;
    }
    let blocks: BTreeSet<(u32, u32)> = names.clone().into_iter().filter_map(|n| block_of(n).map(|(s, i, _)| (s, i))).collect();
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

fn block_name(target: Target, n: usize, depthwise_first: bool, rest: &str) -> Option<String> {
    let (layer, tensor) = layer_of(rest)?;
    let mapped = match (target, depthwise_first, layer) {
        (Target::TorchvisionMobileNet, true, "conv_dw") => format!("features.{}.conv.0.0", n + 1),
        (Target::TorchvisionMobileNet, true, "bn1") => format!("features.{}.conv.0.1", n + 1),
        (Target::TorchvisionMobileNet, true, "conv_pw") => format!("features.{}.conv.1", n + 1),
        (Target::TorchvisionMobileNet, true, "bn2") => format!("features.{}.conv.2", n + 1),
        (Target::TorchvisionMobileNet, false, "conv_pw") => format!("features.{}.conv.0.0", n + 1),
        (Target::TorchvisionMobileNet, false, "bn1") => format!("features.{}.conv.0.1", n + 1),
        (Target::TorchvisionMobileNet, false, "conv_dw") => format!("features.{}.conv.1.0", n + 1),
        (Target::TorchvisionMobileNet, false, "bn2") => format!("features.{}.conv.1.1", n + 1),
        (Target::TorchvisionMobileNet, false, "conv_pwl") => format!("features.{}.conv.2", n + 1),
        (Target::TorchvisionMobileNet, false, "bn3") => format!("features.{}.conv.3", n + 1),
        (Target::Lukemelas, true, "conv_dw") => format!("_blocks.{n}._depthwise_conv"),
        (Target::Lukemelas, true, "bn1") => format!("_blocks.{n}._bn1"),
        (Target::Lukemelas, true, "conv_pw") => format!("_blocks.{n}._project_conv"),
        (Target::Lukemelas, true, "bn2") => format!("_blocks.{n}._bn2"),
        (Target::Lukemelas, false, "conv_pw") => format!("_blocks.{n}._expand_conv"),
        (Target::Lukemelas, false, "bn1") => format!("_blocks.{n}._bn0"),
        (Target::Lukemelas, false, "conv_dw") => format!("_blocks.{n}._depthwise_conv"),
        (Target::Lukemelas, false, "bn2") => format!("_blocks.{n}._bn1"),
        (Target::Lukemelas, false, "conv_pwl") => format!("_blocks.{n}._project_conv"),
        (Target::Lukemelas, false, "bn3") => format!("_blocks.{n}._bn2"),
        _ => return None,
    };
    Some(format!("{mapped}.{tensor}"))
}

fn top_name(target: Target, head_index: usize, name: &str) -> Option<String> {
    let (layer, tensor) = layer_of(name)?;
    let mapped = match (target, layer) {
        (Target::TorchvisionMobileNet, "conv_stem") => "features.0.0".to_string(),
        (Target::TorchvisionMobileNet, "bn1") => "features.0.1".to_string(),
        (Target::TorchvisionMobileNet, "conv_head") => format!("features.{head_index}.0"),
        (Target::TorchvisionMobileNet, "bn2") => format!("features.{head_index}.1"),
        (Target::TorchvisionMobileNet, "classifier") => "classifier.1".to_string(),
        (Target::Lukemelas, "conv_stem") => "_conv_stem".to_string(),
        (Target::Lukemelas, "bn1") => "_bn0".to_string(),
        (Target::Lukemelas, "conv_head") => "_conv_head".to_string(),
        (Target::Lukemelas, "bn2") => "_bn1".to_string(),
        (Target::Lukemelas, "classifier") => "_fc".to_string(),
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
            "conv_stem.weight", "blocks.0.0.conv_dw.weight", "blocks.0.0.conv_pw.weight", "blocks.1.0.conv_pw.weight",
            "blocks.1.0.conv_pwl.weight", "blocks.1.1.bn3.running_var", "conv_head.weight", "classifier.bias",
        ];
        let m = renames("mobilenet_v2", names.iter().copied()).unwrap();
        assert_eq!(m["blocks.0.0.conv_pw.weight"], "features.1.conv.1.weight");
        assert_eq!(m["blocks.1.0.conv_pw.weight"], "features.2.conv.0.0.weight");
        assert_eq!(m["blocks.1.1.bn3.running_var"], "features.3.conv.3.running_var");
        assert_eq!(m["conv_head.weight"], "features.4.0.weight");
        let l = renames("efficientnet_lite0", names.iter().copied()).unwrap();
        assert_eq!(l["blocks.0.0.conv_pw.weight"], "_blocks.0._project_conv.weight");
        assert_eq!(l["blocks.1.0.conv_pw.weight"], "_blocks.1._expand_conv.weight");
        assert_eq!(l["classifier.bias"], "_fc.bias");
        assert!(renames("resnet50", names.iter().copied()).is_none());
        assert!(renames("mobilenet_v2", ["features.0.0.weight"].into_iter()).is_none());
    }
}
