"""The serving peers of `orchard bench model` (inference only): ONNX Runtime and OpenVINO on the PyTorch peer's
network exported to ONNX (torch_peer.py --export-onnx), what a user would pick to serve on a CPU. Both with their
default graph optimizations (ONNX Runtime: all levels, which fold batch norm and fuse activations; OpenVINO: the
CPU plugin's latency-agnostic THROUGHPUT hint off, one infer request, as a batch call), threads = the cores
`torch.get_num_threads()` would use.

Prints one human line in the shape of Orchard's, then `RESULT {json}` for bench/compare.py.

Usage: onnx_peer.py --runtime onnxruntime|openvino --model FILE.onnx --size S --batch B [--steps N] [--warmup N]
"""
import argparse
import os

import numpy as np
from timing import report, time_steps


def threads():
    return int(os.environ.get("OMP_NUM_THREADS", 0)) or len(os.sched_getaffinity(0))


def onnxruntime_session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x})[0]


def openvino_session(path):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(path), "CPU", {"INFERENCE_NUM_THREADS": threads(), "INFERENCE_PRECISION_HINT": "f32"}
    )
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})[compiled.output(0)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runtime", required=True, choices=["onnxruntime", "openvino"])
    p.add_argument("--model", required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args()

    run = {"onnxruntime": onnxruntime_session, "openvino": openvino_session}[a.runtime](a.model)
    x = np.random.default_rng(0).random((a.batch, 3, a.size, a.size), dtype=np.float32)
    times = time_steps(lambda: run(x).sum(), a.warmup, a.steps)
    report(f"{a.runtime} bench: {os.path.basename(a.model)} inference {a.size}x{a.size} batch {a.batch}, "
           f"{threads()} threads", times, a.batch)


if __name__ == "__main__":
    main()
