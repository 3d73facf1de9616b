"""Orchard against every peer configuration, side by side in one run: rounds in which each configuration of a job
runs once, in turn, in its own process, so that a noisy machine slows all of them alike. Per configuration: the
median over rounds of images/s (each round times --steps steps after --warmup untimed ones), the peak resident
memory of its process (the kernel's maxrss, the same measure for every peer), and the achieved FLOP/s as a
fraction of the machine's f32 and bf16 ceilings (bench/peers/ceiling.py, measured at the start and the end of the run,
the better kept): a large matrix product through libtorch, and on the CPU the FMA units' peak (no kernel beats it).

Run through `bench/compare`, which sets up the environments. Writes a Markdown table and the raw numbers (JSON).
Usage: compare.py [--jobs JOB...] [--rounds R] [--steps N] [--warmup N] [--out DIR] [--timeout S]
Jobs: MODEL:MODE with MODEL one of efficientnet_b0, resnet50_v2, inception_resnet_v2, efficientnet_b7 and MODE
infer or train; `input` (the input pipeline on 2048×1365 JPEGs, Orchard against tf.data); `epoch` (an end-to-end
training epoch of EfficientNet-B0 at 224 from those JPEG files: Orchard's `train` against a PyTorch DataLoader and
Keras on tf.data, the last of --epoch-epochs epochs timed).
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "bench", "peers")
PY = os.environ.get("ORCHARD_PYTHON", sys.executable)
ORCHARD = os.environ.get("ORCHARD_BIN", os.path.join(ROOT, "target", "release", "orchard"))
MODELS = {  # the jobs: size, batch
    "efficientnet_b0": (224, 16),
    "resnet50_v2": (224, 16),
    "inception_resnet_v2": (299, 16),
    "efficientnet_b7": (600, 2),
}
DEFAULT_JOBS = [f"{m}:{mode}" for m in MODELS for mode in ("infer", "train")] + ["input", "epoch"]


def run(cmd, timeout):
    """Runs `cmd`; returns (its output, the process's peak resident memory in MiB) or raises with the output's
    end. The peak is the kernel's maxrss of the child, read when reaping it: one measure for every peer."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode} (timeout {timeout} s): {out[-2000:]}")
    return out, usage.ru_maxrss / 1024


def result(out):
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"no RESULT line in: {out[-2000:]}")


def model_configs(model, mode, a, onnx_file):
    size, batch = MODELS[model]
    steps = ["--steps", str(a.steps), "--warmup", str(a.warmup)]
    common = ["--arch", model, "--size", str(size), "--batch", str(batch)] + steps
    train = ["--train"] if mode == "train" else []
    torch_like = ["--device", a.device, "--precision", a.precision]
    configs = {
        "orchard": [ORCHARD, "bench", "model"] + common + train + torch_like,
        "torch eager": [PY, f"{PEERS}/torch_peer.py"] + common + train + torch_like,
        "torch.compile": [PY, f"{PEERS}/torch_peer.py", "--compile"] + common + train + torch_like,
    }
    if a.device != "cpu" or a.precision != "f32":
        return configs  # the Keras and ONNX peers run here on the CPU in f32 only
    configs["keras"] = [PY, f"{PEERS}/keras_peer.py"] + common + train
    configs["keras XLA"] = [PY, f"{PEERS}/keras_peer.py", "--xla"] + common + train
    if mode == "infer":
        for runtime in ("onnxruntime", "openvino"):
            configs[runtime] = [PY, f"{PEERS}/onnx_peer.py", "--runtime", runtime, "--model", onnx_file,
                                "--size", str(size), "--batch", str(batch)] + steps
    return configs


def measure_model(name, cmd, timeout):
    out, peak = run(cmd, timeout)
    if name == "orchard":
        # The rate from the batch and the seconds a step (3 digits); the printed images/s has two decimals,
        # too coarse for EfficientNet-B7's 0.3-0.5.
        m = re.search(r"batch (\d+) .*\(([0-9.]+) s/step\)", out)
        if not m:
            raise RuntimeError(f"no batch and s/step in: {out[-2000:]}")
        return int(m.group(1)) / float(m.group(2)), peak
    r = result(out)
    return r["batch"] * len(r["step_seconds"]) / sum(r["step_seconds"]), peak


def input_configs(a, data):
    return {
        "orchard": [ORCHARD, "bench", "input", data, "--size", "224", "--epochs", str(a.input_epochs)],
        "tf.data": [PY, f"{ROOT}/bench/tfdata_input.py", data, "--size", "224", "--epochs", str(a.input_epochs)],
    }


def measure_input(name, cmd, timeout):
    """The best epoch's images/s (the later epochs run with warm page cache for both)."""
    out, peak = run(cmd, timeout)
    pattern = r"^files" if name == "orchard" else r"ratio="
    rates = [float(m.group(1)) for line in out.splitlines() if re.search(pattern, line)
             for m in [re.search(r"= ([0-9.]+) images/s", line)] if m]
    if not rates:
        raise RuntimeError(f"no epoch rates in: {out[-2000:]}")
    return max(rates), peak


