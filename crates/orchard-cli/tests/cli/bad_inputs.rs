//! The corpus of bad inputs (issue 15), made by code at test time (no binary blobs): every case is a small
//! dataset (or file) damaged one way, run through the real binary. A fatal case must exit with code 2, say
//! what its needles say (the file, the row and the column where there are some), never panic or hang, and
//! create nothing; an accepted one must check out. `data check` runs on every dataset case, `train` on the
//! ones marked, and the files other commands read (weights, configurations, experiments, folds, predictions)
//! have cases of their own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{s, synth, text};

/// `orchard` with `args`, killed after two minutes: a case that hangs fails instead of hanging the suite.
fn orchard(args: &[&str]) -> Output {
    Command::new("timeout")
        .args(["-s", "KILL", "120", env!("CARGO_BIN_EXE_orchard")])
        .args(args)
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("orchard runs")
}

/// What a case should come to.
enum Expect {
    /// Exit 0: the input is odd but valid (or decodable), and is read.
    Accepted,
    /// Exit 2, the message holding every needle (`{row}` stands for the damaged row's line in train.csv).
    Refused(&'static [&'static str]),
}

/// A dataset case: `damage` changes a copy of the base dataset (`victim` is the id of the row it may
/// damage); `train` runs `orchard train` on it too.
struct Case {
    name: &'static str,
    damage: fn(&Path, &str),
    expect: Expect,
    train: bool,
}

/// The image of `id`.
fn image(data: &Path, id: &str) -> PathBuf {
    data.join("images").join(format!("{id}.jpg"))
}

