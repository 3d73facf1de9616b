"""What every peer of bench/compare shares: untimed warm-up steps, then each timed step on its own, and the
two lines a peer prints (a human one in the shape of Orchard's, then `RESULT {json}` for bench/compare.py)."""
import json
import resource
import time


def time_steps(step, warmup, steps, after_warmup=None):
    """Seconds of each of `steps` calls of `step`, after `warmup` untimed ones (then `after_warmup()`)."""
    for _ in range(warmup):
        step()
    if after_warmup:
        after_warmup()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def report(label, times, batch, extra=""):
    """Prints `label: N images/s (S s/step); peak memory M MiB` and the RESULT line."""
    secs = sum(times)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{label}: {len(times) * batch / secs:.2f} images/s ({secs / len(times):.3f} s/step); "
          f"peak memory {peak:.0f} MiB{extra}")
    print("RESULT " + json.dumps({"step_seconds": times, "batch": batch, "peak_mib": peak}))
