"""Memorization audit: are generated samples copies of training images?

`pipeline.evaluate --memorization` (medical images: a synthetic scan must not
copy a training patient's). For every generated sample, and for every
held-out image (split `test`, which the generator never saw), the distance to
its nearest training image (split `train`), in two spaces:
- features: Euclidean distance between the evaluation's feature vectors
  (`--features`);
- pixels: the RMS difference of the [-1, 1] images, i.e. the L2 distance
  divided by sqrt(number of pixel values). Both sides are at the real data's
  bit depth (samples are quantized as for the metrics), so the distances are
  computed exactly on the integer levels.

Held-out images say how close a new image from the same distribution comes
to the training set by chance. A sample closer to a training image than 99%
of the held-out images are (below their 1st percentile, `test_p01`) is
suspicious; a generator that does not copy puts about 1% of its samples
there. The audit flags the run (`memorized`) when more than
`MEMORIZED_FRACTION` (5%) of the samples fall there in either space: five
times chance. Chance alone rarely gets there: the binomial spread of the
fraction is 0.3% at 1,000 samples, and the 1st percentile of a few hundred
held-out images sits between about their 0.3% and 2.5% quantiles; 5% stays
low enough that one sample in twenty copying a patient is caught.

Unpaired data: the domain of `--real_split` (trainB/testB for
`--real_split=testB`). Paired data: the target images (`image_b`). 2-D vector
data is refused. The whole `train` and `test` splits are used, whatever
`--num_real` says (a copy of an image left out of the comparison would go
unseen): training images are held in memory at their stored bit depth (one
byte a value for 8-bit data) with their features; samples and held-out images
stream through, and distances are computed in chunks of about
`CHUNK_VALUES` numbers.

The picture `memorization_pairs.png` shows the `k` samples closest to a
training image in pixels, each row a (sample, its nearest training image)
pair, closest first.
"""

import numpy as np

from training import samples as samples_lib

MEMORIZED_FRACTION = 0.05  # Flag above 5x the 1% expected by chance.
PERCENTILE = 1.0
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


