//! A decode-once cache: every image of a split decoded and resized to the training size, stored as raw
//! RGB in one memory-mapped file.
//!
//! Decoding a 2048×1365 JPEG costs milliseconds even at reduced DCT scale; copying 224×224×3 bytes out of
//! the page cache costs microseconds, so every epoch after the first runs at memory speed. The file is
//! keyed by a BLAKE3 hash of the format version, the output size, the filter and each source file's path,
//! length and modification time: when any of them changes the cache is rebuilt, never silently reused.
//! It is built in a temporary file beside its final name and renamed into place when complete, so an
//! interrupted build leaves no cache that looks valid.
//!
//! Layout: a 64-byte header (`ORCHCACH`, version, width, height, count, key) then `count` images of
//! `height × width × 3` bytes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};
use orchard_files::atomic::PendingFile;
use rayon::prelude::*;

use crate::decode::{self, DecodeError, DecodeOptions};
use crate::image::RgbImage;
use crate::resize::{self, Filter};

const MAGIC: &[u8; 8] = b"ORCHCACH";
const VERSION: u32 = 1;
const HEADER: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io { path: path.into(), source }
}

/// An open, valid cache.
pub struct Cache {
    map: Mmap,
    width: usize,
    height: usize,
    count: usize,
    path: PathBuf,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cache({}, {} images of {}x{})", self.path.display(), self.count, self.width, self.height)
    }
}

/// Whether [`Cache::open_or_build`] reused a file or decoded everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheState {
    Reused,
    Built,
}

impl Cache {
    /// Opens `file` if it was built from exactly these sources with these parameters, else (re)builds it,
    /// decoding on rayon's thread pool.
    pub fn open_or_build(
        file: &Path,
        sources: &[PathBuf],
        size: (usize, usize),
        filter: Filter,
    ) -> Result<(Cache, CacheState), CacheError> {
        let key = cache_key(sources, size, filter)?;
        if let Some(cache) = Self::open(file, &key, size, sources.len())? {
            return Ok((cache, CacheState::Reused));
        }
        Self::build(file, sources, size, filter, &key)?;
        let cache = Self::open(file, &key, size, sources.len())?.ok_or_else(|| CacheError::Io {
            path: file.into(),
            source: std::io::Error::other("the cache just written does not validate"),
        })?;
        Ok((cache, CacheState::Built))
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the cache holds no images.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Width and height of every image.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The raw RGB bytes of image `index`, straight from the mapping.
    pub fn pixels(&self, index: usize) -> &[u8] {
        let n = self.width * self.height * 3;
        &self.map[HEADER + index * n..HEADER + (index + 1) * n]
    }

    /// Image `index` as an owned image.
    pub fn image(&self, index: usize) -> RgbImage {
        RgbImage::from_raw(self.width, self.height, self.pixels(index).to_vec())
    }

    fn open(file: &Path, key: &[u8; 32], size: (usize, usize), count: usize) -> Result<Option<Cache>, CacheError> {
        let f = match File::open(file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(file)(e)),
        };
        // SAFETY: the file is only ever written under a temporary name and renamed into place when
        // complete; Orchard never modifies a published cache, so the mapping cannot change under us.
        let map = unsafe { Mmap::map(&f) }.map_err(io(file))?;
        let expected = HEADER + count * size.0 * size.1 * 3;
        if map.len() != expected || &map[..8] != MAGIC {
            return Ok(None);
        }
        let word = |i: usize| u32::from_le_bytes(map[i..i + 4].try_into().unwrap());
        let count_stored = u64::from_le_bytes(map[20..28].try_into().unwrap());
        let valid = word(8) == VERSION
            && word(12) as usize == size.0
            && word(16) as usize == size.1
            && count_stored == count as u64
            && &map[28..60] == key;
        Ok(valid.then(|| Cache { map, width: size.0, height: size.1, count, path: file.into() }))
    }

