//! `.safetensors` files: a little-endian u64 header length, a JSON index of every tensor's dtype, shape and
//! byte range, then the bytes. The `safetensors` crate checks the index against the file; this module
//! returns the tensors in the file's order, borrowing their bytes, and the `__metadata__` strings.

use std::borrow::Cow;
use std::collections::HashMap;

use safetensors::tensor::{Dtype as StDtype, SafeTensors};

use crate::{Dtype, RawTensor};

/// Whether `bytes` look like a safetensors file: a little-endian u64 header length that fits the file,
/// then a JSON object.
pub fn is_safetensors(bytes: &[u8]) -> bool {
    let Some(len) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))) else {
        return false;
    };
    len >= 2 && len <= (bytes.len() as u64).saturating_sub(8) && bytes[8] == b'{'
}

/// A safetensors file read: its tensors in file order, and its `__metadata__` (string to string).
#[derive(Debug)]
pub struct File<'a> {
    pub tensors: Vec<RawTensor<'a>>,
    pub metadata: HashMap<String, String>,
}

/// Reads a safetensors file held in `bytes`. Errors are the `safetensors` crate's, or name the tensor.
pub fn read(bytes: &[u8]) -> Result<File<'_>, String> {
    let (header_len, index) = SafeTensors::read_metadata(bytes).map_err(|e| format!("{e:?}"))?;
    let data = &bytes[8 + header_len..];
    let mut infos: Vec<(String, _)> = index.tensors().into_iter().collect();
    // The file order: by data offset, which is how the writer laid them out.
    infos.sort_by_key(|(_, info)| info.data_offsets);
    let tensors = infos
        .into_iter()
        .map(|(name, info)| {
            let dtype =
                dtype(info.dtype).ok_or_else(|| format!("tensor {name}: unsupported dtype {:?}", info.dtype))?;
            let shape = info.shape.iter().map(|&d| i64::try_from(d)).collect::<Result<Vec<_>, _>>();
            let shape = shape.map_err(|_| format!("tensor {name}: a dimension overflows"))?;
            // read_metadata has checked every range against the data and the shapes against the ranges.
            let (start, end) = info.data_offsets;
            Ok(RawTensor { name, dtype, shape, data: Cow::Borrowed(&data[start..end]) })
        })
        .collect::<Result<_, String>>()?;
    let metadata = index.metadata().clone().unwrap_or_default();
    Ok(File { tensors, metadata })
}

/// The dtype of a safetensors dtype, for those libtorch has.
fn dtype(dtype: StDtype) -> Option<Dtype> {
    Some(match dtype {
        StDtype::BOOL => Dtype::Bool,
        StDtype::U8 => Dtype::U8,
        StDtype::I8 => Dtype::I8,
        StDtype::I16 => Dtype::I16,
        StDtype::I32 => Dtype::I32,
        StDtype::I64 => Dtype::I64,
        StDtype::F16 => Dtype::F16,
        StDtype::BF16 => Dtype::BF16,
        StDtype::F32 => Dtype::F32,
        StDtype::F64 => Dtype::F64,
        _ => return None,
    })
}
