"""Issue 16's fine-tuning recipe in plain PyTorch + torchvision, on Orchard's import of the ELPV photos: the
reference side of the ablation that bench/parity/elpv_ablation.sh runs.

    elpv_torch.py --data DIR --folds CSV --weights PTH --seed S --out RESULT.json [flags]

DIR is `orchard data import-elpv`'s folder (train.csv one-hot, images/{image_id}.png); CSV is `orchard data
folds --k 5 --seed 0`'s assignment, fold --fold (0) validates. The recipe: torchvision's mobilenet_v2 from the
ImageNet .pth, the classifier replaced by a fresh nn.Linear(1280, C) after Dropout(0.2), 128x128 inputs
(torchvision Resize on the PIL image: bilinear with antialias), random left-right and up-down flips per image,
ImageNet mean/std, softmax cross-entropy, batch 32 shuffled, the last partial batch kept, 6 epochs of Adam at a
constant 3e-4, batch-norm momentum 0.1 (PyTorch's convention), 2 threads. Each epoch the validation fold's mean
column-wise ROC AUC (scikit-learn per class on the softmax probabilities, classes without both labels left out,
as orchard-metrics computes it); the best epoch's value is printed and written.

Preprocessing as Orchard's mobilenet_v2: the 8-bit grey PNG broadcast to three equal channels (PIL
convert("RGB")), resized to 128x128, then (x/255 - mean) / std with ImageNet's constants.

Every recipe difference the issue lists is a flag, so it can be switched on this side too:
  --head-init torch|glorot   nn.Linear's default U(+-1/sqrt(fan_in)) for weight and bias, or Keras'
                             glorot_uniform weight and a zero bias (Orchard's default)
  --adam torch|keras         torch.optim.Adam, or Keras' formula (eps added to the uncorrected sqrt(v))
  --eps E                    Adam's epsilon (torch 1e-8; Keras 1e-7)
  --flips image|batch        flips drawn per image (torchvision transforms) or once per batch
  --dropout P                the head's dropout (torchvision 0.2)
  --bn-momentum M            PyTorch's convention (0.1 = Keras' 0.9)
  --layout channels-last|contiguous   memory order only (Orchard's default channels-last; far faster on CPUs)
  --drop-last                drop the last partial batch (DataLoader's drop_last)
  --orchard-pixels CACHE     the training split's pixels from an Orchard decode cache (`orchard train --cache`'s
                             cache-128x128.bin, train.csv's order) instead of PIL's resize: Orchard's resize is
                             PIL's antialiased bilinear filter but rounds differently (±1 on 13% of ELPV's pixels)
"""

import argparse
import csv
import json
import os
import random
import time

import numpy as np
import torch
import torchvision
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn
from torchvision.transforms import v2 as T

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--folds", required=True)
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--weights", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--head-init", choices=["torch", "glorot"], default="torch")
    p.add_argument("--adam", choices=["torch", "keras"], default="torch")
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--flips", choices=["image", "batch"], default="image")
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--bn-momentum", type=float, default=0.1)
    p.add_argument("--drop-last", action="store_true")
    p.add_argument("--orchard-pixels")
    p.add_argument("--layout", choices=["channels-last", "contiguous"], default="channels-last")
    return p.parse_args()


def read_split(data, folds_csv, fold):
    """(train, val) lists of (image path, class index, row in train.csv), in train.csv's order."""
    with open(os.path.join(data, "train.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    classes = [c for c in rows[0] if c != "image_id"]
    with open(folds_csv, newline="") as f:
        folds = {r["image_id"]: int(r["fold"]) for r in csv.DictReader(f)}
    train, val = [], []
    for row, r in enumerate(rows):
        label = max(range(len(classes)), key=lambda c: float(r[classes[c]]))
        item = (os.path.join(data, "images", r["image_id"] + ".png"), label, row)
        (val if folds[r["image_id"]] == fold else train).append(item)
    return train, val, classes


def load_pixels(items, size, orchard_cache=None):
    """uint8 N×3×size×size: PIL convert("RGB") then torchvision's Resize (bilinear, antialias), once: the
    resize is deterministic, so caching it changes nothing but the time. With `orchard_cache`, Orchard's."""
    if orchard_cache:
        raw = np.fromfile(orchard_cache, dtype=np.uint8)
        assert bytes(raw[:8]) == b"ORCHCACH", orchard_cache
        _, w, h, n, _ = np.frombuffer(raw[8:28].tobytes(), dtype=np.uint32)
        assert (w, h) == (size, size), f"{orchard_cache} holds {w}x{h} images"
        px = raw[64:].reshape(n, h, w, 3)
        return torch.from_numpy(np.stack([px[row] for _, _, row in items])).permute(0, 3, 1, 2).contiguous()
    resize = T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR, antialias=True)
    out = torch.empty((len(items), 3, size, size), dtype=torch.uint8)
    for i, (path, _, _) in enumerate(items):
        with Image.open(path) as im:
            out[i] = T.functional.pil_to_tensor(resize(im.convert("RGB")))
    return out


class Pixels(torch.utils.data.Dataset):
    def __init__(self, pixels, labels, transform):
        self.pixels, self.labels, self.transform = pixels, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.pixels[i]
        return (self.transform(x) if self.transform else x), self.labels[i]


def normalise(x):
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.float() / 255.0 - mean) / std