    fn build(
        file: &Path,
        sources: &[PathBuf],
        size: (usize, usize),
        filter: Filter,
        key: &[u8; 32],
    ) -> Result<(), CacheError> {
        let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut tmp = PendingFile::new(file).map_err(io(dir))?;
        let per_image = size.0 * size.1 * 3;
        tmp.file().set_len((HEADER + sources.len() * per_image) as u64).map_err(io(tmp.path()))?;
        {
            // SAFETY: the temporary file is ours alone until it is renamed below.
            let mut map = unsafe { MmapMut::map_mut(&*tmp.file()) }.map_err(io(file))?;
            let options = DecodeOptions { min_size: Some(size), ..Default::default() };
            map[HEADER..].par_chunks_mut(per_image).zip(sources.par_iter()).try_for_each(|(slot, path)| {
                let decoded = decode::decode_file(path, &options)?;
                let resized = resize::resize(&decoded, size.0, size.1, filter);
                slot.copy_from_slice(&resized.data);
                Ok::<(), CacheError>(())
            })?;
            map.flush().map_err(io(tmp.path()))?;
        }
        // The header goes in last: a file without it never validates.
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&(size.0 as u32).to_le_bytes());
        header[16..20].copy_from_slice(&(size.1 as u32).to_le_bytes());
        header[20..28].copy_from_slice(&(sources.len() as u64).to_le_bytes());
        header[28..60].copy_from_slice(key);
        let f = tmp.file();
        std::io::Seek::rewind(f).map_err(io(file))?;
        f.write_all(&header).map_err(io(file))?;
        tmp.commit().map_err(io(file))
    }
}

/// Hash of everything the cached pixels depend on.
fn cache_key(sources: &[PathBuf], size: (usize, usize), filter: Filter) -> Result<[u8; 32], CacheError> {
    let mut h = blake3::Hasher::new();
    h.update(&VERSION.to_le_bytes());
    h.update(format!("{size:?} {filter:?}").as_bytes());
    for path in sources {
        let meta = std::fs::metadata(path).map_err(io(path))?;
        let mtime =
            meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(&[0]);
        h.update(&meta.len().to_le_bytes());
        h.update(&mtime.to_le_bytes());
    }
    Ok(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_jpegs(dir: &Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let img = RgbImage::from_raw(64, 48, (0..64 * 48 * 3).map(|k| ((k * (i + 1)) % 256) as u8).collect());
                let path = dir.join(format!("{i}.jpg"));
                std::fs::write(&path, decode::encode_jpeg(&img, 90).unwrap()).unwrap();
                path
            })
            .collect()
    }

    #[test]
    fn cached_pixels_equal_a_fresh_decode_and_resize() {
        let dir = tempfile::tempdir().unwrap();
        let sources = write_jpegs(dir.path(), 5);
        let file = dir.path().join("c/train.cache");
        let (cache, state) = Cache::open_or_build(&file, &sources, (32, 24), Filter::Bilinear).unwrap();
        assert_eq!(state, CacheState::Built);
        assert_eq!(cache.len(), 5);
        for (i, path) in sources.iter().enumerate() {
            let fresh = resize::resize(
                &decode::decode_file(path, &DecodeOptions { min_size: Some((32, 24)), ..Default::default() }).unwrap(),
                32,
                24,
                Filter::Bilinear,
            );
            assert_eq!(cache.image(i), fresh);
        }
        let (_, state) = Cache::open_or_build(&file, &sources, (32, 24), Filter::Bilinear).unwrap();
        assert_eq!(state, CacheState::Reused);
        // Nothing temporary is left beside the cache.
        assert_eq!(std::fs::read_dir(dir.path().join("c")).unwrap().count(), 1);
    }

    #[test]
    fn changed_sources_or_parameters_rebuild_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let sources = write_jpegs(dir.path(), 3);
        let file = dir.path().join("x.cache");
        Cache::open_or_build(&file, &sources, (16, 16), Filter::Bilinear).unwrap();
        assert_eq!(Cache::open_or_build(&file, &sources, (16, 16), Filter::Bicubic).unwrap().1, CacheState::Built);
        assert_eq!(Cache::open_or_build(&file, &sources, (20, 16), Filter::Bicubic).unwrap().1, CacheState::Built);
        // Rewrite one source with other content (its length changes).
        let other = RgbImage::from_raw(30, 30, vec![9; 2700]);
        std::fs::write(&sources[1], decode::encode_jpeg(&other, 50).unwrap()).unwrap();
        let (cache, state) = Cache::open_or_build(&file, &sources, (20, 16), Filter::Bicubic).unwrap();
        assert_eq!(state, CacheState::Built);
        assert!(cache.pixels(1).iter().all(|&v| (5..=13).contains(&v)));
        assert_eq!(Cache::open_or_build(&file, &sources[..2], (20, 16), Filter::Bicubic).unwrap().1, CacheState::Built);
    }

    #[test]
    fn a_bad_source_fails_the_build_naming_the_file_and_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = write_jpegs(dir.path(), 2);
        let bad = dir.path().join("bad.jpg");
        std::fs::write(&bad, b"\xFF\xD8\xFFnot really").unwrap();
        sources.push(bad);
        let file = dir.path().join("y.cache");
        let err = Cache::open_or_build(&file, &sources, (16, 16), Filter::Bilinear).unwrap_err();
        assert!(err.to_string().contains("bad.jpg"), "{err}");
        assert!(!file.exists());
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".orchard-cache")));
    }
}
