//! What a family adds to the import of other frameworks' weight files, declared in its spec
//! ([`crate::ModelSpec::import`]) so that [`crate::weights`] asks the spec and never names a family.
//!
//! Every architecture gets the generic mapping (Keras names and layouts, state-dict keys taken as they are);
//! these rules cover what only some architectures need: a renaming of timm's keys into the family's own, and a
//! fix-up after a Keras file is loaded.

use std::fmt;

use tch::nn;

/// A family's additions to the generic weight import; the default adds nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImportRules {
    /// The Orchard layout into which timm's state dicts of the architecture are renamed; `None` where timm's
    /// keys are Orchard's already (ResNet) or timm has no such model.
    pub timm: Option<TimmLayout>,
    /// Run after Keras weights are loaded into the model.
    pub after_keras: Option<KerasFixup>,
}

/// Orchard layouts that timm's inverted-residual key layout (`conv_stem`, `blocks.<stage>.<index>.conv_dw`, …,
/// `conv_head`, `classifier`) maps onto; only the names differ, the tensors are laid out alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimmLayout {
    /// torchvision's inverted residuals: `features.<n>.conv.…`, head convolution `features.<last>`,
    /// `classifier.1`.
    TorchvisionFeatures,
    /// lukemelas' blocks: `_blocks.<n>._expand_conv`, `_conv_head`, `_fc`.
    Lukemelas,
}

/// A fix-up run after Keras weights are loaded under `prefix` (the model's path with its trailing `.`):
/// `fixup(vs, prefix, imagenet)` adjusts the variables of `vs` under `prefix` and returns whether it changed
/// any. `imagenet` is what the caller says about whether the file holds Keras' ImageNet weights
/// ([`crate::weights::LoadOptions::imagenet_statistics`]); `None` leaves the rule to tell.
#[derive(Clone, Copy)]
pub struct KerasFixup(pub fn(&nn::VarStore, &str, Option<bool>) -> bool);

impl KerasFixup {
    /// Runs the fix-up.
    pub fn apply(&self, vs: &nn::VarStore, prefix: &str, imagenet: Option<bool>) -> bool {
        (self.0)(vs, prefix, imagenet)
    }
}

/// Two fix-ups are equal when they are the same function (specs compare equal when their rules do).
impl PartialEq for KerasFixup {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl fmt::Debug for KerasFixup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KerasFixup({:p})", self.0 as *const ())
    }
}