def epoch_configs(a, data, work):
    out = os.path.join(work, "epoch-run")
    common = ["--size", "224", "--batch", "16", "--epochs", str(a.epoch_epochs)]
    return {
        "orchard": ["sh", "-c", 'rm -rf "$0" && exec "$@"', out, ORCHARD, "train", "--data", data, "--arch",
                    "efficientnet_b0", "--out", out, "--device", "cpu"] + common,
        "torch": [PY, f"{PEERS}/epoch_peer.py", "--framework", "torch", data] + common,
        "keras": [PY, f"{PEERS}/epoch_peer.py", "--framework", "keras", data] + common,
    }


def measure_epoch(name, cmd, timeout, work):
    """Images/s of the last epoch: Orchard's from its metrics.jsonl (train_seconds), the peers' from RESULT."""
    out, peak = run(cmd, timeout)
    if name == "orchard":
        with open(os.path.join(work, "epoch-run", "metrics.jsonl")) as f:
            last = json.loads(f.read().splitlines()[-1])
        images = sum(1 for _ in open(os.path.join(cmd[cmd.index("--data") + 1], "train.csv"))) - 1
        return images / float(last["train_seconds"]), peak
    r = result(out)
    return r["images"] / r["epoch_seconds"][-1], peak


def jpeg_data(a, images):
    """2048×1365 synthetic leaf JPEGs (the reference's photo size), made once."""
    data = os.path.join(ROOT, "bench-data", f"pp2048-{images}")
    if not os.path.exists(os.path.join(data, "train.csv")):
        run([ORCHARD, "data", "synth", "--out", data, "--train", str(images), "--test", "0",
             "--size", "2048x1365", "--seed", "7"], a.timeout)
    return data


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", nargs="*", default=DEFAULT_JOBS)
    p.add_argument("--configs", nargs="*", help="only these configurations (orchard is always run)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--input-epochs", type=int, default=2)
    p.add_argument("--epoch-epochs", type=int, default=2, help="epochs of the `epoch` job; the last is timed")
    p.add_argument("--epoch-images", type=int, default=160, help="JPEGs of the `epoch` job")
    p.add_argument("--size", type=int, help="every model job at this input size instead of the issue's (checks)")
    p.add_argument("--batch", type=int, help="every model job at this batch instead of the issue's (checks)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]: Orchard and the PyTorch peers only")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16", "f16"],
                   help="autocast of Orchard and the PyTorch peers; the others run in f32")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per process")
    p.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    a = p.parse_args()
    if a.steps < 5:
        sys.exit("compare: --steps must be at least 5 (fewer timed steps are noise on a shared machine)")
    for model, (size, batch) in MODELS.items():
        MODELS[model] = (a.size or size, a.batch or batch)
    os.makedirs(a.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="orchard-compare-")

    measure_ceiling = lambda: result(run([PY, f"{PEERS}/ceiling.py", a.device], a.timeout)[0])  # noqa: E731
    ceiling = measure_ceiling()
    print(f"ceilings: f32 {ceiling['f32'] / 1e9:.1f} GFLOP/s, bf16 {ceiling['bf16'] / 1e9:.1f} GFLOP/s;"
          f"{fma_line(ceiling)}", flush=True)
    rows = []
    for job in a.jobs:
        if job == "input":
            configs, flops = input_configs(a, jpeg_data(a, 300)), None
            measure = lambda name, cmd: measure_input(name, cmd, a.timeout)  # noqa: E731
        elif job == "epoch":
            flops = result(run([PY, f"{PEERS}/torch_peer.py", "--arch", "efficientnet_b0", "--size", "224",
                                "--flops", "--train"], a.timeout)[0])["flops_per_image"]
            configs = epoch_configs(a, jpeg_data(a, a.epoch_images), work)
            measure = lambda name, cmd: measure_epoch(name, cmd, a.timeout, work)  # noqa: E731
        else:
            model, mode = job.split(":")
            size, batch = MODELS[model]
            train = ["--train"] if mode == "train" else []
            flops = result(run([PY, f"{PEERS}/torch_peer.py", "--arch", model, "--size", str(size), "--flops"]
                               + train, a.timeout)[0])["flops_per_image"]
            onnx_file = os.path.join(work, f"{model}.onnx")
            if mode == "infer":
                run([PY, f"{PEERS}/torch_peer.py", "--arch", model, "--size", str(size), "--batch", str(batch),
                     "--export-onnx", onnx_file], a.timeout)
            configs = model_configs(model, mode, a, onnx_file)
            measure = lambda name, cmd: measure_model(name, cmd, a.timeout)  # noqa: E731
        if a.configs:
            configs = {k: v for k, v in configs.items() if k == "orchard" or k in a.configs}
        samples = {k: [] for k in configs}
        errors = {}
        for r in range(a.rounds):
            for name, cmd in configs.items():
                if name in errors:
                    continue
                try:
                    rate, peak = measure(name, cmd)
                except RuntimeError as e:
                    errors[name] = str(e).splitlines()[-1] if str(e) else "failed"
                    print(f"{job} round {r + 1} {name}: FAILED {e}", flush=True)
                    continue
                samples[name].append((rate, peak))
                print(f"{job} round {r + 1} {name}: {rate:.2f} images/s, peak {peak or 0:.0f} MiB", flush=True)
        results = {}
        for name, s in samples.items():
            if s:
                peaks = [pk for _, pk in s if pk is not None]
                results[name] = {"rates": [x for x, _ in s], "median": statistics.median(x for x, _ in s),
                                 "peak_mib": max(peaks) if peaks else None}
        rows.append({"job": job, "flops_per_image": flops, "results": results, "errors": errors})

    # Measured again at the end, the better of the two kept: a ceiling measured while a neighbour ran is low.
    end = measure_ceiling()
    ceiling = better_ceiling(ceiling, end)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M")
    table = render(rows, ceiling, a)
    print(table)
    with open(os.path.join(a.out, f"compare-{stamp}.md"), "w") as f:
        f.write(table)
    with open(os.path.join(a.out, f"compare-{stamp}.json"), "w") as f:
        json.dump({"ceiling": ceiling, "rows": rows, "args": vars(a)}, f, indent=1)
    shutil.rmtree(work)
    print(f"written: {a.out}/compare-{stamp}.md and .json")


