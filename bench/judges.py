"""How bench/quality.py judges samples: small classifiers trained here on the
real images of the built-in data, and the arrays they read.

- `train_shape_classifier`: a shape classifier on builtin:shapes, for the
  `shapes` figures;
- `ShapeJudge`: a shape classifier that also gives confidence, class shares,
  agreement with labels and FID of its penultimate features (the image
  figures of bench/quality_images.py);
- `UnpairedJudge`: the figures of unpaired translation (cyclegan, unit).
"""

import keras
import numpy as np
import tensorflow as tf

from evaluation import metrics
from input import cache
from input import reader

CONFIDENCE = 0.9  # The softmax a confident classification reaches.


def data(name, **kwargs):
  """The converted built-in data set `name` (`cache.ensure_builtin`)."""
  return cache.ensure_builtin(name, **kwargs)


def verdict(ok):
  return "PASS" if ok else "FAIL"


def split_arrays(data_dir, split):
  """Every example of a split as numpy arrays (images in [-1, 1])."""
  ds = reader.make_dataset(reader.ReaderConfig(data_dir, split=split, repeat=False,
                                               drop_remainder=False), 256)
  parts = [{k: v.numpy() for k, v in b.items() if k != "key"} for b in ds]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def small_cnn(input_shape, classes):
  """Three convolutions and a linear layer: the classifiers of this module."""
  return keras.Sequential([
      keras.layers.Input(input_shape),
      keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
      keras.layers.GlobalMaxPooling2D(),
      keras.layers.Dense(classes),
  ])


def _compiled(model):
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model


def train_shape_classifier(data_dir, epochs=3):
  """A small CNN trained on real builtin:shapes; returns (model, test accuracy)."""
  keras.utils.set_random_seed(0)
  model = _compiled(small_cnn((32, 32, 3), 3))

  def split(name, repeat):
    ds = reader.make_dataset(reader.ReaderConfig(data_dir, split=name, repeat=repeat,
                                                 drop_remainder=False), 64)
    return ds.map(lambda b: (b["image"], b["label"]))

  model.fit(split("train", False), epochs=epochs, verbose=0)
  _, accuracy = model.evaluate(split("test", False), verbose=0)
  return model, accuracy


def train_classifier(x, y, classes, epochs=3):
  """A small CNN fitted on (x, y); returns the model."""
  keras.utils.set_random_seed(0)
  model = _compiled(small_cnn(x.shape[1:], classes))
  model.fit(x, y, batch_size=64, epochs=epochs, verbose=0, shuffle=True)
  return model


def predict(model, x):
  return np.argmax(model.predict(x, verbose=0, batch_size=256), axis=1)


def translate_all(algorithm, x, reverse=False, batch=64):
  """`algorithm.translate` over `x`, `batch` images at a time."""
  return np.concatenate([algorithm.translate(x[i:i + batch], reverse=reverse).numpy()
                         for i in range(0, len(x), batch)])


class ShapeJudge:
  """A shape classifier trained on real images of `data_dir`; judges samples
  by confidence, class shares, agreement with labels and FID of its
  penultimate features against the held-out test split."""

  def __init__(self, data_dir, epochs=3):
    train = split_arrays(data_dir, "train")
    test = split_arrays(data_dir, "test")
    self.model = train_classifier(train["image"], train["label"], 3, epochs=epochs)
    self.features = keras.Model(self.model.inputs, self.model.layers[-2].output)
    self.accuracy = float(np.mean(self._logits(test["image"]).argmax(1) == test["label"]))
    self.reference = self._stats(test["image"])
    self.test_confident = self.confident_share(test["image"])

  def _logits(self, x):
    return self.model.predict(x, verbose=0, batch_size=256)

  def _stats(self, x):
    f = self.features.predict(x, verbose=0, batch_size=256).astype(np.float64)
    return f.mean(0), np.cov(f, rowvar=False)

  def confident_share(self, x):
    p = tf.nn.softmax(self._logits(x)).numpy()
    return float(np.mean(p.max(1) >= CONFIDENCE))

  def shares(self, x):
    return np.bincount(self._logits(x).argmax(1), minlength=3) / len(x)

  def agreement(self, x, labels):
    return float(np.mean(self._logits(x).argmax(1) == labels))

  def fid(self, x):
    mu, sigma = self._stats(x)
    return float(metrics.frechet_distance(mu, sigma, *self.reference))


class UnpairedJudge:
  """The figures of the image-to-image issue for unpaired translation, on the
  held-out test images: cycle L1 against the L1 of random pairs, the share a
  domain classifier calls the target domain, and the share whose shape a
  shape classifier (both fitted here on the real training images) keeps."""

  def __init__(self, data_dir):
    train, self.test = split_arrays(data_dir, "train"), split_arrays(data_dir, "test")
    x = np.concatenate([train["image_a"], train["image_b"]])
    self.domains = train_classifier(
        x, np.repeat([0, 1], [len(train["image_a"]), len(train["image_b"])]), 2)
    self.shapes = train_classifier(x, np.concatenate([train["label_a"], train["label_b"]]), 3)

  def report(self, algorithm, name):
    figures = {}
    for src, dst, reverse in (("a", "b", False), ("b", "a", True)):
      x, labels = self.test[f"image_{src}"], self.test[f"label_{src}"]
      out = translate_all(algorithm, x, reverse=reverse)
      back = translate_all(algorithm, out, reverse=not reverse)
      cycle = float(np.mean(np.abs(back - x)))
      shuffled = np.random.default_rng(0).permutation(len(x))
      chance = float(np.mean(np.abs(x - x[shuffled])))
      target_share = float(np.mean(predict(self.domains, out) == (1 if dst == "b" else 0)))
      kept = float(np.mean(predict(self.shapes, out) == labels))
      print(f"{name} {src}->{dst}: cycle L1 {cycle:.4f} vs random pairs {chance:.4f} "
            f"[{verdict(cycle < chance / 4)}: target < 1/4]; {target_share:.1%} classified "
            f"as domain {dst} [{verdict(target_share >= 0.9)}]; shape kept in {kept:.1%} "
            f"[{verdict(kept >= 0.9)}: targets >= 90%]", flush=True)
      figures[src + dst] = dict(cycle=cycle, chance=chance, domain=target_share, kept=kept)
    return figures
