"""The PyTorch peer of `orchard bench model`: the same network on random inputs, inference or training steps
(forward + backward + Adam step), eager or `torch.compile` (inductor; with `freezing` for inference), channels-last
or contiguous, f32, bf16 or f16 autocast, on the CPU or a CUDA device. Also exports the network to ONNX (the input
of the ONNX Runtime and OpenVINO peers) and counts its FLOPs per image.

Prints one human line in the shape of Orchard's, then `RESULT {json}` for bench/compare.py.

Usage: torch_peer.py --arch NAME --size S --batch B [--train] [--steps N] [--warmup N] [--layout L]
                     [--precision P] [--device D] [--compile] [--export-onnx FILE] [--flops]
Orchard's names map to the closest network the Python world ships: torchvision's EfficientNet-B0..B7 and
MobileNetV2, timm's pre-activation ResNetV2 (resnet50_v2 → `resnetv2_50`) and Inception-ResNet-V2.
"""
import argparse
import json

import torch
from timing import report, time_steps

TIMM = {
    "resnet50_v2": "resnetv2_50",
    "resnet101_v2": "resnetv2_101",
    "resnet152_v2": "resnetv2_152",
    "inception_resnet_v2": "inception_resnet_v2",
}


def network(arch):
    """The peer network of Orchard's `arch`, random weights, 1000 classes."""
    torch.manual_seed(0)
    if arch in TIMM:
        import timm

        return timm.create_model(TIMM[arch], pretrained=False, num_classes=1000)
    import torchvision

    return getattr(torchvision.models, arch)(num_classes=1000)


def count_flops(model, size, train):
    """FLOPs of one image as PyTorch's counter sees the forward pass; a training step counts 3× that (the
    backward pass computes two products per forward one). Counting the backward pass itself is wrong for
    grouped convolutions: the counter prices a depthwise convolution's weight gradient as a dense one's."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.rand(1, 3, size, size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() * (3 if train else 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", required=True)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--train", action="store_true")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layout", default="channels-last", choices=["channels-last", "contiguous"])
    p.add_argument("--precision", default="f32", choices=["f32", "bf16", "f16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile (inductor), freezing for inference")
    p.add_argument("--export-onnx", metavar="FILE", help="write the network (inference mode) to FILE and exit")
    p.add_argument("--flops", action="store_true", help="print the FLOPs per image and exit")
    a = p.parse_args()

    model = network(a.arch)
    if a.flops:
        print("RESULT " + json.dumps({"flops_per_image": count_flops(model, a.size, a.train)}))
        return
    if a.export_onnx:
        model.eval()
        x = torch.rand(a.batch, 3, a.size, a.size)
        # The TorchScript exporter: one graph, fixed shapes, no onnxscript rewriting needed.
        torch.onnx.export(model, (x,), a.export_onnx, input_names=["images"], output_names=["logits"],
                          opset_version=17, dynamo=False)
        return

    fmt = torch.channels_last if a.layout == "channels-last" else torch.contiguous_format
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    half = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.precision)
    model = model.to(device, memory_format=fmt)
    model.train(a.train)
    x = torch.rand(a.batch, 3, a.size, a.size, device=device).to(memory_format=fmt)
    y = torch.randint(0, 1000, (a.batch,), device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=a.precision == "f16")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    forward = model
    if a.compile:
        if not a.train:
            import torch._inductor.config as inductor

            inductor.freezing = True
        forward = torch.compile(model)

    def step():
        with torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None):
            if a.train:
                loss = torch.nn.functional.cross_entropy(forward(x).float(), y)
            else:
                with torch.no_grad():
                    forward(x).float().sum().item()
                return
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if cuda:
            torch.cuda.synchronize(device)

    times = time_steps(step, a.warmup, a.steps, (lambda: torch.cuda.reset_peak_memory_stats(device)) if cuda else None)
    gpu = f", GPU {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if cuda else ""
    mode = ("compiled " if a.compile else "") + ("train" if a.train else "inference")
    report(f"torch bench: {a.arch} {mode} {a.size}x{a.size} batch {a.batch} {a.layout} {a.precision} on {device}, "
           f"{torch.get_num_threads()} threads", times, a.batch, gpu)


if __name__ == "__main__":
    main()
