//! PyTorch `.pth`/`.pt` files: the zip format of `torch.save` since PyTorch 1.6, and the legacy format
//! before it (the one the weight files on PyPI use).
//!
//! - Zip: `<archive>/data.pkl` is the pickled object, `<archive>/data/<key>` the raw bytes of each storage,
//!   `<archive>/byteorder` their byte order.
//! - Legacy: five pickles back to back (magic number, protocol version 1001, system info, the object, the
//!   list of storage keys), then each storage in that order as a little-endian i64 element count followed by
//!   its bytes.
//!
//! The object goes through the restricted [`pickle`](crate::pickle) reader; a state dict found in it, at its
//! top or under `state_dict` / `model` / `model_state_dict`, becomes named tensors, with DataParallel's
//! `module.` prefix stripped. Tensors are copied out of their storages honouring offset and strides (views of
//! shared storages, non-contiguous tensors) into contiguous bytes.
//!
//! What a file can make this reader allocate is bounded by the file's size: decompressed zip entries and
//! copied tensors together may not exceed [`MAX_EXPANSION`] times it (tensors sharing a storage, such as
//! tied weights, are copied once each; a stride-0 view claiming a billion elements of one float is refused).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::rc::Rc;

use crate::pickle::{self, PickleError, StorageRef, TensorRef, Value};
use crate::RawTensor;

/// How many times its own size a file may expand to: decompressed entries plus tensors copied out.
pub const MAX_EXPANSION: usize = 4;
/// What every file may expand to besides, so that tiny files of a few shared tensors stay readable.
const EXPANSION_FLOOR: usize = 1 << 20;

/// Why a PyTorch file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    #[error(transparent)]
    Pickle(#[from] PickleError),
    #[error("{0}")]
    Format(String),
}

/// `torch.serialization.MAGIC_NUMBER`, 0x1950a86a20f9469cfc6c, as pickle's little-endian bytes.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// `torch.serialization.PROTOCOL_VERSION`.
const LEGACY_PROTOCOL: i64 = 1001;
/// Keys under which training checkpoints keep the model's state dict.
const NESTED_KEYS: [&str; 3] = ["state_dict", "model", "model_state_dict"];

fn bad(what: impl Into<String>) -> TorchError {
    TorchError::Format(what.into())
}

/// Whether `bytes` start like a legacy PyTorch file: a protocol-2 pickle of the magic number.
pub fn is_legacy(bytes: &[u8]) -> bool {
    bytes.len() >= 14 && bytes[0] == 0x80 && bytes[2] == 0x8a && bytes[3] == 10 && bytes[4..14] == LEGACY_MAGIC
}

/// The bytes a file of `len` bytes may still make this reader allocate.
struct Budget(usize);

impl Budget {
    fn for_file(len: usize) -> Self {
        Budget(len.saturating_mul(MAX_EXPANSION).saturating_add(EXPANSION_FLOOR))
    }