def better_ceiling(first, second):
    """Each figure's larger measurement; the FMA peak's figures alike where both runs have one."""
    better = {k: max(first[k], second[k]) for k in ("f32", "bf16")}
    fma = [c["fma"] for c in (first, second) if c.get("fma")]
    if fma:
        better["fma"] = {"isa": fma[0]["isa"]}
        for k in ("f32", "bf16"):
            values = [f[k] for f in fma if f.get(k)]
            better["fma"][k] = max(values) if values else None
    else:
        better["fma"] = None
    return better


def render(rows, ceiling, a):
    key = "f32" if a.precision == "f32" else "bf16"  # f16 runs on the same half-precision units
    lines = [
        f"# bench/compare, {datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, {a.device}, "
        f"{a.precision}",
        "",
        f"Medians of {a.rounds} rounds, each {a.steps} timed steps after {a.warmup} warm-up; images/s. "
        f"Ceilings (4096² matmul through libtorch): f32 {ceiling['f32'] / 1e9:.1f} GFLOP/s, "
        f"bf16 {ceiling['bf16'] / 1e9:.1f} GFLOP/s.{fma_line(ceiling)}",
        "",
        f"| job | configuration | images/s | rounds | peak MiB | GFLOP/s | of {key} ceiling | of FMA peak | "
        "Orchard / this |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        res = row["results"]
        mine = res.get("orchard", {}).get("median")
        peers = {k: v for k, v in res.items() if k != "orchard"}
        best = max(peers, key=lambda k: peers[k]["median"]) if peers else None
        for name, r in res.items():
            gflops = row["flops_per_image"] * r["median"] / 1e9 if row["flops_per_image"] else None
            of_ceiling = f"{gflops * 1e9 / ceiling[key] * 100:.1f}%" if gflops else ""
            peak = (ceiling.get("fma") or {}).get(key)
            of_peak = f"{gflops * 1e9 / peak * 100:.1f}%" if gflops and peak else ""
            ratio = f"{mine / r['median']:.2f}" if mine and name != "orchard" else ""
            label = name + (" (best peer)" if name == best else "")
            lines.append(
                f"| {row['job']} | {label} | {r['median']:.2f} | {' '.join(f'{x:.1f}' for x in r['rates'])} | "
                f"{r['peak_mib'] or 0:.0f} | {f'{gflops:.1f}' if gflops else ''} | {of_ceiling} | {of_peak} | {ratio} |"
            )
        for name, e in row["errors"].items():
            lines.append(f"| {row['job']} | {name} | failed: {e[:80]} | | | | | | |")
        if mine and best:
            lines.append(f"| {row['job']} | **Orchard / best peer** | **{mine / peers[best]['median']:.2f}** | | "
                         f"| | | | |")
    return "\n".join(lines) + "\n"


def fma_line(ceiling):
    """The table header's sentence on the FMA peak, empty without one."""
    fma = ceiling.get("fma")
    if not fma:
        return ""
    bf16 = f", bf16 {fma['bf16'] / 1e9:.1f}" if fma.get("bf16") else ""
    return (f" FMA peak ({fma['isa']} fused multiply-adds on registers, bench/peers/fma_peak.c): "
            f"f32 {fma['f32'] / 1e9:.1f}{bf16} GFLOP/s.")


if __name__ == "__main__":
    main()
