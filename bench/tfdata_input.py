"""The peer: the reference notebook's tf.data input pipeline on the same files Orchard reads.

read_file -> decode_jpeg (optionally at reduced DCT scale, `ratio`) -> resize -> random left-right and
up-down flips -> float32, parallel map, batch, prefetch: what the Plant Pathology Keras notebooks do.
Prints images/second per epoch and the process's peak memory, in the same format as `orchard bench input`.

Usage: python bench/tfdata_input.py DATASET_DIR [--size 224] [--batch 16] [--epochs 2] [--ratio 1 2 4]
"""

import argparse
import csv
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402


def image_paths(root):
    with open(os.path.join(root, "train.csv"), newline="") as f:
        return [os.path.join(root, "images", row["image_id"] + ".jpg") for row in csv.DictReader(f)]


def pipeline(paths, size, batch, ratio):
    def load(path):
        data = tf.io.read_file(path)
        if ratio == 1:
            image = tf.io.decode_jpeg(data, channels=3)
        else:
            image = tf.io.decode_jpeg(data, channels=3, ratio=ratio)
        image = tf.image.resize(image, size)
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_flip_up_down(image)
        return tf.cast(image, tf.float32) / 255.0

    ds = tf.data.Dataset.from_tensor_slices(paths).shuffle(len(paths))
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch).prefetch(tf.data.AUTOTUNE)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--ratio", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    paths = image_paths(args.dir)[: args.limit]
    print(f"tf.data bench: {len(paths)} images, tensorflow {tf.__version__}, output {args.size}x{args.size}, batch {args.batch}")
    for ratio in args.ratio:
        ds = pipeline(paths, (args.size, args.size), args.batch, ratio)
        for epoch in range(args.epochs):
            start = time.perf_counter()
            n = sum(int(b.shape[0]) for b in ds)
            secs = time.perf_counter() - start
            print(f"tf.data decode_jpeg(ratio={ratio}): epoch {epoch}: {n} images in {secs:.2f} s = {n / secs:.1f} images/s")
    print(f"tf.data: peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
