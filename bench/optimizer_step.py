"""One Adam update over a network's parameters in channels-last, timed alone: the multi-tensor form Orchard ran
before (csrc/foreach.cpp's `_foreach_*` sequence) against libtorch's fused kernel (`_fused_adam_`, what it runs
now), alternating, median of 15. Usage: $ORCHARD_PYTHON bench/optimizer_step.py efficientnet_b0|resnet50_v2"""
import statistics, sys, time
import torch, timm, torchvision
arch = sys.argv[1]
net = timm.create_model("resnetv2_50") if arch == "resnet50_v2" else torchvision.models.efficientnet_b0()
net = net.to(memory_format=torch.channels_last)
p = [x.detach().clone() for x in net.parameters()]
g = [torch.randn_like(x) for x in p]
m = [torch.zeros_like(x) for x in p]; v = [torch.zeros_like(x) for x in p]
steps = [torch.tensor(1.0) for _ in p]
def foreach():
    torch._foreach_lerp_(m, g, 0.1)
    torch._foreach_lerp_(v, torch._foreach_mul(g, g), 0.001)
    d = torch._foreach_sqrt(v); torch._foreach_add_(d, 1e-7)
    torch._foreach_addcdiv_(p, m, d, -1e-4)
def fused():
    torch._fused_adam_(p, g, m, v, [], steps, lr=1e-4, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-7, amsgrad=False, maximize=False)
def t(f):
    s = time.perf_counter(); f(); return time.perf_counter() - s
for f in (foreach, fused): f(); f()
a, b = [], []
for _ in range(15):
    a.append(t(foreach)); b.append(t(fused))
n = sum(x.numel() for x in p)
print(f"{arch}: {n/1e6:.1f}M parameters in {len(p)} tensors, {torch.get_num_threads()} threads: multi-tensor {statistics.median(a)*1e3:.1f} ms, fused {statistics.median(b)*1e3:.1f} ms (median of 15, alternating), ratio {statistics.median(a)/statistics.median(b):.2f}")
