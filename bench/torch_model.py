"""The PyTorch peer of `orchard bench model`: a torchvision model on random inputs, inference or training steps
(forward + backward + Adam step), channels-last or contiguous, f32, bf16 or f16 autocast, on the CPU or a CUDA
device. Prints images/second and peak memory (host, and the GPU's allocator peak on CUDA) in the same shape as
Orchard's line.

Usage: torch_model.py --arch NAME --size S --batch B [--train] [--steps N] [--warmup N] [--layout L] [--precision P] [--device D]
Orchard names map to torchvision's: efficientnet_b0..b7, mobilenet_v2, resnet50/101/152; resnet50_v2 → resnet50 (the
same depth and nearly the same FLOPs; torchvision has no pre-activation ResNet).
"""
import argparse
import resource
import time

import torch
import torchvision

p = argparse.ArgumentParser()
p.add_argument("--arch", required=True)
p.add_argument("--size", type=int, default=224)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--train", action="store_true")
p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--layout", default="channels-last", choices=["channels-last", "contiguous"])
p.add_argument("--precision", default="f32", choices=["f32", "bf16", "f16"])
p.add_argument("--device", default="cpu")
a = p.parse_args()

name = {"resnet50_v2": "resnet50", "resnet101_v2": "resnet101", "resnet152_v2": "resnet152"}.get(a.arch, a.arch)
torch.manual_seed(0)
model = getattr(torchvision.models, name)(num_classes=1000)
fmt = torch.channels_last if a.layout == "channels-last" else torch.contiguous_format
device = torch.device(a.device)
cuda = device.type == "cuda"
half = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.precision)
model = model.to(device, memory_format=fmt)
x = torch.rand(a.batch, 3, a.size, a.size, device=device).to(memory_format=fmt)
y = torch.randint(0, 1000, (a.batch,), device=device)
scaler = torch.amp.GradScaler(device.type, enabled=a.precision == "f16")
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
model.train(a.train)


def step():
    with torch.autocast(device.type, dtype=half or torch.float32, enabled=half is not None):
        if a.train:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        else:
            with torch.no_grad():
                model(x).float().sum().item()
            return
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    if cuda:
        torch.cuda.synchronize(device)


for _ in range(a.warmup):
    step()
if cuda:
    torch.cuda.reset_peak_memory_stats(device)
start = time.perf_counter()
for _ in range(a.steps):
    step()
secs = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
gpu = f", GPU {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if cuda else ""
print(
    f"torch bench: {name} {'train' if a.train else 'inference'} {a.size}x{a.size} batch {a.batch} {a.layout} {a.precision} on {device}, "
    f"{torch.get_num_threads()} threads: {a.steps * a.batch / secs:.2f} images/s ({secs / a.steps:.3f} s/step); peak memory {peak:.0f} MiB{gpu}"
)
