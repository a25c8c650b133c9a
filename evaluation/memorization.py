"""Memorization audit: are generated samples copies of training images?

`pipeline.evaluate --memorization` (medical images: a synthetic scan must not
copy a training patient's).

The statistic is that of Carlini et al. 2023 ("Extracting Training Data from
Diffusion Models", USENIX Security, Sec. 5: an image is a copy when its l2
distance to its nearest training image is small *relative to* its mean
distance to its n = 50 nearest training images). Copying means being much
closer to one training image than to the others. A plain nearest-distance
rule cannot tell that from a blurry mean image, which is close to every
training image at once: an untrained generator's samples are, and such a
rule flagged one.

For every generated sample, and for every held-out image (split `test`,
whose patients the generator never saw), in two spaces (the RMS difference
of the [-1, 1] images at the data's bit depth, and the Euclidean distance of
the evaluation's features `--features`):

    ratio = d_1 / mean(d_1, ..., d_n),  n = min(NEIGHBOURS, training images)

with d_1 <= d_2 <= ... the distances to the training images. A sample is a
copy when ratio <= COPY_RATIO (1/3: three times closer to one training image
than to its neighbours on average; a noiseless copy has ratio 0). Held-out
images are the null: fresh images from the same distribution, never copies;
the fraction of them under the threshold is the rule's false-positive rate
on this data. The run is flagged (`memorized`) when, in either space, the
fraction of copies among the samples is larger than among the held-out
images by a one-sided Fisher exact test at P_VALUE (0.001). With 1,000
samples and 256 held-out images of which none is under the threshold, about
3% of copies are needed to be flagged; every copy is listed under `pairs`
and shown in the picture whatever the verdict.

Unpaired data: the domain of `--real_split` (trainB/testB for
`--real_split=testB`). Paired data: the target images (`image_b`). 2-D vector
data is refused. The whole `train` and `test` splits are used, whatever
`--num_real` says (a copy of an image left out of the comparison would go
unseen): training images are held in memory at their stored bit depth (one
byte a value for 8-bit data) with their features; samples and held-out images
stream through, and distances are computed in chunks of about
`CHUNK_VALUES` numbers.

Volumes (`pipeline.convert --volumes`, a sampling run trained on them): the
pixel space is the whole volume (the RMS difference of its [-1, 1] voxels),
so a copy is a copy everywhere, not on some planes. The feature space is
that of the three orthogonal mid-planes (`training.samples.mid_slices`, the
planes the sample grids show): each plane goes through the 2-D feature
network and a volume's vector is its three planes' features concatenated
(`evaluation.volume_features`), because the feature networks are 2-D and a
volume's mid-planes are what people look at; a copy of a training volume
has the same mid-planes, and so ratio 0 in both spaces. The pairs picture
shows each volume's mid-planes.

The picture `memorization_pairs.png` shows the `k` samples with the lowest
pixel ratio, each row a (sample, its nearest training image) pair, most
copy-like first.
"""

import math
import os

from absl import logging
import numpy as np

from evaluation import real_data
from evaluation import volume_features
from training import samples as samples_lib

NEIGHBOURS = 50  # Carlini et al. 2023's n.
COPY_RATIO = 1.0 / 3.0
P_VALUE = 0.001
PAIRS_NAME = "memorization_pairs.png"
CHUNK_VALUES = 1 << 22  # float64 numbers per chunk of a distance computation (32 MB).
SPACES = ("feature", "pixel")


def split_names(manifest, real_split, data="the data"):
  """The (train, held-out) splits of the audit.

  Args:
    manifest: the real data's manifest.
    real_split: `--real_split`; for unpaired data its last letter is the domain.
    data: the data's name, for messages.

  Raises:
    ValueError: vector data, or a split the data lacks (one line).
  """
  kind = manifest["kind"]
  if kind == "vector":
    raise ValueError(f"--memorization compares images, and {data!r} is 2-D vector data")
  domain = real_split[-1] if kind == "unpaired" else ""
  train, test = f"train{domain}", f"test{domain}"
  have = ", ".join(sorted(manifest["splits"]))
  if train not in manifest["splits"]:
    raise ValueError(f"--memorization needs the training images (split {train!r}), but "
                     f"{data!r} has only {have}")
  if test not in manifest["splits"]:
    raise ValueError(f"--memorization needs held-out images (split {test!r}), but {data!r} "
                     f"has only {have}: convert the source again with --holdout=FRACTION "
                     "(e.g. --holdout=0.1, patients held out whole)")
  return train, test