    fn spend(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<(), TorchError> {
        self.0 = self.0.checked_sub(n).ok_or_else(|| {
            bad(format!(
                "{}: the file's tensors would take more than {MAX_EXPANSION} times its size, which no weight file needs",
                what()
            ))
        })?;
        Ok(())
    }
}

/// Named tensors of a zip-format file.
pub fn read_zip(bytes: &[u8]) -> Result<Vec<RawTensor<'static>>, TorchError> {
    let mut budget = Budget::for_file(bytes.len());
    let mut archive =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(format!("not a readable zip archive: {e}")))?;
    let pickle_name = archive
        .file_names()
        .find(|n| n.ends_with("data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| bad("the zip archive holds no <archive>/data.pkl: not a torch.save file"))?
        .to_string();
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let mut entry = |name: &str, budget: &mut Budget| -> Result<Option<Vec<u8>>, TorchError> {
        let file = match archive.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(bad(format!("zip entry {name}: {e}"))),
        };
        // An entry's declared size is only a claim: what is read is capped by the budget, whatever it says.
        let mut data = Vec::with_capacity(file.size().min(budget.0 as u64).min(bytes.len() as u64) as usize);
        let cap = budget.0 as u64;
        file.take(cap.saturating_add(1)).read_to_end(&mut data).map_err(|e| bad(format!("zip entry {name}: {e}")))?;
        budget.spend(data.len(), || format!("zip entry {name}"))?;
        Ok(Some(data))
    };
    if let Some(order) = entry(&format!("{prefix}byteorder"), &mut budget)? {
        if order != b"little" {
            return Err(bad(format!(
                "storages are {}-endian; only little-endian files are read",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let pickle_bytes = entry(&pickle_name, &mut budget)?.expect("listed above");
    let tensors = state_dict(&pickle::read(&pickle_bytes, 0)?.value)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    for (_, t) in &tensors {
        let key = &t.storage.key;
        if !storages.contains_key(key) {
            let data = entry(&format!("{prefix}data/{key}"), &mut budget)?
                .ok_or_else(|| bad(format!("storage data/{key} is missing from the archive")))?;
            storages.insert(key.clone(), data);
        }
    }
    let raw = materialise(tensors, &mut budget, |storage| Ok(&storages[&storage.key][..]))?;
    Ok(raw.into_iter().map(|t| RawTensor { data: Cow::Owned(t.data.into_owned()), ..t }).collect())
}

/// Named tensors of a legacy-format file.
pub fn read_legacy(bytes: &[u8]) -> Result<Vec<RawTensor<'_>>, TorchError> {
    let mut budget = Budget::for_file(bytes.len());
    let magic = pickle::read(bytes, 0)?;
    if !matches!(magic.value, Value::BigInt(ref b) if b[..] == LEGACY_MAGIC) {
        return Err(bad("wrong magic number: not a legacy torch.save file"));
    }
    let protocol = pickle::read(bytes, magic.end)?;
    if protocol.value.as_int() != Some(LEGACY_PROTOCOL) {
        return Err(bad(format!("legacy protocol version {:?}, expected {LEGACY_PROTOCOL}", protocol.value)));
    }
    let sys_info = pickle::read(bytes, protocol.end)?;
    if let Value::Dict(info) = &sys_info.value {
        let little = info.borrow().iter().find(|(k, _)| k.as_str() == Some("little_endian")).map(|(_, v)| v.as_int());
        if little == Some(Some(0)) {
            return Err(bad("the file was written on a big-endian machine; only little-endian files are read"));
        }
    }
    let object = pickle::read(bytes, sys_info.end)?;
    let keys = pickle::read(bytes, object.end)?;
    let mut pos = keys.end;
    let keys = keys.value.items().ok_or_else(|| bad("the storage key list is not a list"))?;
    // Element sizes of every storage the object referenced, state dict or not: each storage's bytes follow in
    // the key list's order, so all of them must be stepped over.
    let sizes: HashMap<&str, usize> = object.storages.iter().map(|s| (s.key.as_str(), s.dtype.size())).collect();
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    for key in keys {
        let key = match &key {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            other => return Err(bad(format!("a storage key is a {}", other.type_name()))),
        };
        let element =
            sizes.get(key.as_str()).ok_or_else(|| bad(format!("storage {key} is listed but never referenced")))?;
        let header =
            bytes.get(pos..pos.saturating_add(8)).ok_or_else(|| bad(format!("truncated before storage {key}")))?;
        let numel = u64::from_le_bytes(header.try_into().expect("8 bytes"));
        let len = numel
            .checked_mul(*element as u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| bad(format!("storage {key}: size overflows")))?;
        let start = pos + 8;
        let data = bytes.get(start..start.saturating_add(len)).ok_or_else(|| {
            bad(format!("truncated: storage {key} needs {len} bytes at offset {start}, the file has {}", bytes.len()))
        })?;
        storages.insert(key, data);
        pos = start + len;
    }
    let tensors = state_dict(&object.value)?;
    materialise(tensors, &mut budget, |storage| {
        let data = storages
            .get(&storage.key)
            .ok_or_else(|| bad(format!("storage {} has no data in the file", storage.key)))?;
        Ok(match &storage.view {
            None => data,
            Some((_, offset, size)) => {
                let e = storage.dtype.size() as u64;
                let outside = || bad(format!("storage view {:?} lies outside its storage", storage.view));
                let start = offset.checked_mul(e).and_then(|n| usize::try_from(n).ok()).ok_or_else(outside)?;
                let end = (offset.checked_add(*size).and_then(|n| n.checked_mul(e)))
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(outside)?;
                data.get(start..end).ok_or_else(outside)?
            }
        })
    })
}

/// The `(name, tensor)` pairs of the state dict in `object`, names without `module.`.
fn state_dict(object: &Value) -> Result<Vec<(String, Rc<TensorRef>)>, TorchError> {
    let mut object = object.clone();
    // A checkpoint nests its state dict once or twice; a dict that contains itself nests it forever.
    for _ in 0..8 {
        let Value::Dict(dict) = &object else {
            return Err(bad(format!("the file holds a {}, not a state dict", object.type_name())));
        };
        let nested = NESTED_KEYS.iter().find_map(|key| {
            dict.borrow()
                .iter()
                .find(|(k, v)| k.as_str() == Some(key) && matches!(v, Value::Dict(_)))
                .map(|(_, v)| v.clone())
        });
        match nested {
            Some(inner) => object = inner,
            None => return tensors_of(&object),
        }
    }
    Err(bad("state dicts nested more than 8 deep"))
}

/// The entries of a state dict, which must all be tensors under string keys.
fn tensors_of(object: &Value) -> Result<Vec<(String, Rc<TensorRef>)>, TorchError> {
    let Value::Dict(dict) = object else { unreachable!("state_dict passes dicts") };
    let dict = dict.borrow();
    let mut tensors = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let Some(name) = key.as_str() else {
            return Err(bad(format!("a state-dict key is a {}, not a string", key.type_name())));
        };
        let Value::Tensor(t) = value else {
            return Err(bad(format!("state-dict entry {name:?} is a {}, not a tensor", value.type_name())));
        };
        tensors.push((name.strip_prefix("module.").unwrap_or(name).to_string(), t.clone()));
    }
    Ok(tensors)
}

/// Copies each tensor out of its storage's bytes (given by `data`) as contiguous bytes, borrowing them where
/// the tensor is the storage itself.
fn materialise<'a>(
    tensors: Vec<(String, Rc<TensorRef>)>,
    budget: &mut Budget,
    mut data: impl FnMut(&StorageRef) -> Result<&'a [u8], TorchError>,
) -> Result<Vec<RawTensor<'a>>, TorchError> {
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let bytes = data(&t.storage)?;
        let element = t.storage.dtype.size();
        let numel = check_view(&name, &t, (bytes.len() / element) as i64)?;
        let len = (numel as usize).checked_mul(element).ok_or_else(|| bad(format!("tensor {name}: size overflows")))?;
        budget.spend(len, || format!("tensor {name}"))?;
        let data = gather(bytes, element, &t);
        out.push(RawTensor { name, dtype: t.storage.dtype, shape: t.size.clone(), data });
    }
    Ok(out)
}