/// Rewrites train.csv through `f`, which gets its lines and the victim id.
fn edit_table(data: &Path, f: impl FnOnce(&mut Vec<String>, &str), victim: &str) {
    let path = data.join("train.csv");
    let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
    f(&mut lines, victim);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The index in `lines` of the victim's row.
fn row_of(lines: &[String], victim: &str) -> usize {
    lines.iter().position(|l| l.split(',').next() == Some(victim)).unwrap()
}

/// Replaces `path` (whatever it is) with what `make` creates there.
fn replace(path: &Path, make: impl FnOnce(&Path)) {
    let _ = std::fs::remove_file(path);
    make(path);
}

fn mkfifo(path: &Path) {
    let name = std::ffi::CString::new(s(path)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo {}", path.display());
}

fn symlink(target: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// A sparse file of `bytes` (no disk used): larger than a size bound without costing anything.
fn sparse(path: &Path, bytes: u64) {
    std::fs::File::create(path).unwrap().set_len(bytes).unwrap();
}

/// A 64×48 gradient with `channels` channels of `depth` bits, as PNG.
fn png(channels: usize, sixteen: bool) -> Vec<u8> {
    let (w, h) = (64u32, 48u32);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(if channels == 4 { png::ColorType::Rgba } else { png::ColorType::Rgb });
    encoder.set_depth(if sixteen { png::BitDepth::Sixteen } else { png::BitDepth::Eight });
    let mut writer = encoder.write_header().unwrap();
    let bytes_per = if sixteen { 2 } else { 1 };
    let data: Vec<u8> = (0..w * h * channels as u32 * bytes_per).map(|i| (i % 251) as u8).collect();
    writer.write_image_data(&data).unwrap();
    writer.finish().unwrap();
    out
}

/// A 64×48 CMYK JPEG (Adobe's inverted CMYK, as Photoshop writes it).
fn cmyk_jpeg() -> Vec<u8> {
    let pixels: Vec<u8> = (0..64 * 48 * 4).map(|i| (i % 256) as u8).collect();
    let image = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width: 64,
        pitch: 64 * 4,
        height: 48,
        format: turbojpeg::PixelFormat::CMYK,
    };
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_colorspace(turbojpeg::Colorspace::CMYK).unwrap();
    c.set_subsamp(turbojpeg::Subsamp::None).unwrap();
    c.compress_to_vec(image).unwrap()
}

/// CRC-32 (ISO-HDLC), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// `bytes` (a PNG) with its header claiming `w`×`h` (the CRC fixed, so only the size is a lie).
fn png_claiming(mut bytes: Vec<u8>, w: u32, h: u32) -> Vec<u8> {
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// `bytes` (a JPEG) with its frame header claiming `w`×`h`.
fn jpeg_claiming(mut bytes: Vec<u8>, w: u16, h: u16) -> Vec<u8> {
    let sof = bytes.windows(2).position(|m| m[0] == 0xFF && (m[1] == 0xC0 || m[1] == 0xC2)).expect("a frame header");
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

/// `bytes` (a JPEG) with an APP1 "Exif" segment of garbage right after the start marker.
fn with_corrupt_exif(bytes: Vec<u8>) -> Vec<u8> {
    let mut payload = b"Exif\0\0MM\0\x2a\xff\xff\xff\xf0\x00\x07garbage-ifd".to_vec();
    payload.extend([0xAB; 40]);
    let len = (payload.len() + 2) as u16;
    [&bytes[..2], &[0xFF, 0xE1], &len.to_be_bytes(), &payload, &bytes[2..]].concat()
}

/// The dataset's images renamed `.png` (JPEG bytes inside), with a template saying so.
fn as_png(data: &Path) {
    for entry in std::fs::read_dir(data.join("images")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::rename(&path, path.with_extension("png")).unwrap();
    }
    std::fs::write(data.join("dataset.toml"), "images = \"images/{image_id}.png\"\n").unwrap();
}

fn victim_png(data: &Path, victim: &str) -> PathBuf {
    data.join("images").join(format!("{victim}.png"))
}

const CASES: &[Case] = &[
    // Images: damaged, disguised, exotic, oversized, and not files at all.
    Case {
        name: "a JPEG cut in half",
        damage: |d, v| {
            let bytes = std::fs::read(image(d, v)).unwrap();
            std::fs::write(image(d, v), &bytes[..bytes.len() / 2]).unwrap();
        },
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg", "corrupt or unsupported JPEG"]),
        train: true,
    },
    Case {
        name: "a zero-byte JPEG",
        damage: |d, v| std::fs::write(image(d, v), b"").unwrap(),
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg: empty file (0 bytes)"]),
        train: false,
    },
    Case {
        name: "a PNG cut in half",
        damage: |d, v| std::fs::write(image(d, v), &png(3, false)[..400]).unwrap(),
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg", "corrupt or unsupported PNG"]),
        train: false,
    },
    Case {
        name: "a zero-byte PNG",
        damage: |d, v| {
            as_png(d);
            std::fs::write(victim_png(d, v), b"").unwrap();
        },
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.png: empty file (0 bytes)"]),
        train: false,
    },
    Case {
        name: "PNG bytes named .jpg (the content decides)",
        damage: |d, v| std::fs::write(image(d, v), png(4, false)).unwrap(),
        expect: Expect::Accepted,
        train: false,
    },
    Case {
        name: "JPEG bytes named .png (the content decides)",
        damage: |d, _| as_png(d),
        expect: Expect::Accepted,
        train: false,
    },
    Case {
        name: "a CMYK JPEG",
        damage: |d, v| std::fs::write(image(d, v), cmyk_jpeg()).unwrap(),
        expect: Expect::Accepted,
        train: false,
    },
    Case {
        name: "a 16-bit PNG",
        damage: |d, v| std::fs::write(image(d, v), png(3, true)).unwrap(),
        expect: Expect::Accepted,
        train: false,
    },
    Case {
        name: "a JPEG with corrupt EXIF (ignored, as decoders do)",
        damage: |d, v| {
            let bytes = std::fs::read(image(d, v)).unwrap();
            std::fs::write(image(d, v), with_corrupt_exif(bytes)).unwrap();
        },
        expect: Expect::Accepted,
        train: false,
    },
    Case {
        name: "a JPEG header patched to 16000x16000 (under the pixel limit, no data behind it)",
        damage: |d, v| {
            let bytes = std::fs::read(image(d, v)).unwrap();
            std::fs::write(image(d, v), jpeg_claiming(bytes, 16000, 16000)).unwrap();
        },
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg", "corrupt or unsupported JPEG"]),
        train: true,
    },
    Case {
        name: "a JPEG header claiming 65000x65000 (over the pixel limit)",
        damage: |d, v| {
            let bytes = std::fs::read(image(d, v)).unwrap();
            std::fs::write(image(d, v), jpeg_claiming(bytes, 65000, 65000)).unwrap();
        },
        expect: Expect::Refused(&["{victim}.jpg: 65000x65000 is larger than the 268435456-pixel limit"]),
        train: false,
    },
    Case {
        name: "a PNG header patched to 16000x16000 (under the pixel limit, no data behind it)",
        damage: |d, v| std::fs::write(image(d, v), png_claiming(png(3, false), 16000, 16000)).unwrap(),
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg", "corrupt or unsupported PNG"]),
        train: true,
    },
    Case {
        name: "a PNG header claiming 100000x100000",
        damage: |d, v| std::fs::write(image(d, v), png_claiming(png(3, false), 100000, 100000)).unwrap(),
        expect: Expect::Refused(&["{victim}.jpg: 100000x100000 is larger than the 268435456-pixel limit"]),
        train: false,
    },
    Case {
        name: "an image over the size bound (a sparse 300 MiB file)",
        damage: |d, v| replace(&image(d, v), |p| sparse(p, 300 << 20)),
        expect: Expect::Refused(&["{victim}.jpg", "300 MiB is larger than the limit for an image (256 MiB)"]),
        train: false,
    },
    Case {
        name: "a FIFO named like an image",
        damage: |d, v| replace(&image(d, v), mkfifo),
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg", "not a regular file (a named pipe)"]),
        train: true,
    },
    Case {
        name: "a symlink to /dev/zero named like an image",
        damage: |d, v| replace(&image(d, v), |p| symlink("/dev/zero", p)),
        expect: Expect::Refused(&["{victim}.jpg", "not a regular file (a character device)"]),
        train: true,
    },
    Case {
        name: "a symlink loop named like an image",
        damage: |d, v| replace(&image(d, v), |p| symlink(p, p)),
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg", "symbolic links"]),
        train: false,
    },
    Case {
        name: "a dangling symlink named like an image",
        damage: |d, v| replace(&image(d, v), |p| symlink(p.with_extension("gone"), p)),
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg does not exist"]),
        train: false,
    },
    Case {
        name: "a folder named like an image",
        damage: |d, v| replace(&image(d, v), |p| std::fs::create_dir(p).unwrap()),
        expect: Expect::Refused(&["{victim}.jpg", "not a regular file (a folder)"]),
        train: false,
    },
    Case {
        name: "a missing image",
        damage: |d, v| std::fs::remove_file(image(d, v)).unwrap(),
        expect: Expect::Refused(&["train.csv:{row}:image_id", "{victim}.jpg does not exist"]),
        train: false,
    },
    // The label table: encodings, line ends, quoting, shape, cells, ids.
    Case {
        name: "a table with a UTF-8 byte-order mark",
        damage: |d, _| {
            let text = std::fs::read(d.join("train.csv")).unwrap();
            std::fs::write(d.join("train.csv"), [&b"\xEF\xBB\xBF"[..], &text].concat()).unwrap();
        },
        expect: Expect::Accepted,
        train: false,
    },
    Case {
        name: "a table with CRLF line ends",
        damage: |d, _| {
            let text = std::fs::read_to_string(d.join("train.csv")).unwrap();
            std::fs::write(d.join("train.csv"), text.replace('\n', "\r\n")).unwrap();
        },
        expect: Expect::Accepted,
        train: false,
    },
    Case {
        name: "a table with every field quoted",
        damage: |d, v| {
            edit_table(
                d,
                |lines, _| {
                    for line in lines.iter_mut() {
                        *line = line.split(',').map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(",");
                    }
                },
                v,
            )
        },
        expect: Expect::Accepted,
        train: false,
    },
    Case {
        name: "a row missing a column",
        damage: |d, v| {
            edit_table(
                d,
                |l, v| {
                    let i = row_of(l, v);
                    l[i] = l[i].rsplit_once(',').unwrap().0.to_string();
                },
                v,
            )
        },
        expect: Expect::Refused(&["train.csv:{row}: row has 4 fields; the header has 5"]),
        train: true,
    },
    Case {
        name: "a row with an extra column",
        damage: |d, v| {
            edit_table(
                d,
                |l, v| {
                    let i = row_of(l, v);
                    l[i].push_str(",1");
                },
                v,
            )
        },
        expect: Expect::Refused(&["train.csv:{row}: row has 6 fields; the header has 5"]),
        train: false,
    },
    Case {
        name: "a header missing a class column",
        damage: |d, v| {
            edit_table(d, |l, _| l.iter_mut().for_each(|x| *x = x.rsplit_once(',').unwrap().0.to_string()), v)
        },
        expect: Expect::Refused(&["sample_submission.csv:1", "differ from the classes of", "train.csv", "extra scab"]),
        train: false,
    },
    Case {
        name: "an extra column in header and rows (one-hot: taken for a class the submission lacks)",
        damage: |d, v| {
            edit_table(
                d,
                |l, _| {
                    l[0].push_str(",notes");
                    l[1..].iter_mut().for_each(|x| x.push_str(",seen twice"));
                },
                v,
            )
        },
        expect: Expect::Refused(&["sample_submission.csv:1", "differ from the classes of", "missing notes"]),
        train: false,
    },
    Case {
        name: "a NaN cell",
        damage: |d, v| {
            edit_table(
                d,
                |l, v| {
                    let i = row_of(l, v);
                    l[i] = format!("{v},nan,0,0,0");
                },
                v,
            )
        },
        expect: Expect::Refused(&["train.csv:{row}:healthy: value 'nan' is not 0 or 1"]),
        train: false,
    },
    Case {
        name: "an empty cell",
        damage: |d, v| {
            edit_table(
                d,
                |l, v| {
                    let i = row_of(l, v);
                    l[i] = format!("{v},,0,0,1");
                },
                v,
            )
        },
        expect: Expect::Refused(&["train.csv:{row}:healthy: value '' is not 0 or 1"]),
        train: false,
    },
    Case {
        name: "an empty id",
        damage: |d, v| {
            edit_table(
                d,
                |l, v| {
                    let i = row_of(l, v);
                    l[i] = l[i].replacen(v, "", 1);
                },
                v,
            )
        },
        expect: Expect::Refused(&["train.csv:{row}:image_id: empty id"]),
        train: false,
    },
    Case {
        name: "a duplicate id",
        damage: |d, v| {
            edit_table(
                d,
                |l, v| {
                    let i = row_of(l, v);
                    let row = l[i].clone();
                    l.push(row);
                },
                v,
            )
        },
        expect: Expect::Refused(&["image_id: duplicate id '{victim}' (first seen on row {row})"]),
        train: true,
    },
    Case {
        name: "non-UTF-8 bytes in a cell",
        damage: |d, v| {
            let text = std::fs::read(d.join("train.csv")).unwrap();
            let at = text.windows(v.len()).position(|w| w == v.as_bytes()).unwrap();
            std::fs::write(d.join("train.csv"), [&text[..at], b"\xff\xfe", &text[at..]].concat()).unwrap();
        },
        expect: Expect::Refused(&["train.csv:{row}:image_id: value is not valid UTF-8"]),
        train: false,
    },
    Case {
        name: "non-UTF-8 bytes in the header",
        damage: |d, _| {
            let text = std::fs::read(d.join("train.csv")).unwrap();
            std::fs::write(d.join("train.csv"), [&b"\xff"[..], &text].concat()).unwrap();
        },
        expect: Expect::Refused(&["train.csv:1: header field 1 is not UTF-8"]),
        train: false,
    },
    Case {
        name: "an id climbing out with ../",
        damage: |d, v| {
            edit_table(
                d,
                |l, v| {
                    let i = row_of(l, v);
                    l[i] = l[i].replacen(v, "../../etc/passwd", 1);
                },
                v,
            )
        },
        expect: Expect::Refused(&["train.csv:{row}:image_id", "'../../etc/passwd' is not a plain relative file name"]),
        train: true,
    },
    Case {
        name: "an absolute id",
        damage: |d, v| {
            edit_table(
                d,
                |l, v| {
                    let i = row_of(l, v);
                    l[i] = l[i].replacen(v, "/etc/passwd", 1);
                },
                v,
            )
        },
        expect: Expect::Refused(&["train.csv:{row}:image_id", "'/etc/passwd' is not a plain relative file name"]),
        train: false,
    },
    Case {
        name: "an empty table",
        damage: |d, _| std::fs::write(d.join("train.csv"), b"").unwrap(),
        expect: Expect::Refused(&["train.csv:1: empty file: no header row"]),
        train: false,
    },
    Case {
        name: "a table with a header and no rows",
        damage: |d, v| edit_table(d, |l, _| l.truncate(1), v),
        expect: Expect::Refused(&["train.csv: no samples"]),
        train: false,
    },
    Case {
        name: "a FIFO as the table",
        damage: |d, _| replace(&d.join("train.csv"), mkfifo),
        expect: Expect::Refused(&["train.csv", "not a regular file (a named pipe)"]),
        train: true,
    },
    Case {
        name: "a symlink to /dev/zero as the table",
        damage: |d, _| replace(&d.join("train.csv"), |p| symlink("/dev/zero", p)),
        expect: Expect::Refused(&["train.csv", "not a regular file (a character device)"]),
        train: false,
    },
    Case {
        name: "a symlink loop as the table",
        damage: |d, _| replace(&d.join("train.csv"), |p| symlink(p, p)),
        expect: Expect::Refused(&["train.csv", "symbolic links"]),
        train: false,
    },
    Case {
        name: "a table over the size bound (a sparse 1.5 GiB file)",
        damage: |d, _| replace(&d.join("train.csv"), |p| sparse(p, 3 << 29)),
        expect: Expect::Refused(&["train.csv", "1.5 GiB is larger than the limit for a CSV table (1 GiB)"]),
        train: false,
    },
    Case {
        name: "a FIFO as sample_submission.csv",
        damage: |d, _| replace(&d.join("sample_submission.csv"), mkfifo),
        expect: Expect::Refused(&["sample_submission.csv", "not a regular file (a named pipe)"]),
        train: false,
    },
    Case {
        name: "a FIFO as dataset.toml",
        damage: |d, _| mkfifo(&d.join("dataset.toml")),
        expect: Expect::Refused(&["dataset.toml", "not a regular file (a named pipe)"]),
        train: false,
    },
];

/// A copy of the flat folder `from` in `to` (the synthetic dataset has one level of subfolders).
fn copy_dataset(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("images")).unwrap();
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        std::fs::copy(&entry, to.join(rel)).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The id of a row whose class has other examples (damaging it leaves every class some), and its line.
pub fn victim(data: &Path) -> (String, usize) {
    let text = std::fs::read_to_string(data.join("train.csv")).unwrap();
    let rows: Vec<(String, String)> = (text.lines().skip(1))
        .map(|l| l.split_once(',').map(|(id, rest)| (id.to_string(), rest.to_string())).unwrap())
        .collect();
    let count = |labels: &str| rows.iter().filter(|(_, l)| l == labels).count();
    let index = rows.iter().position(|(_, l)| count(l) >= 3).expect("a class with three examples");
    (rows[index].0.clone(), index + 2)
}

/// Asserts `out` is what `expect` says, with `{row}` and `{victim}` filled in.
fn assert_outcome(what: &str, out: &Output, expect: &Expect, row: usize, victim: &str) {
    let said = text(out);
    assert!(!said.contains("panicked") && !said.contains("RUST_BACKTRACE"), "{what}: {said}");
    match expect {
        Expect::Accepted => assert_eq!(out.status.code(), Some(0), "{what}: {said}"),
        Expect::Refused(needles) => {
            assert_eq!(out.status.code(), Some(2), "{what}: {said}");
            for needle in *needles {
                let needle = needle.replace("{row}", &row.to_string()).replace("{victim}", victim);
                assert!(said.contains(&needle), "{what}: {needle:?} missing from:\n{said}");
            }
        }
    }
}

#[test]
fn every_bad_dataset_of_the_corpus_is_refused_clearly_by_data_check_and_train_creating_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = synth(&tmp.path().join("base"), 16, 2, "64x48", 7);
    let (victim, row) = victim(&base);
    let (mut refused, mut accepted, mut trained) = (0, 0, 0);
    for (i, case) in CASES.iter().enumerate() {
        let data = tmp.path().join(format!("case{i}"));
        copy_dataset(&base, &data);
        (case.damage)(&data, &victim);
        let out = orchard(&["data", "check", s(&data)]);
        assert_outcome(&format!("data check, {}", case.name), &out, &case.expect, row, &victim);
        match case.expect {
            Expect::Accepted => accepted += 1,
            Expect::Refused(_) => refused += 1,
        }
        if case.train {
            let run = tmp.path().join(format!("run{i}"));
            let args = ["train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "32", "--epochs", "1"];
            let out = orchard(&[&args[..], &["--batch", "4", "--device", "cpu", "--out", s(&run)]].concat());
            assert_outcome(&format!("train, {}", case.name), &out, &case.expect, row, &victim);
            assert!(!run.exists(), "train, {}: created {}", case.name, run.display());
            trained += 1;
        }
    }
    eprintln!("{} dataset cases: {refused} refused, {accepted} accepted; {trained} also through train", CASES.len());
    assert_eq!(CASES.len(), refused + accepted);
}

/// The files other commands read from a user: each kind refused when it is not a regular file, or too large.
#[test]
fn every_other_file_a_user_names_is_read_only_when_regular_and_within_its_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let data = synth(&tmp.path().join("data"), 16, 2, "32", 7);
    let (fifo, zero, loop_, big) =
        (tmp.path().join("fifo"), tmp.path().join("zero"), tmp.path().join("loop"), tmp.path().join("big"));
    mkfifo(&fifo);
    symlink("/dev/zero", &zero);
    symlink(&loop_, &loop_);
    sparse(&big, 17 << 30);
    let run = tmp.path().join("run");
    let train =
        ["train", "--data", s(&data), "--arch", "mobilenet_v2", "--size", "32", "--epochs", "1", "--out", s(&run)];
    let sample = data.join("sample_submission.csv");
    let image = data.join("images").join("Train_0.jpg");
    let mut cases = 0;
    let commands: Vec<(Vec<&str>, &Path, &str)> = vec![
        (vec!["weights", "inspect", s(&zero)], &zero, "(a character device)"),
        (vec!["weights", "inspect", s(&fifo)], &fifo, "(a named pipe)"),
        (vec!["weights", "inspect", s(&loop_)], &loop_, "symbolic links"),
        (vec!["weights", "inspect", s(&big)], &big, "17 GiB is larger than the limit for a weight file (16 GiB)"),
        ([&train[..], &["--weights", s(&zero)]].concat(), &zero, "(a character device)"),
        ([&train[..], &["--config", s(&fifo)]].concat(), &fifo, "(a named pipe)"),
        ([&train[..], &["--folds", "2", "--folds-csv", s(&zero)]].concat(), &zero, "(a character device)"),
        ([&train[..], &["--folds", "2", "--soft-targets", s(&fifo)]].concat(), &fifo, "(a named pipe)"),
        (vec!["run", s(&fifo)], &fifo, "(a named pipe)"),
        (vec!["run", s(&big)], &big, "larger than the limit for a configuration or text file"),
        (vec!["submission", "check", "--sample", s(&sample), "--pred", s(&fifo)], &fifo, "(a named pipe)"),
        (vec!["submission", "check", "--sample", s(&zero), "--pred", s(&sample)], &zero, "(a character device)"),
        (vec!["classify", "--arch", "mobilenet_v2", "--weights", s(&fifo), s(&image)], &fifo, "(a named pipe)"),
    ];
    for (args, file, needle) in &commands {
        let out = orchard(args);
        let said = text(&out);
        let what = format!("orchard {}", args.join(" "));
        assert_eq!(out.status.code(), Some(2), "{what}: {said}");
        assert!(said.contains(s(file)) && said.contains(needle), "{what}: {needle:?} or the file missing from {said}");
        assert!(!run.exists(), "{what} created {}", run.display());
        cases += 1;
    }
    eprintln!("{cases} other files refused");
}