# --- Distances ----------------------------------------------------------------------


def squared_distances(a, b):
  """[n, m] float64 squared Euclidean distances between the rows of a and b
  (exact for integer inputs whose sums stay below 2^53)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  a_sq, b_sq = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
  return np.maximum(a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T), 0.0)


def nearest(queries, reference, k=1, chunk_values=CHUNK_VALUES):
  """Each query's Euclidean distances to its k nearest reference rows.

  Args:
    queries: [n, ...] array; rows are flattened.
    reference: [m, ...] array (m >= 1), any numeric dtype.
    k: how many neighbours (at most m).
    chunk_values: numbers per chunk of either side (bounds the memory).

  Returns:
    (distances [n, k] float64 ascending, indices [n] int64 of the nearest
    row in `reference`; the first nearest row on ties).
  """
  queries = np.asarray(queries).reshape(len(queries), -1)
  reference = np.asarray(reference).reshape(len(reference), -1)
  k = min(k, len(reference))
  rows = max(1, chunk_values // max(1, reference.shape[1]))
  best = np.full((len(queries), k), np.inf)
  index = np.zeros(len(queries), np.int64)
  for q in range(0, len(queries), rows):
    for r in range(0, len(reference), rows):
      d = squared_distances(queries[q:q + rows], reference[r:r + rows])
      j = np.argmin(d, axis=1)
      dj = d[np.arange(len(d)), j]
      better = dj < best[q:q + rows, 0]
      index[q:q + rows][better] = j[better] + r
      merged = np.concatenate([best[q:q + rows], d], axis=1)
      best[q:q + rows] = np.sort(np.partition(merged, k - 1, axis=1)[:, :k], axis=1)
  return np.sqrt(best), index


def copy_ratio(distances):
  """[n, k] ascending distances -> [n] d_1 / mean(d_1..d_k) (0 when all are 0)."""
  distances = np.asarray(distances, np.float64)
  mean = distances.mean(axis=1)
  return np.divide(distances[:, 0], mean, out=np.zeros(len(distances)), where=mean > 0)


def fisher_greater(a, n_a, b, n_b):
  """One-sided Fisher exact test: the probability of a or more of the a + b
  events falling in the first group of n_a (of n_a + n_b), by chance."""
  total, events = n_a + n_b, a + b
  denominator = math.comb(total, events)
  tail = sum(math.comb(n_a, i) * math.comb(n_b, events - i)
             for i in range(a, min(n_a, events) + 1))
  return float(tail / denominator)


def to_levels(images, max_value):
  """[n, ...] images in [-1, 1] -> [n, values] integer levels of the data's
  bit depth (uint8 for max_value 255, else uint16)."""
  x = np.clip(np.asarray(images, np.float32), -1.0, 1.0).reshape(len(images), -1)
  return np.round((x + 1.0) * (max_value / 2.0)).astype(_level_dtype(max_value))


def _level_dtype(max_value):
  return np.uint8 if max_value == 255.0 else np.uint16


def space_summary(sample_ratio, test_ratio, sample_nn, test_nn):
  """The figures of one space from the copy ratios and nearest-train
  distances of the samples and of the held-out images."""
  copies, test_copies = int(np.sum(sample_ratio <= COPY_RATIO)), int(
      np.sum(test_ratio <= COPY_RATIO))
  return {"copies": copies, "copy_fraction": copies / len(sample_ratio),
          "test_copies": test_copies, "test_copy_fraction": test_copies / len(test_ratio),
          "p_value": fisher_greater(copies, len(sample_ratio), test_copies, len(test_ratio)),
          "sample_ratio_median": float(np.median(sample_ratio)),
          "test_ratio_median": float(np.median(test_ratio)),
          "sample_nn_median": float(np.median(sample_nn)),
          "test_nn_median": float(np.median(test_nn))}


def is_memorized(summaries):
  """Whether any space has more copies among the samples than among the
  held-out images, at P_VALUE."""
  return any(s["p_value"] < P_VALUE for s in summaries.values())


def pairs_picture(samples, neighbours):
  """uint8 picture: row i is samples[i] beside neighbours[i] (both [k, H, W, C]
  in [-1, 1])."""
  pairs = np.stack([samples, neighbours], axis=1).reshape((-1,) + samples.shape[1:])
  return samples_lib.image_grid(pairs, columns=2)


def summary_line(report):
  """One line for the console."""
  f, p = report["feature"], report["pixel"]
  verdict = "COPIES TRAINING IMAGES" if report["memorized"] else "no sign of copying"
  return (f"memorization: {verdict}; copies (nearest training image at most "
          f"{COPY_RATIO:.2g} x the mean distance to the {report['neighbours']} nearest, Carlini "
          f"et al. 2023): pixels {p['copies']}/{report['num_samples']} samples against "
          f"{p['test_copies']}/{report['num_test']} held-out (p={p['p_value']:.2g}), features "
          f"{f['copies']} against {f['test_copies']} (p={f['p_value']:.2g}); flagged at "
          f"p<{P_VALUE:g}; {report['num_train']} train images")


# --- The audit ------------------------------------------------------------------------


class Audit:
  """Nearest training images of streamed samples and held-out images.

  Feed it the training images (`add_train`), then sample batches
  (`add_samples`) and held-out batches (`add_test`) in any order, each with
  their features; `report` gives the figures.
  """

  def __init__(self, shape, max_value, k=8):
    """
    Args:
      shape: (H, W, C) of the images, or (D, H, W, C) of volumes.
      max_value: 255 or 65535, the real data's top level.
      k: pairs in the picture.
    """
    self.shape = tuple(shape)
    self.max_value = float(max_value)
    self.k = k
    self._train_parts = []
    self.train = self.train_features = None
    # Level distances -> RMS distances of [-1, 1] images.
    self.scale = (2.0 / self.max_value) / np.sqrt(np.prod(self.shape))
    # (side, space) -> [(nearest distances, copy ratios)] per batch.
    self.found = {(side, space): [] for side in ("sample", "test") for space in SPACES}
    # The k most copy-like samples so far: pixel ratio, levels, train index, id,
    # pixel distance, feature ratio.
    self.closest = (np.zeros(0), np.zeros((0, int(np.prod(self.shape))),
                                          _level_dtype(self.max_value)),
                    np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    self.num_samples = 0

  def add_train(self, images, features):
    """A batch of training images ([-1, 1]) and their features (rows of
    `volume_features.features`); all of them come before the first sample or
    held-out batch."""
    if self.train is not None:
      raise ValueError("training images after the first query")
    self._train_parts.append((to_levels(images, self.max_value),
                              volume_features.per_example(features, len(images))))

  def _index(self):
    if self.train is None:
      if not self._train_parts:
        raise ValueError("--memorization needs at least one training image")
      self.train = np.concatenate([p[0] for p in self._train_parts])
      self.train_features = np.concatenate([p[1] for p in self._train_parts])
      self._train_parts = []
      if len(self.train) < 2:
        raise ValueError("--memorization needs at least two training images (a copy is "
                         "closer to one than to the others)")
    return self.train, self.train_features

  def _nearest(self, images, features):
    """(levels, {space: (nearest distance, ratio)}, nearest pixel index)."""
    train, train_features = self._index()
    levels = to_levels(images, self.max_value)
    pixel, index = nearest(levels, train, NEIGHBOURS)
    feature, _ = nearest(volume_features.per_example(features, len(images)), train_features,
                         NEIGHBOURS)
    return levels, {"pixel": (pixel[:, 0] * self.scale, copy_ratio(pixel)),
                    "feature": (feature[:, 0], copy_ratio(feature))}, index

  def add_samples(self, images, features):
    """A batch of generated samples (quantized, [-1, 1]) and their features."""
    levels, found, index = self._nearest(images, features)
    for space in SPACES:
      self.found["sample", space].append(found[space])
    ids = np.arange(self.num_samples, self.num_samples + len(levels))
    self.num_samples += len(levels)
    new = (found["pixel"][1], levels, index, ids, found["pixel"][0], found["feature"][1])
    merged = [np.concatenate([old, n]) for old, n in zip(self.closest, new)]
    keep = np.argsort(merged[0], kind="stable")[:self.k]
    self.closest = tuple(a[keep] for a in merged)

  def add_test(self, images, features):
    """A batch of held-out images and their features."""
    _, found, _ = self._nearest(images, features)
    for space in SPACES:
      self.found["test", space].append(found[space])

  def _images(self, levels):
    return (levels.astype(np.float32) * (2.0 / self.max_value) - 1.0).reshape(
        (-1,) + self.shape)

  def report(self, pairs_png=None):
    """The figures (see the module docstring); writes the pairs picture to
    `pairs_png` when given.

    Raises:
      ValueError: no samples or no held-out images were added.
    """
    got = {key: (np.concatenate([b[0] for b in v]), np.concatenate([b[1] for b in v]))
           if v else (np.zeros(0), np.zeros(0)) for key, v in self.found.items()}
    num_test = len(got["test", "pixel"][0])
    if not self.num_samples or not num_test:
      raise ValueError(f"--memorization needs samples and held-out images, got "
                       f"{self.num_samples} and {num_test}")
    num_train = len(self._index()[0])
    out = {"num_samples": self.num_samples, "num_train": num_train, "num_test": num_test,
           "neighbours": min(NEIGHBOURS, num_train)}
    for space in SPACES:
      (s_nn, s_ratio), (t_nn, t_ratio) = got["sample", space], got["test", space]
      out[space] = space_summary(s_ratio, t_ratio, s_nn, t_nn)
    out["memorized"] = is_memorized({s: out[s] for s in SPACES})
    ratio, levels, index, ids, pixel, feature_ratio = self.closest
    out["pairs"] = [{"sample": int(i), "train": int(j), "pixel_ratio": float(r),
                     "pixel": float(p), "feature_ratio": float(f)}
                    for i, j, r, p, f in zip(ids, index, ratio, pixel, feature_ratio)]
    if pairs_png:
      samples_lib.save_png(pairs_png, pairs_picture(self._images(levels),
                                                    self._images(self.train[index])))
    out["pairs_png"] = pairs_png
    out["protocol"] = {
        "statistic": "ratio = d_1 / mean(d_1..d_n) over the n nearest training images "
                     "(Carlini et al. 2023, Sec. 5)",
        "neighbours": out["neighbours"], "copy_if": f"ratio <= {COPY_RATIO:.4g}",
        "memorized_if": f"one-sided Fisher exact p < {P_VALUE:g} (samples' copies against the "
                        "held-out images') in either space",
        "feature": "Euclidean distance of the evaluation's features",
        "pixel": "RMS difference of the [-1, 1] images at the data's bit depth",
        "pairs": f"the {self.k} samples with the lowest pixel ratio, most copy-like first "
                 "(sample and train: indices in generation and shard order)"}
    if len(self.shape) == 4:
      out["protocol"]["volumes"] = ("pixel: the whole volume; feature: the three orthogonal "
                                    "mid-planes' features concatenated; picture: mid-planes")
    return out


# --- pipeline.evaluate --memorization -------------------------------------------------


def audit_train(config, real, net, train_split):
  """An `Audit` holding every training image of `real` and its features.

  Args:
    config: an `evaluate.EvaluateConfig` (`batch_size`, `memorization_k`).
    real: the `real_data.Real` data.
    net: the feature network.
    train_split: the training split (`split_names`).
  """
  train = real_data.whole_split(real, train_split)
  logging.info("Memorization: features of the %d training images (%s)", train.count, train_split)
  audit = Audit(real.shape, real.max_value, config.memorization_k)
  for x in real_data.real_batches(train, config.batch_size):
    audit.add_train(x, volume_features.features(net, x)[0])
  return audit


def audit_report(config, real, net, audit, test_split):
  """Adds the held-out images to `audit`; its report, the picture written
  beside `config.output` (none without it)."""
  test = real_data.whole_split(real, test_split)
  logging.info("Memorization: features of the %d held-out images (%s)", test.count, test_split)
  for x in real_data.real_batches(test, config.batch_size):
    audit.add_test(x, volume_features.features(net, x)[0])
  png = None
  if config.output:
    out_dir = os.path.dirname(os.path.abspath(config.output))
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, PAIRS_NAME)
  report = audit.report(png)
  for space in SPACES:
    if report[space]["test_copies"]:
      logging.warning("Memorization: %d of %d held-out images fall under the copy threshold in "
                      "%s space; samples are judged against that rate. Many mean near-duplicate "
                      "images in the data, patients shared by the splits, or features too coarse "
                      "to tell images apart", report[space]["test_copies"], report["num_test"],
                      space)
  (logging.warning if report["memorized"] else logging.info)("%s", summary_line(report))
  return report