/// The elements of the view `t` of `bytes` (elements of `element` bytes) in row-major order; the view must
/// have passed [`check_view`].
fn gather<'a>(bytes: &'a [u8], element: usize, t: &TensorRef) -> Cow<'a, [u8]> {
    let numel: usize = t.size.iter().map(|&n| n as usize).product();
    let start = t.offset as usize * element;
    let mut contiguous = 1i64;
    let is_contiguous = t.size.iter().zip(&t.stride).rev().all(|(&n, &s)| {
        let ok = n == 1 || s == contiguous;
        contiguous *= n;
        ok
    });
    if numel == 0 {
        return Cow::Borrowed(&[]);
    }
    if is_contiguous {
        return Cow::Borrowed(&bytes[start..start + numel * element]);
    }
    let mut out = Vec::with_capacity(numel * element);
    let mut index = vec![0i64; t.size.len()];
    for _ in 0..numel {
        let at = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<i64>();
        let at = at as usize * element;
        out.extend_from_slice(&bytes[at..at + element]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Cow::Owned(out)
}

/// Checks that a tensor's offset, size and stride stay inside a storage of `numel` elements; returns the
/// tensor's element count.
fn check_view(name: &str, t: &TensorRef, numel: i64) -> Result<i64, TorchError> {
    let fail = |why: &str| {
        Err(bad(format!(
            "tensor {name}: {why} (offset {}, size {:?}, stride {:?}, storage of {numel} elements)",
            t.offset, t.size, t.stride
        )))
    };
    if t.size.len() != t.stride.len() {
        return fail("size and stride differ in length");
    }
    if t.offset < 0 || t.size.iter().chain(&t.stride).any(|&v| v < 0) {
        return fail("negative offset, size or stride");
    }
    let Some(count) = t.size.iter().try_fold(1i64, |acc, &n| acc.checked_mul(n)) else {
        return fail("the element count overflows");
    };
    if count == 0 {
        return Ok(0);
    }
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&n, &s)| (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d)));
    match last {
        Some(last) if last < numel => Ok(count),
        _ => fail("the view reaches past its storage"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dtype;

    #[test]
    fn a_state_dict_that_contains_itself_is_refused_not_followed_forever() {
        // d = {}; d["state_dict"] = d; pickle.dumps(d, protocol=2)
        let pickle = pickle::read(b"\x80\x02}q\x00X\n\x00\x00\x00state_dictq\x01h\x00s.", 0).unwrap();
        let err = state_dict(&pickle.value).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    fn view(offset: i64, size: &[i64], stride: &[i64]) -> TensorRef {
        let storage = Rc::new(StorageRef { dtype: Dtype::F32, key: "0".into(), numel: 6, view: None });
        TensorRef { storage, offset, size: size.to_vec(), stride: stride.to_vec() }
    }

    #[test]
    fn views_outside_their_storage_are_refused() {
        assert_eq!(check_view("t", &view(0, &[2, 3], &[3, 1]), 6).unwrap(), 6);
        assert!(check_view("t", &view(1, &[2, 3], &[3, 1]), 6).is_err());
        assert!(check_view("t", &view(0, &[3, 2], &[1, 3]), 6).is_ok());
        assert!(check_view("t", &view(0, &[2, 3], &[-3, 1]), 6).is_err());
        assert!(check_view("t", &view(0, &[i64::MAX, 2], &[i64::MAX, 1]), 6).is_err());
        assert_eq!(check_view("t", &view(5, &[0, 3], &[3, 1]), 6).unwrap(), 0);
    }

    #[test]
    fn strided_views_are_copied_in_row_major_order() {
        let bytes: Vec<u8> = (0..6u8).collect();
        // The transpose of a 2x3 matrix of one-byte elements.
        assert_eq!(&*gather(&bytes, 1, &view(0, &[3, 2], &[1, 3])), &[0, 3, 1, 4, 2, 5]);
        assert!(matches!(gather(&bytes, 1, &view(1, &[2, 2], &[3, 1])), Cow::Owned(ref v) if v == &[1, 2, 4, 5]));
        assert!(matches!(gather(&bytes, 1, &view(3, &[1, 3], &[7, 1])), Cow::Borrowed(&[3, 4, 5])));
    }

    #[test]
    fn a_broadcast_view_larger_than_the_file_allows_is_refused_before_copying() {
        // A stride-0 view of one element claiming 2^40 elements passes the bounds check (it never leaves its
        // storage), and copying it out asked for four terabytes.
        let storage = Rc::new(StorageRef { dtype: Dtype::F32, key: "0".into(), numel: 1, view: None });
        let t = Rc::new(TensorRef { storage, offset: 0, size: vec![1 << 20, 1 << 20], stride: vec![0, 0] });
        let bytes = [0u8; 4];
        let err = materialise(vec![("w".into(), t)], &mut Budget::for_file(100), |_| Ok(&bytes[..])).unwrap_err();
        assert!(err.to_string().contains("tensor w") && err.to_string().contains("4 times its size"), "{err}");
    }
}
