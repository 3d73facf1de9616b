//! What every command-line test needs: the binary run as a process, its output, and data to run it on.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// Runs `orchard` with `args` (without `LD_LIBRARY_PATH`: the binary finds libtorch by its rpath).
pub fn orchard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchard")).args(args).env_remove("LD_LIBRARY_PATH").output().expect("orchard runs")
}

/// Standard output then standard error.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs `orchard` with the whitespace-separated words of `line` (the paths of tests hold no spaces).
pub fn cmd(line: &str) -> Output {
    orchard(&line.split_whitespace().collect::<Vec<_>>())
}

/// Runs `orchard` with `args`, which must succeed; returns its output.
pub fn ok(args: &[&str]) -> String {
    let out = orchard(args);
    assert!(out.status.success(), "orchard {}: {}", args.join(" "), text(&out));
    text(&out)
}

/// A path as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `orchard data synth` into `dir`: `train` and `test` images of `size` (N or WxH), generated from `seed`.
/// Whether this machine lets an unprivileged process make a user and mount namespace (where the full-disk
/// tests mount a small tmpfs of their own); where it does not, those tests say so and skip.
pub fn user_namespaces() -> bool {
    let yes = Command::new("unshare").args(["-rm", "true"]).status().is_ok_and(|s| s.success());
    if !yes {
        eprintln!("skipped: no user namespaces here");
    }
    yes
}

pub fn synth(dir: &Path, train: usize, test: usize, size: &str, seed: u64) -> PathBuf {
    let (train, test, seed) = (train.to_string(), test.to_string(), seed.to_string());
    ok(&["data", "synth", "--out", s(dir), "--train", &train, "--test", &test, "--size", size, "--seed", &seed]);
    dir.to_path_buf()
}

/// A tiny real experiment run to the end (two members × two folds, one epoch of 32-pixel images, flips TTA, a
/// searched blend): its dataset `root/data` (24 training and 4 test images) and output directory `root/exp`.
pub fn tiny_experiment(root: &Path) -> (PathBuf, PathBuf) {
    let data = synth(&root.join("data"), 24, 4, "48", 5);
    let exp = root.join("exp");
    let experiment = format!(
        "data = \"{}\"\nout = \"{}\"\nfolds = 2\nseed = 3\ntta = \"flips\"\n[ensemble]\nmethod = \"search\"\n\
        [defaults]\nepochs = 1\nbatch = 8\nworkers = 1\n\
        [[member]]\nname = \"mnv2\"\narch = \"mobilenet_v2\"\nsize = 32\n\
        [[member]]\nname = \"lite0\"\narch = \"efficientnet_lite0\"\nsize = 32\n",
        s(&data),
        s(&exp)
    );
    let toml = root.join("experiment.toml");
    std::fs::write(&toml, experiment).unwrap();
    ok(&["run", s(&toml), "--quiet"]);
    (data, exp)
}

/// A running `orchard serve` on loopback (any free port, the CPU), killed when dropped.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The rest of its standard output.
    pub lines: std::io::Lines<BufReader<ChildStdout>>,
}

impl Server {
    /// `orchard serve dir` with `extra` flags, once it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchard"))
            .args([&["serve", s(dir), "--addr", "127.0.0.1:0", "--device", "cpu"][..], extra].concat())
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the server prints a line").unwrap();
        let base = line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line: {line}"));
        Server { base: base.to_string(), child, lines }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `orchard submission check` of `submission` against the dataset in `data`, which must pass.
pub fn check_submission(data: &Path, submission: &Path, task: &str) -> String {
    let (sample, test) = (data.join("sample_submission.csv"), data.join("test.csv"));
    let test = if test.exists() { vec!["--test", s(&test)] } else { vec![] };
    ok(&[&["submission", "check", "--sample", s(&sample), "--pred", s(submission), "--task", task][..], &test].concat())
}

/// The output of the Python named by `ORCHARD_PYTHON` (which has the reference frameworks) run with `args`.
pub fn python(args: &[&str]) -> String {
    let python =
        std::env::var("ORCHARD_PYTHON").expect("ORCHARD_PYTHON names the Python with the reference frameworks");
    let out = Command::new(&python).args(args).output().unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The site-packages folder of the Python that holds the weight packages (`ORCHARD_PYTHON`).
pub fn site_packages() -> PathBuf {
    PathBuf::from(python(&["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).trim())
}
