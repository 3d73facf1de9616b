"""The machine's arithmetic ceilings as libtorch reaches them: a large f32 and bf16 matrix product (4096², the
shape where oneDNN/MKL run at their best), median FLOP/s of several products after warm-up, on the threads
`torch.get_num_threads()` uses. Every job's achieved FLOP/s is printed as a fraction of these.

Prints `RESULT {"f32": FLOP/s, "bf16": FLOP/s}`.
"""
import json
import statistics
import time

import torch

N = 4096


def rate(dtype, reps=7):
    a = torch.rand(N, N).to(dtype)
    b = torch.rand(N, N).to(dtype)
    a @ b
    a @ b
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * N**3 / statistics.median(times)


print("RESULT " + json.dumps({"f32": rate(torch.float32), "bf16": rate(torch.bfloat16)}))