def nearest(queries, reference, chunk_values=CHUNK_VALUES):
  """Each query's Euclidean distance to its nearest reference row.

  Args:
    queries: [n, ...] array; rows are flattened.
    reference: [m, ...] array (m >= 1), any numeric dtype.
    chunk_values: numbers per chunk of either side (bounds the memory).

  Returns:
    (distances [n] float64, indices [n] int64 into `reference`; the first
    nearest row on ties).
  """
  queries = np.asarray(queries).reshape(len(queries), -1)
  reference = np.asarray(reference).reshape(len(reference), -1)
  rows = max(1, chunk_values // max(1, reference.shape[1]))
  best = np.full(len(queries), np.inf)
  index = np.zeros(len(queries), np.int64)
  for q in range(0, len(queries), rows):
    for r in range(0, len(reference), rows):
      d = squared_distances(queries[q:q + rows], reference[r:r + rows])
      j = np.argmin(d, axis=1)
      dj = d[np.arange(len(d)), j]
      better = dj < best[q:q + rows]
      best[q:q + rows][better] = dj[better]
      index[q:q + rows][better] = j[better] + r
  return np.sqrt(best), index


def to_levels(images, max_value):
  """[n, ...] images in [-1, 1] -> [n, values] integer levels of the data's
  bit depth (uint8 for max_value 255, else uint16)."""
  x = np.clip(np.asarray(images, np.float32), -1.0, 1.0).reshape(len(images), -1)
  return np.round((x + 1.0) * (max_value / 2.0)).astype(_level_dtype(max_value))


def _level_dtype(max_value):
  return np.uint8 if max_value == 255.0 else np.uint16


def fraction_below(distances, threshold):
  """The fraction of `distances` strictly below `threshold`."""
  return float(np.mean(np.asarray(distances) < threshold))


def space_summary(sample_nn, test_nn):
  """The figures of one space from the nearest-train distances of the
  samples and of the held-out images."""
  p01 = float(np.percentile(test_nn, PERCENTILE))
  return {"sample_nn_median": float(np.median(sample_nn)),
          "test_nn_median": float(np.median(test_nn)), "test_p01": p01,
          "fraction_below_test_p01": fraction_below(sample_nn, p01)}


def is_memorized(summaries):
  """Whether any space's fraction below the held-out 1st percentile exceeds
  `MEMORIZED_FRACTION`."""
  return any(s["fraction_below_test_p01"] > MEMORIZED_FRACTION for s in summaries.values())


def pairs_picture(samples, neighbours):
  """uint8 picture: row i is samples[i] beside neighbours[i] (both [k, H, W, C]
  in [-1, 1])."""
  pairs = np.stack([samples, neighbours], axis=1).reshape((-1,) + samples.shape[1:])
  return samples_lib.image_grid(pairs, columns=2)


def summary_line(report):
  """One line for the console."""
  f, p = report["feature"], report["pixel"]
  verdict = "MEMORIZED" if report["memorized"] else "no sign of memorization"
  return (f"memorization: {verdict}; below the held-out 1st percentile of nearest-train "
          f"distance: features {f['fraction_below_test_p01']:.1%}, pixels "
          f"{p['fraction_below_test_p01']:.1%} (chance: 1%, flagged above "
          f"{MEMORIZED_FRACTION:.0%}); {report['num_samples']} samples, {report['num_train']} "
          f"train, {report['num_test']} held-out")


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
      shape: (H, W, C) of the images.
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
    self.nn = {(side, space): [] for side in ("sample", "test") for space in SPACES}
    # The k closest samples so far: pixel distance, levels, train index, id, feature distance.
    self.closest = (np.zeros(0), np.zeros((0, int(np.prod(self.shape))),
                                          _level_dtype(self.max_value)),
                    np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    self.num_samples = 0

  def add_train(self, images, features):
    """A batch of training images ([-1, 1]) and their features; all of them
    come before the first sample or held-out batch."""
    if self.train is not None:
      raise ValueError("training images after the first query")
    self._train_parts.append((to_levels(images, self.max_value),
                              np.asarray(features, np.float32)))

  def _index(self):
    if self.train is None:
      if not self._train_parts:
        raise ValueError("--memorization needs at least one training image")
      self.train = np.concatenate([p[0] for p in self._train_parts])
      self.train_features = np.concatenate([p[1] for p in self._train_parts])
      self._train_parts = []
    return self.train, self.train_features

  def _nearest(self, images, features):
    train, train_features = self._index()
    levels = to_levels(images, self.max_value)
    pixel, index = nearest(levels, train)
    feature, _ = nearest(np.asarray(features, np.float32), train_features)
    return levels, pixel * self.scale, index, feature

  def add_samples(self, images, features):
    """A batch of generated samples (quantized, [-1, 1]) and their features."""
    levels, pixel, index, feature = self._nearest(images, features)
    self.nn["sample", "pixel"].append(pixel)
    self.nn["sample", "feature"].append(feature)
    ids = np.arange(self.num_samples, self.num_samples + len(levels))
    self.num_samples += len(levels)
    merged = [np.concatenate([old, new]) for old, new in
              zip(self.closest, (pixel, levels, index, ids, feature))]
    keep = np.argsort(merged[0], kind="stable")[:self.k]
    self.closest = tuple(a[keep] for a in merged)

  def add_test(self, images, features):
    """A batch of held-out images and their features."""
    _, pixel, _, feature = self._nearest(images, features)
    self.nn["test", "pixel"].append(pixel)
    self.nn["test", "feature"].append(feature)

  def _images(self, levels):
    return (levels.astype(np.float32) * (2.0 / self.max_value) - 1.0).reshape(
        (-1,) + self.shape)

  def report(self, pairs_png=None):
    """The figures (see the module docstring); writes the pairs picture to
    `pairs_png` when given.

    Raises:
      ValueError: no samples or no held-out images were added.
    """
    nn = {key: np.concatenate(v) if v else np.zeros(0) for key, v in self.nn.items()}
    if not len(nn["sample", "pixel"]) or not len(nn["test", "pixel"]):
      raise ValueError(f"--memorization needs samples and held-out images, got "
                       f"{len(nn['sample', 'pixel'])} and {len(nn['test', 'pixel'])}")
    out = {"num_samples": self.num_samples, "num_train": len(self._index()[0]),
           "num_test": len(nn["test", "pixel"])}
    for space in SPACES:
      out[space] = space_summary(nn["sample", space], nn["test", space])
    out["memorized"] = is_memorized({s: out[s] for s in SPACES})
    pixel, levels, index, ids, feature = self.closest
    out["pairs"] = [{"sample": int(i), "train": int(j), "pixel": float(p), "feature": float(f)}
                    for i, j, p, f in zip(ids, index, pixel, feature)]
    if pairs_png:
      samples_lib.save_png(pairs_png, pairs_picture(self._images(levels),
                                                    self._images(self.train[index])))
    out["pairs_png"] = pairs_png
    out["protocol"] = {
        "percentile": PERCENTILE, "memorized_if": f"fraction_below_test_p01 > "
                                                  f"{MEMORIZED_FRACTION} in either space",
        "feature": "Euclidean distance of the evaluation's features",
        "pixel": "RMS difference of the [-1, 1] images at the data's bit depth",
        "pairs": f"the {self.k} samples nearest a training image in pixels, closest first "
                 "(sample and train: indices in generation and shard order)"}
    return out
