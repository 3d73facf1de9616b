//! PyTorch `.pth`/`.pt` files (zip and legacy) as libtorch tensors. The parsing — restricted pickle,
//! storages, views, every bound — is `orchard-weightfile`'s ([`orchard_weightfile::torch`]), which needs no
//! libtorch and is fuzzed; this module only makes tensors of the bytes it returns.

use tch::Tensor;

pub use orchard_weightfile::torch::{is_legacy, TorchError};

/// Named tensors of a zip-format file.
pub fn read_zip(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, TorchError> {
    super::tensors(orchard_weightfile::torch::read_zip(bytes)?).map_err(TorchError::Format)
}

/// Named tensors of a legacy-format file.
pub fn read_legacy(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, TorchError> {
    super::tensors(orchard_weightfile::torch::read_legacy(bytes)?).map_err(TorchError::Format)
}
