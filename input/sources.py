"""Conversion sources: where examples come from, parsed from `KIND:ARG` specs.

A source lists its examples as lightweight, picklable `Item`s per split, and
loads one item into numpy arrays. Loading happens in worker processes, so a
source must pickle (it holds paths and options, never open files). The one
exception is `tfds:`, which streams its split in order in the main process.

| spec                     | kind     | splits          | labels                  |
|--------------------------|----------|-----------------|-------------------------|
| `folder:DIR`             | image    | train           | first-level subfolder   |
| `tfds:NAME[:SPLIT]`      | image    | the TFDS splits | the first ClassLabel    |
| `npz:FILE`               | image or vector (x of rank 2) | train | `y`        |
| `paired:DIR_A,DIR_B`     | paired   | train           | none                    |
| `paired:DIR`             | paired   | train           | none (each image is A|B) |
| `unpaired:DIR_A,DIR_B`   | unpaired | trainA, trainB  | none                    |
| `builtin:NAME`           | see `input.builtin` |      |                         |
| `dicom:DIR`              | image    | train           | none (see `input.medical`) |
| `nifti:FILE_OR_DIR`      | image    | train           | none                    |
| `paired:dicom:A,B`, `paired:nifti:A,B` | paired | train | none                 |
| `unpaired:dicom:A,B`, `unpaired:nifti:A,B` | unpaired | trainA, trainB | none   |
"""

import collections
import os

import numpy as np

from input import builtin
from input import images
from input.medical import source as medical
from input.source_base import Example, Item, Skip, Source, SourceError, group_of

SOURCE_KINDS = ("folder", "tfds", "npz", "paired", "unpaired", "builtin", "dicom", "nifti")


def _require_dir(path, spec):
  if not path:
    raise SourceError(f"source {spec!r} names no directory")
  if not os.path.isdir(path):
    raise SourceError(f"source directory {path!r} does not exist (from {spec!r})")
  return os.path.abspath(path)


class FolderSource(Source):
  """`folder:DIR`: images found recursively; labels from first-level subfolders.

  Args:
    labels: `auto` (subfolder names when every image sits in a first-level
      subfolder, none when every image sits directly in DIR, an error when
      mixed), `subfolder` or `none`.
  """

  def __init__(self, spec, root, labels="auto"):
    super().__init__(spec)
    self.root = _require_dir(root, spec)
    if labels not in ("auto", "subfolder", "none"):
      raise SourceError(f"labels must be auto, subfolder or none, got {labels!r}")
    self.labels_mode = labels
    self._names = None
    self.ignored_files = 0

  def items(self):
    files, self.ignored_files = images.list_image_files(self.root)
    if not files:
      raise SourceError(
          f"source folder {self.root!r} holds no images "
          f"(looked recursively for {', '.join(images.IMAGE_EXTENSIONS)})")
    top = [f for f in files if os.sep not in f]
    nested = [f for f in files if os.sep in f]
    use_labels = self.labels_mode == "subfolder" or (self.labels_mode == "auto" and not top)
    if self.labels_mode == "auto" and top and nested:
      raise SourceError(
          f"source folder {self.root!r} has images both directly in it (e.g. {top[0]!r}) "
          f"and in subfolders (e.g. {nested[0]!r}); put every image in a class subfolder, "
          "or pass --labels=none to ignore the folder structure")
    if use_labels and top:
      raise SourceError(
          f"--labels=subfolder but {top[0]!r} is not inside a class subfolder of {self.root!r}")
    out = []
    if use_labels:
      self._names = sorted({f.split(os.sep, 1)[0] for f in files})
      ids = {n: i for i, n in enumerate(self._names)}
    for f in files:
      label, rel = None, f
      if use_labels:
        cls, rel = f.split(os.sep, 1)
        label = ids[cls]
      patient, series = group_of(rel)
      out.append(Item(f, (os.path.join(self.root, f),), label, patient=patient, series=series))
    return {"train": out}, []

  def label_names(self):
    return self._names

  def load(self, item):
    return Example({"image": images.read_file(item.paths[0])})

  def source_dirs(self):
    return (self.root,)

  def extra_manifest(self):
    return {"ignored_non_image_files": self.ignored_files}


