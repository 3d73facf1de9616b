//! All-or-nothing assignment of named source tensors to a var store's variables: the step every weight
//! format ends in. Either every variable gets a tensor of its shape, or nothing changes and the
//! [`Mismatch`] names every missing, unexpected and mis-shaped tensor.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use tch::{nn, Tensor};

/// A source tensor whose shape does not fit its Orchard variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MisShaped {
    /// The tensor's name in the file.
    pub source: String,
    /// The Orchard variable it maps to.
    pub orchard: String,
    /// The variable's shape.
    pub expected: Vec<i64>,
    /// The source tensor's shape, in the file's layout.
    pub found: Vec<i64>,
}

/// Everything that keeps a set of weights from loading into a model, every entry by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Orchard variables that no source tensor provides.
    pub missing: Vec<String>,
    /// Source tensors with no Orchard variable (or a second one for the same variable), with the reason.
    pub unexpected: Vec<String>,
    /// Source tensors of the wrong shape.
    pub mis_shaped: Vec<MisShaped>,
}

impl Mismatch {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mis_shaped.is_empty()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} missing, {} unexpected, {} mis-shaped tensors",
            self.missing.len(),
            self.unexpected.len(),
            self.mis_shaped.len()
        )?;
        for name in &self.missing {
            write!(f, "\n  missing: {name}")?;
        }
        for name in &self.unexpected {
            write!(f, "\n  unexpected: {name}")?;
        }
        for m in &self.mis_shaped {
            write!(
                f,
                "\n  mis-shaped: {} ({:?} in the file) for {} (expects {:?})",
                m.source, m.found, m.orchard, m.expected
            )?;
        }
        Ok(())
    }
}

/// A source tensor and the Orchard variable (relative to the model's path) it is meant for, `None` when
/// its name has no Orchard counterpart.
pub struct Source {
    pub name: String,
    pub target: Option<String>,
    pub tensor: Tensor,
}

/// Copies `sources` into the variables of `vs` under `prefix` (the model's path with its trailing `.`, empty
/// for the root), converting each with `convert(source name, tensor, target shape)` into the variable's
/// layout. Variables and sources whose target `skip` accepts take no part (a head left fresh). Returns the
/// number of variables loaded; on a mismatch nothing is changed.
pub fn assign(
    vs: &nn::VarStore,
    prefix: &str,
    sources: impl IntoIterator<Item = Source>,
    skip: impl Fn(&str) -> bool,
    convert: impl Fn(&str, &Tensor, &[i64]) -> Tensor,
) -> Result<usize, Mismatch> {
    let targets: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter_map(|(name, t)| name.strip_prefix(prefix).map(|n| (n.to_string(), t)))
        .filter(|(name, _)| !skip(name))
        .collect();
    let mut mismatch = Mismatch::default();
    let mut ready: Vec<(String, Tensor)> = Vec::new();
    let mut claimed: HashMap<String, String> = HashMap::new();
    for Source { name, target, tensor } in sources {
        let Some(orchard) = target else {
            mismatch.unexpected.push(format!("{name} (no Orchard counterpart for this weight name)"));
            continue;
        };
        if skip(&orchard) {
            continue;
        }
        let Some(variable) = targets.get(&orchard) else {
            mismatch.unexpected.push(format!("{name} (the model has no variable {prefix}{orchard})"));
            continue;
        };
        if let Some(first) = claimed.get(&orchard) {
            mismatch.unexpected.push(format!("{name} ({prefix}{orchard} is already given by {first})"));
            continue;
        }
        claimed.insert(orchard.clone(), name.clone());
        let converted = convert(&name, &tensor, &variable.size());
        if converted.size() != variable.size() {
            mismatch.mis_shaped.push(MisShaped {
                source: name,
                orchard: format!("{prefix}{orchard}"),
                expected: variable.size(),
                found: tensor.size(),
            });
            continue;
        }
        ready.push((orchard, converted));
    }
    mismatch.missing =
        targets.keys().filter(|name| !claimed.contains_key(*name)).map(|name| format!("{prefix}{name}")).collect();
    if !mismatch.is_empty() {
        mismatch.unexpected.sort();
        return Err(mismatch);
    }
    tch::no_grad(|| {
        for (orchard, tensor) in &ready {
            targets[orchard].shallow_clone().copy_(tensor);
        }
    });
    Ok(ready.len())
}
