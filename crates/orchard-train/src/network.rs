//! A classifier set up to train: built on a device with a head for the run's classes, its convolution
//! weights in the memory layout asked for, its variables listed in one stable order. Training and
//! `orchard bench model` set their models up through it, so a benchmark times the model training runs.

use orchard_models::{Classifier, ModelError};
use orchard_torch::Layout;
use tch::{nn, Device, Tensor};

use crate::loss::Loss;
use crate::optim::Param;

/// A classifier and the var store holding its variables.
pub struct Network {
    pub vs: nn::VarStore,
    pub model: Classifier,
    /// Every variable by var-store name, sorted: the order of checkpoints, optimizer state and the EMA.
    pub variables: Vec<(String, Tensor)>,
    pub device: Device,
    /// The memory layout of its convolution weights, and so of the images it takes.
    pub layout: Layout,
}

impl Network {
    /// Builds `arch` with a head of `classes` outputs on `device`, convolution weights in `layout` (weights
    /// copied in later keep that layout).
    pub fn new(arch: &str, classes: i64, device: Device, layout: Layout) -> Result<Network, ModelError> {
        let vs = nn::VarStore::new(device);
        let model = orchard_models::build(arch, &vs.root(), Some(classes))?;
        let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        if layout == Layout::ChannelsLast {
            orchard_torch::convolutions_to_channels_last(variables.iter_mut().map(|(_, t)| t));
        }
        Ok(Network { vs, model, variables, device, layout })
    }

    /// The trainable variables as optimizer parameters, each with the learning-rate multiplier `lr_mult`
    /// gives its name.
    pub fn params(&self, lr_mult: impl Fn(&str) -> f64) -> Vec<Param> {
        self.variables
            .iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(name, t)| Param { name: name.clone(), tensor: t.shallow_clone(), lr_mult: lr_mult(name) })
            .collect()
    }

    /// The mean `loss` of one micro-batch as a training step computes it, before its backward pass: the head
    /// in training mode (dropout), the backbone in training mode (batch statistics normalise, running
    /// statistics move) when `backbone_train`, in inference mode otherwise (frozen batch norm).
    ///
    /// # Shapes
    /// xs N×3×H×W (normalised, in [`Network::layout`]), targets N×C → scalar.
    pub fn training_loss(&self, loss: &Loss, xs: &Tensor, targets: &Tensor, backbone_train: bool) -> Tensor {
        loss.forward(&self.model.forward_modes(xs, backbone_train, true), targets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_sorted_and_convolutions_channels_last() {
        let net = Network::new("mobilenet_v2", 3, Device::Cpu, Layout::ChannelsLast).unwrap();
        let names: Vec<&str> = net.variables.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted");
        let (_, conv) = net.variables.iter().find(|(n, t)| n.ends_with(".weight") && t.dim() == 4).unwrap();
        let stride = conv.stride();
        assert_eq!(stride[1], 1, "channels-last: the channel stride is 1, {stride:?}");
        let params = net.params(|name| if name.starts_with("classifier") { 2.0 } else { 1.0 });
        assert_eq!(params.len(), net.variables.iter().filter(|(_, t)| t.requires_grad()).count());
        assert!(params.iter().any(|p| p.lr_mult == 2.0) && params.iter().any(|p| p.lr_mult == 1.0));
    }
}
