"""The PyTorch peer of `orchard bench model`: a torchvision model on random inputs, inference or training steps
(forward + backward + Adam step), channels-last or contiguous, f32 or bf16 autocast. Prints images/second and
peak memory in the same shape as Orchard's line.

Usage: torch_model.py --arch NAME --size S --batch B [--train] [--steps N] [--warmup N] [--layout L] [--precision P]
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
p.add_argument("--precision", default="f32", choices=["f32", "bf16"])
a = p.parse_args()

name = {"resnet50_v2": "resnet50", "resnet101_v2": "resnet101", "resnet152_v2": "resnet152"}.get(a.arch, a.arch)
torch.manual_seed(0)
model = getattr(torchvision.models, name)(num_classes=1000)
fmt = torch.channels_last if a.layout == "channels-last" else torch.contiguous_format
model = model.to(memory_format=fmt)
x = torch.rand(a.batch, 3, a.size, a.size).to(memory_format=fmt)
y = torch.randint(0, 1000, (a.batch,))
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
model.train(a.train)


def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
        if a.train:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        else:
            with torch.no_grad():
                model(x).float().sum().item()
            return
    opt.zero_grad()
    loss.backward()
    opt.step()


for _ in range(a.warmup):
    step()
start = time.perf_counter()
for _ in range(a.steps):
    step()
secs = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(
    f"torch bench: {name} {'train' if a.train else 'inference'} {a.size}x{a.size} batch {a.batch} {a.layout} {a.precision}, "
    f"{torch.get_num_threads()} threads: {a.steps * a.batch / secs:.2f} images/s ({secs / a.steps:.3f} s/step); peak memory {peak:.0f} MiB"
)