def build(args, classes):
    model = torchvision.models.mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    head = nn.Linear(model.classifier[1].in_features, classes)  # PyTorch's default initialisation
    if args.head_init == "glorot":
        nn.init.xavier_uniform_(head.weight)
        nn.init.zeros_(head.bias)
    model.classifier[0].p = args.dropout
    model.classifier[1] = head
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = args.bn_momentum
    return model


class KerasAdam(torch.optim.Optimizer):
    """Keras' Adam: alpha = lr·sqrt(1-b2^t)/(1-b1^t), p -= alpha·m/(sqrt(v) + eps)."""

    def __init__(self, params, lr, eps, betas=(0.9, 0.999)):
        super().__init__(params, dict(lr=lr, eps=eps, betas=betas))

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            b1, b2 = g["betas"]
            for p in g["params"]:
                if p.grad is None:
                    continue
                s = self.state[p]
                if not s:
                    s["t"], s["m"], s["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                s["t"] += 1
                s["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                s["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                alpha = g["lr"] * (1 - b2 ** s["t"]) ** 0.5 / (1 - b1 ** s["t"])
                p.addcdiv_(s["m"], s["v"].sqrt().add_(g["eps"]), value=-alpha)


def mean_column_auc(labels, probs):
    aucs = []
    for c in range(probs.shape[1]):
        y = labels == c
        if y.all() or not y.any():
            continue
        aucs.append(roc_auc_score(y, probs[:, c]))
    return float(np.mean(aucs))


def main():
    args = parse()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    train, val, classes = read_split(args.data, args.folds, args.fold)
    t0 = time.time()
    train_px = load_pixels(train, args.size, args.orchard_pixels)
    val_px = load_pixels(val, args.size, args.orchard_pixels)
    train_y = torch.tensor([y for _, y, _ in train])
    val_y = np.array([y for _, y, _ in val])
    per_image = T.Compose([T.RandomHorizontalFlip(), T.RandomVerticalFlip()]) if args.flips == "image" else None
    g = torch.Generator().manual_seed(args.seed)
    loader = torch.utils.data.DataLoader(
        Pixels(train_px, train_y, per_image), batch_size=args.batch, shuffle=True, drop_last=args.drop_last, generator=g
    )
    model = build(args, len(classes))
    # Memory order only (as Orchard's default): libtorch's CPU depthwise convolutions train far faster in it.
    fmt = torch.channels_last if args.layout == "channels-last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    if args.adam == "torch":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, eps=args.eps)
    else:
        opt = KerasAdam(model.parameters(), lr=args.lr, eps=args.eps)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    print(f"{len(train)} train, {len(val)} val, {classes}; images loaded in {time.time() - t0:.0f} s", flush=True)
    for epoch in range(args.epochs):
        model.train()
        t0, total, n = time.time(), 0.0, 0
        for x, y in loader:
            if args.flips == "batch":
                if torch.rand(1).item() < 0.5:
                    x = x.flip(3)
                if torch.rand(1).item() < 0.5:
                    x = x.flip(2)
            loss = loss_fn(model(normalise(x).contiguous(memory_format=fmt)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(y), n + len(y)
        model.eval()
        with torch.no_grad():
            batches = (normalise(val_px[i : i + 64]).contiguous(memory_format=fmt) for i in range(0, len(val_px), 64))
            probs = torch.cat([model(x).softmax(1) for x in batches])
        auc = mean_column_auc(val_y, probs.numpy())
        history.append(auc)
        print(f"epoch {epoch} train_loss {total / n:.4f} val_auc {auc:.4f} ({time.time() - t0:.0f} s)", flush=True)
    best = int(np.argmax(history))
    result = {"best_val_auc": history[best], "best_epoch": best, "val_auc": history, "args": vars(args)}
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    print(json.dumps({"best_val_auc": history[best], "best_epoch": best}))


if __name__ == "__main__":
    main()
