"""The peers of an end-to-end training epoch from JPEG files (input + training), what `orchard train` does:
read, decode, resize to SIZE, random flips, batch, EfficientNet-B0 (random weights) forward + backward + Adam.
- torch: a DataLoader (2 workers, torchvision's libjpeg-turbo `decode_jpeg`, antialiased resize) feeding
  torchvision's EfficientNet-B0, channels-last, eager.
- keras: the reference notebook's tf.data pipeline (bench/tfdata_input.py's) feeding `model.fit`,
  keras.applications' EfficientNetB0.
Times every epoch; the last is reported (the first pays start-up, graph tracing and a cold page cache).

Prints one human line, then `RESULT {json}` for bench/compare.py.
Usage: epoch_peer.py --framework torch|keras DATASET_DIR [--size 224] [--batch 16] [--epochs 2]
"""
import argparse
import csv
import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def rows(root):
    with open(os.path.join(root, "train.csv"), newline="") as f:
        reader = csv.DictReader(f)
        classes = [c for c in reader.fieldnames if c != "image_id"]
        data = [(os.path.join(root, "images", r["image_id"] + ".jpg"), [float(r[c]) for c in classes]) for r in reader]
    return data, len(classes)


def torch_epochs(data, classes, a):
    import torch
    import torchvision
    from torchvision.io import decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as F

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            image = F.resize(decode_jpeg(read_file(data[i][0])), [a.size, a.size], antialias=True)
            if torch.rand(()) < 0.5:
                image = image.flip(-1)
            if torch.rand(()) < 0.5:
                image = image.flip(-2)
            return image.float() / 255, torch.tensor(data[i][1]).argmax()

    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b0(num_classes=classes).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = torch.utils.data.DataLoader(Files(), batch_size=a.batch, shuffle=True, num_workers=2,
                                         persistent_workers=True, drop_last=False)
    times = []
    for _ in range(a.epochs):
        start = time.perf_counter()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x.to(memory_format=torch.channels_last)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return times


def keras_epochs(data, classes, a):
    import keras
    import tensorflow as tf

    def load(path, label):
        image = tf.image.resize(tf.io.decode_jpeg(tf.io.read_file(path), channels=3), [a.size, a.size])
        image = tf.image.random_flip_up_down(tf.image.random_flip_left_right(image))
        return image, label

    paths = [p for p, _ in data]
    labels = [lab for _, lab in data]
    ds = (tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(len(paths))
          .map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(a.batch).prefetch(tf.data.AUTOTUNE))
    keras.utils.set_random_seed(0)
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(a.size, a.size, 3), classes=classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=keras.losses.CategoricalCrossentropy())
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(ds, epochs=a.epochs, verbose=0, callbacks=[Timer()])
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--framework", required=True, choices=["torch", "keras"])
    p.add_argument("data")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2)
    a = p.parse_args()
    data, classes = rows(a.data)
    times = {"torch": torch_epochs, "keras": keras_epochs}[a.framework](data, classes, a)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{a.framework} epoch bench: {len(data)} images at {a.size}, batch {a.batch}: epochs "
          + ", ".join(f"{t:.1f} s" for t in times) + f" = {len(data) / times[-1]:.2f} images/s (last epoch)")
    print("RESULT " + json.dumps({"epoch_seconds": times, "images": len(data), "peak_mib": peak}))


if __name__ == "__main__":
    main()
