"""The machine's arithmetic ceilings as libtorch reaches them: a large f32 and bf16 matrix product (4096², the
shape where oneDNN/MKL run at their best), the best FLOP/s of 15 products after warm-up (a ceiling is what
the machine reaches, and on a shared machine the median is the neighbours' share), on the threads
`torch.get_num_threads()` uses. Every job's achieved FLOP/s is printed as a fraction of these.

On the CPU also the FMA units' own peak on as many threads (fma_peak.c, compiled here with the system's C
compiler): what no kernel can beat, where the matrix product is what a library reaches.

Usage: ceiling.py [DEVICE]   (cpu by default; cuda[:N] measures that GPU, with TF32 off for the f32 figure)
Prints `RESULT {"f32": FLOP/s, "bf16": FLOP/s, "fma": {"f32": FLOP/s, "bf16": FLOP/s or null, "isa": ...} or
null}` (`fma` null off the CPU or without a C compiler).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

N = 4096
DEVICE = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cpu")
torch.backends.cuda.matmul.allow_tf32 = False


def product(a, b):
    a @ b
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def rate(dtype, reps=15):
    a = torch.rand(N, N, device=DEVICE).to(dtype)
    b = torch.rand(N, N, device=DEVICE).to(dtype)
    product(a, b)
    product(a, b)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        product(a, b)
        times.append(time.perf_counter() - start)
    return 2 * N**3 / min(times)


def fma_peak():
    """fma_peak.c's RESULT on torch's threads, or None where it cannot be built or run."""
    if DEVICE.type != "cpu":
        return None
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fma_peak.c")
    with tempfile.TemporaryDirectory() as tmp:
        binary = os.path.join(tmp, "fma_peak")
        try:
            subprocess.run(["cc", "-O2", "-pthread", source, "-o", binary], check=True, capture_output=True)
            out = subprocess.run([binary, str(torch.get_num_threads())], check=True, capture_output=True,
                                 text=True).stdout
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"ceiling: no FMA peak ({e})", file=sys.stderr)
            return None
    return json.loads(out.split("RESULT ", 1)[1])


print("RESULT " + json.dumps({"f32": rate(torch.float32), "bf16": rate(torch.bfloat16), "fma": fma_peak()}))
