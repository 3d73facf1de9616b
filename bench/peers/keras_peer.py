"""The Keras 3 (TensorFlow backend) peer of `orchard bench model`: keras.applications' network of the same name,
random weights, on random inputs; inference (the model called in a `tf.function`, the graph `predict` runs,
without predict's per-call data-adapter overhead) or training steps (`train_on_batch`, Adam, sparse categorical
cross-entropy), as it comes or compiled with XLA (`jit_compile=True`).

Prints one human line in the shape of Orchard's, then `RESULT {json}` for bench/compare.py.

Usage: keras_peer.py --arch NAME --size S --batch B [--train] [--steps N] [--warmup N] [--xla]
"""
import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import numpy as np  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import report, time_steps  # noqa: E402

APPLICATIONS = {
    "efficientnet_b0": "EfficientNetB0",
    "efficientnet_b6": "EfficientNetB6",
    "efficientnet_b7": "EfficientNetB7",
    "resnet50_v2": "ResNet50V2",
    "resnet152_v2": "ResNet152V2",
    "inception_resnet_v2": "InceptionResNetV2",
    "mobilenet_v2": "MobileNetV2",
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", required=True, choices=sorted(APPLICATIONS))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--train", action="store_true")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--xla", action="store_true", help="compile with XLA (jit_compile=True)")
    a = p.parse_args()

    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, APPLICATIONS[a.arch])(
        weights=None, input_shape=(a.size, a.size, 3), classes=1000
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        jit_compile=a.xla,
    )
    rng = np.random.default_rng(0)
    x = (rng.random((a.batch, a.size, a.size, 3), dtype=np.float32) * 255).astype(np.float32)
    y = rng.integers(0, 1000, size=(a.batch,))
    infer = tf.function(lambda images: model(images, training=False), jit_compile=a.xla)
    images = tf.constant(x)

    def step():
        if a.train:
            model.train_on_batch(x, y)
        else:
            infer(images).numpy().sum()

    times = time_steps(step, a.warmup, a.steps)
    mode = ("XLA " if a.xla else "") + ("train" if a.train else "inference")
    report(f"keras bench: {a.arch} {mode} {a.size}x{a.size} batch {a.batch}", times, a.batch)


if __name__ == "__main__":
    main()
