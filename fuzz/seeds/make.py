"""Writes the seed corpus of every fuzz target into fuzz/seeds/<target>/: a few small valid inputs (and
near-valid ones) from which libFuzzer mutates. Needs torch and Pillow (the test environment's Python:
scripts/python-env.sh). The files are committed; rerun this only to change them."""
import base64
import io
import json
import os
import struct
import sys

import torch
from PIL import Image

ROOT = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def png(w, h, mode="RGB", **kw):
    buf = io.BytesIO()
    Image.new(mode, (w, h), color=0 if mode in ("L", "I;16") else (200, 30, 60)[: len(mode)]).save(buf, "PNG", **kw)
    return buf.getvalue()


def jpeg(w, h, **kw):
    buf = io.BytesIO()
    img = Image.new("RGB", (w, h))
    for x in range(w):
        for y in range(h):
            img.putpixel((x, y), (x * 30 % 256, y * 40 % 256, 90))
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def main():
    # CSV readers: labels (one-hot and multi-label), predictions, folds, a submission, with BOM/CRLF/quotes.
    put("csv_tables", "labels.csv", "image_id,healthy,rust\na,1,0\nb,0,1\nc,1,0\n")
    put("csv_tables", "predictions.csv", "image_id,healthy,rust\na,0.25,0.75\nb,1e-3,0.999\n")
    put("csv_tables", "folds.csv", "image_id,fold\na,0\nb,1\nc,0\n")
    put("csv_tables", "multilabel.csv", '\ufeffimage,labels\r\n"a",scab rust\r\nb,healthy\r\n')
    put("dataset", "onehot", "image_id,healthy,rust\na,1,0\nb,0,1\n")
    put("dataset", "manifest", "image,labels\na.jpg,rust\n\x00classes = [\"rust\", \"scab\"]\nimage_dir = \"images\"\n")
    # Images: PNG in several colour types and depths, baseline and progressive JPEG.
    put("image_decode", "rgb.png", png(4, 3))
    put("image_decode", "gray16.png", png(3, 2, "I;16"))
    put("image_decode", "rgba.png", png(2, 2, "RGBA"))
    put("image_decode", "baseline.jpg", jpeg(16, 8, quality=80))
    put("image_decode", "progressive.jpg", jpeg(9, 17, quality=70, progressive=True))
    # PyTorch files: zip and legacy, a plain state dict and a nested, non-contiguous one.
    state = {"conv.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "bn.num_batches_tracked": torch.tensor(3)}
    nested = {"state_dict": {"w": torch.arange(6, dtype=torch.float16).reshape(2, 3).t(), "b": torch.ones(2, dtype=torch.bfloat16)}}
    for name, obj in [("plain", state), ("nested", nested)]:
        for fmt, zipped in [("zip", True), ("legacy", False)]:
            buf = io.BytesIO()
            torch.save(obj, buf, _use_new_zipfile_serialization=zipped)
            put("torch_pth", f"{name}-{fmt}.pth", buf.getvalue())
    buf = io.BytesIO()
    torch.save(state, buf, _use_new_zipfile_serialization=False)
    legacy = buf.getvalue()
    # The pickles alone: the legacy file's object pickle, and a few protocol 2 and 4 containers.
    import pickle
    put("pickle", "dict-p2", pickle.dumps({"a": [1, -2, 300, 70000], "b": (1.5, None, True), "c": "x"}, protocol=2))
    put("pickle", "nested-p4", pickle.dumps([[[]], {"k": b"bytes"}, 2**70], protocol=4))
    put("pickle", "legacy-magic", legacy[:64])
    # Safetensors: a plain file and a native checkpoint header.
    f32 = struct.pack("<4f", 1, 2, 3, 4)
    put("safetensors", "plain.safetensors", safetensors({"w": ("F32", [2, 2], f32), "b": ("I64", [1], struct.pack("<q", 7))}))
    header = json.dumps({"arch": "resnet18", "num_classes": 4, "input_size": [224, 224], "normalization": "imagenet", "orchard_version": "0.1.0"})
    put("safetensors", "native.safetensors", safetensors({"fc.bias": ("F16", [2], b"\x00\x3c\x00\x40")}, {"orchard": header}))
    run = json.dumps({"arch": "resnet18", "classes": ["a", "b"], "size": [64, 64], "epoch": 2}).encode()
    ckpt = safetensors({"__orchard_state__": ("U8", [len(run)], run), "model/fc.bias": ("F32", [2], f32[:8])})
    put("checkpoint_state", "last.ckpt", ckpt)
    put("checkpoint_state", "header-only.ckpt", ckpt[:40])
    # Training configurations (TOML).
    put("train_config", "minimal.toml", 'epochs = 3\nbatch = 8\n[model]\narch = "resnet18"\n[data]\nsize = [64, 96]\n')
    put("train_config", "schedule.toml", 'epochs = 2\n[schedule.function]\nkind = "constant"\nlr = 0.001\n[augment]\nhflip = true\n')
    # Experiment files: the repository's own, and the shapes the CLI tests write (compared blends, skip_bad).
    repo = os.path.dirname(os.path.dirname(ROOT))
    for name in ["configs/plant-pathology-2020.toml", "examples/demo.toml", "examples/synth-experiment.toml"]:
        with open(os.path.join(repo, name)) as f:
            put("experiment_toml", os.path.basename(name), f.read())
    put("experiment_toml", "tiny.toml",
        'data = "d"\nout = "o"\nfolds = 2\nseed = 3\ntta = "flips"\n[ensemble]\nmethod = "search"\n'
        '[defaults]\nepochs = 1\nbatch = 8\nworkers = 1\n'
        '[[member]]\nname = "mnv2"\narch = "mobilenet_v2"\nsize = 32\n'
        '[[member]]\nname = "lite0"\narch = "efficientnet_lite0"\nsize = [24, 40]\n')
    put("experiment_toml", "compare.toml",
        'data = "d"\nout = "o"\nskip_bad = true\n[ensemble]\nmethod = "rank"\n'
        '[[ensemble.compare]]\nname = "fixed"\nmethod = "weighted"\nweights = { b = 3 }\n'
        '[[ensemble.compare]]\nname = "p"\nmethod = "power"\npower = 2.0\n'
        '[predict]\nbatch = 4\ndevice = "cpu"\n[defaults.schedule.function]\nkind = "constant"\nlr = 0.001\n'
        '[[member]]\nname = "a"\nweights = "w.h5"\n[member.data]\ncache = true\n[[member]]\nname = "b"\nepochs = 2\n')
    # Server bodies: an OIP v2 infer request, and multipart bodies (first line: the Content-Type).
    image = base64.b64encode(png(2, 2)).decode()
    put("serve_infer", "one.json", json.dumps({"id": "r1", "inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": [image]}]}))
    put("serve_infer", "two.json", json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "data": ["aGk=", "AA=="]}]}))
    body = (
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n"
        "PNGDATA\r\n--XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\nmore\r\n--XyZ--\r\n"
    )
    put("serve_multipart", "two-parts", "multipart/form-data; boundary=XyZ\n" + body)


if __name__ == "__main__":
    sys.exit(main())
