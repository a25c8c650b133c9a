"""Sources that come whole: `npz:FILE` arrays, `builtin:NAME` generated data
and `tfds:NAME[:SPLIT]` (`input.sources` lists every scheme)."""

import os

import numpy as np

from input import builtin
from input import images
from input.source_base import Example, Item, Source, SourceError


class NpzSource(Source):
  """`npz:FILE` with `x` [N,H,W], [N,H,W,C] (uint8, uint16, or float in [0,1])
  or [N,D] vectors, optional integer `y` [N] and optional `label_names`."""

  def __init__(self, spec, path):
    super().__init__(spec)
    if not os.path.isfile(path):
      raise SourceError(f"npz file {path!r} does not exist")
    self.path = os.path.abspath(path)
    with np.load(self.path) as data:
      if "x" not in data.files:
        raise SourceError(f"npz file {path!r} has no array 'x' (has {data.files})")
      x = data["x"]
      self._shape, self._dtype = x.shape, x.dtype
      y = data["y"] if "y" in data.files else None
      self._names = ([str(n) for n in data["label_names"]]
                     if "label_names" in data.files else None)
    if x.ndim == 2:
      self.kind = "vector"
    elif x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
      raise SourceError(f"npz 'x' must be [N,D], [N,H,W] or [N,H,W,1|3], got shape {x.shape}")
    if x.dtype.kind == "f" and self.kind == "image":
      lo, hi = float(x.min()), float(x.max()) if x.size else (0.0, 0.0)
      if lo < 0 or hi > 1:
        raise SourceError(f"npz float images must lie in [0, 1], found [{lo:g}, {hi:g}]")
    elif self.kind == "image" and x.dtype not in (np.uint8, np.uint16):
      raise SourceError(f"npz images must be uint8, uint16 or float in [0,1], got {x.dtype}")
    if x.shape[0] == 0:
      raise SourceError(f"npz file {path!r} holds no examples")
    self._labels = None
    if y is not None:
      if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
        raise SourceError(f"npz 'y' must be integers of shape [{x.shape[0]}], got "
                          f"{y.dtype} {y.shape}")
      self._labels = y.astype(np.int64)
      if self._names is None:
        self._names = [str(i) for i in range(int(y.max()) + 1)]
      elif int(y.max()) >= len(self._names) or int(y.min()) < 0:
        raise SourceError("npz 'y' has labels outside label_names")
    self._x = None  # Loaded lazily in each process.

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_x"] = None
    return state

  def items(self):
    labels = self._labels
    return {"train": [Item(str(i), label=None if labels is None else int(labels[i]), index=i)
                      for i in range(self._shape[0])]}, []

  def label_names(self):
    return self._names

  def fixed_info(self):
    if self.kind == "vector":
      return None
    h, w = self._shape[1:3]
    c = self._shape[3] if len(self._shape) == 4 else 1
    return images.ImageInfo(h, w, c, 16 if self._dtype == np.uint16 else 8)

  def vector_dim(self):
    return self._shape[1]

  def load(self, item):
    if self._x is None:
      with np.load(self.path) as data:
        self._x = data["x"]
    x = self._x[item.index]
    if self.kind == "vector":
      return Example({"vector": x.astype(np.float32)})
    if x.dtype.kind == "f":
      x = np.round(x * 255.0).astype(np.uint8)
    if x.ndim == 2:
      x = x[..., None]
    return Example({"image": x})


class BuiltinSource(Source):
  """`builtin:NAME`: generated examples (see `input.builtin`)."""

  def __init__(self, spec, name, seed=0, image_size=None):
    super().__init__(spec)
    try:
      self.info = builtin.info(name)
    except ValueError as e:
      raise SourceError(str(e)) from None
    self.name = name
    self.kind = self.info.kind
    self.seed = seed
    self.image_size = image_size or self.info.default_image_size

  def items(self):
    out = {}
    for split, n in self.info.splits:
      out[split] = [Item(f"{split}/{i}", index=i) for i in range(n)]
    return out, []

  def label_names(self):
    return list(self.info.label_names)

  def fixed_info(self):
    if self.kind == "vector":
      return None
    return images.ImageInfo(self.image_size, self.image_size, 3, 8)

  def vector_dim(self):
    return 2

  def load(self, item):
    split = item.key.split("/", 1)[0]
    arrays, label = builtin.generate(self.name, split, item.index, self.seed, self.image_size)
    return Example(arrays, label)

  def extra_manifest(self):
    return {"builtin": {"name": self.name, "seed": self.seed, **dict(self.info.extra)}}


class TfdsSource(Source):
  """`tfds:NAME[:SPLIT]` through tensorflow-datasets (downloads on first use).

  Streams each split once, in TFDS order, in the main process.
  """
  streaming = True

  def __init__(self, spec, name, split=None, data_dir=None, download=True):
    super().__init__(spec)
    if not name:
      raise SourceError(f"tfds source needs a dataset name, got {spec!r}")
    self.name, self.split, self.data_dir, self.download = name, split, data_dir, download
    self._builder = None
    self._image_key = self._label_key = None
    self._names = None

  def builder(self):
    if self._builder is None:
      import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
      try:
        b = tfds.builder(self.name, data_dir=self.data_dir)
      except Exception as e:  # pylint: disable=broad-except
        raise SourceError(f"tfds cannot build dataset {self.name!r}: {e}") from None
      if self.download:
        b.download_and_prepare()
      feats = b.info.features
      for key, feat in feats.items():
        kind = type(feat).__name__
        if kind == "Image" and self._image_key is None:
          self._image_key = key
        if kind == "ClassLabel" and self._label_key is None:
          self._label_key = key
          self._names = list(feat.names)
      if self._image_key is None:
        raise SourceError(f"tfds dataset {self.name!r} has no Image feature")
      self._builder = b
    return self._builder

  def splits(self):
    b = self.builder()
    if self.split:
      return [self.split]
    return sorted(b.info.splits) or ["train"]

  def image_shape(self):
    return self.builder().info.features[self._image_key].shape

  def num_examples(self, split):
    b = self.builder()
    if split in b.info.splits and b.info.splits[split].num_examples:
      return b.info.splits[split].num_examples
    return sum(1 for _ in self._iterate(split))  # Unknown size: count once.

  def items(self):
    return {s: [Item(f"{s}/{i}", index=i) for i in range(self.num_examples(s))]
            for s in self.splits()}, []

  def label_names(self):
    self.builder()
    return self._names

  def fixed_info(self):
    h, w, c = self.image_shape()
    if h is None or w is None:
      return None
    return images.ImageInfo(h, w, c or 3, 8)

  def _iterate(self, split):
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    ds = self.builder().as_dataset(split=split, shuffle_files=False)
    return tfds.as_numpy(ds)

  def stream(self, split):
    """Yields the `Example` of each example in order."""
    for ex in self._iterate(split):
      image = np.asarray(ex[self._image_key])
      if image.ndim == 2:
        image = image[..., None]
      yield Example({"image": image}, int(ex[self._label_key]) if self._label_key else None)