class PairedSource(Source):
  """`paired:DIR_A,DIR_B` (matched by relative path without extension) or
  `paired:DIR` (each image is A|B side by side, as in the Pix2Pix datasets)."""
  kind = "paired"

  def __init__(self, spec, dirs):
    super().__init__(spec)
    if len(dirs) not in (1, 2):
      raise SourceError(f"paired source takes DIR_A,DIR_B or one DIR of A|B images, got {spec!r}")
    self.dirs = tuple(_require_dir(d, spec) for d in dirs)

  def items(self):
    if len(self.dirs) == 1:
      files, _ = images.list_image_files(self.dirs[0])
      if not files:
        raise SourceError(f"source folder {self.dirs[0]!r} holds no images")
      return {"train": [Item(f, (os.path.join(self.dirs[0], f),)) for f in files]}, []
    lists = [images.list_image_files(d)[0] for d in self.dirs]
    for d, files in zip(self.dirs, lists):
      if not files:
        raise SourceError(f"source folder {d!r} holds no images")
    stems = [collections.defaultdict(list) for _ in lists]
    for table, files in zip(stems, lists):
      for f in files:
        table[os.path.splitext(f)[0]].append(f)
    out, skipped = [], []
    for side, (table, other) in enumerate([(stems[0], stems[1]), (stems[1], stems[0])]):
      for stem, fs in sorted(table.items()):
        if stem not in other:
          for f in fs:
            skipped.append(Skip(f"{'AB'[side]}/{f}", f"no file named {stem}.* in "
                                f"{self.dirs[1 - side]}"))
    for stem in sorted(set(stems[0]) & set(stems[1])):
      fa, fb = stems[0][stem], stems[1][stem]
      if len(fa) > 1 or len(fb) > 1:
        for f in fa + fb:
          skipped.append(Skip(f, f"ambiguous pair: several files named {stem}.*"))
        continue
      out.append(Item(stem, (os.path.join(self.dirs[0], fa[0]),
                             os.path.join(self.dirs[1], fb[0]))))
    if not out:
      raise SourceError(f"no file names match between {self.dirs[0]!r} and {self.dirs[1]!r}")
    return {"train": out}, skipped

  def load(self, item):
    if len(item.paths) == 1:
      a, b = images.split_side_by_side(images.read_file(item.paths[0]))
    else:
      a, b = images.read_file(item.paths[0]), images.read_file(item.paths[1])
    return Example({"image_a": a, "image_b": b})

  def probe(self, item):
    infos = [images.probe_file(p) for p in item.paths]
    if any(i is None for i in infos):
      return None
    if len(infos) == 1:
      i = infos[0]
      return images.ImageInfo(i.height, i.width // 2, i.channels, i.bit_depth)
    a, b = infos
    if (a.height, a.width) != (b.height, b.width):
      return a  # B is resized to A's spec.
    # One spec serves both sides: the larger channel count and depth.
    return images.ImageInfo(a.height, a.width, max(a.channels, b.channels),
                            max(a.bit_depth, b.bit_depth))

  def source_dirs(self):
    return self.dirs


class UnpairedSource(Source):
  """`unpaired:DIR_A,DIR_B`: two domains, written as splits trainA and trainB."""
  kind = "unpaired"

  def __init__(self, spec, dirs):
    super().__init__(spec)
    if len(dirs) != 2:
      raise SourceError(f"unpaired source takes DIR_A,DIR_B, got {spec!r}")
    self.dirs = tuple(_require_dir(d, spec) for d in dirs)

  def items(self):
    out = {}
    for split, d in zip(("trainA", "trainB"), self.dirs):
      files, _ = images.list_image_files(d)
      if not files:
        raise SourceError(f"source folder {d!r} holds no images")
      out[split] = [Item(f, (os.path.join(d, f),)) for f in files]
    return out, []

  def load(self, item):
    return Example({"image": images.read_file(item.paths[0])})

  def source_dirs(self):
    return self.dirs


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


def parse_source(spec, *, labels="auto", seed=0, image_size=None, tfds_data_dir=None,
                 medical_settings=None):
  """Builds a `Source` from a `KIND:ARG` spec.

  Args:
    medical_settings: for dicom and nifti sources, what `MedicalOptions.parse`
      reads (a `ConvertConfig`).

  Raises:
    SourceError: unknown kind (the message lists the valid ones) or a bad
      argument.
    input.medical.volume.MissingExtraError: a dicom or nifti source without the
      `[medical]` extra installed.
  """
  kind, sep, arg = spec.partition(":")
  if not sep or kind not in SOURCE_KINDS:
    raise SourceError(f"unknown source {spec!r}; expected KIND:ARG with KIND one of "
                      f"{', '.join(SOURCE_KINDS)}")
  fmt, roots, mode = None, None, "image"
  if kind in medical.FORMATS:
    fmt, roots = kind, [arg] if arg else []
  elif kind in ("paired", "unpaired"):
    fmt, roots = medical.split_format(arg)
    mode = kind
  if fmt:
    reader = medical.READERS[fmt]
    return medical.MedicalSource(spec, reader, roots, mode,
                                 medical.MedicalOptions.parse(medical_settings, reader))
  if kind == "folder":
    return FolderSource(spec, arg, labels)
  if kind == "paired":
    return PairedSource(spec, [d for d in arg.split(",") if d])
  if kind == "unpaired":
    return UnpairedSource(spec, [d for d in arg.split(",") if d])
  if kind == "npz":
    return NpzSource(spec, arg)
  if kind == "builtin":
    return BuiltinSource(spec, arg, seed=seed, image_size=image_size)
  name, _, split = arg.partition(":")
  return TfdsSource(spec, name, split or None, data_dir=tfds_data_dir)
