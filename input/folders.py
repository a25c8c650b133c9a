"""Sources of image files on disk: `folder:DIR`, `paired:DIR_A,DIR_B` (or
`paired:DIR` of A|B images) and `unpaired:DIR_A,DIR_B` (`input.sources` lists
every scheme)."""

import collections
import os

from input import images
from input.medical import identity
from input.source_base import Example, Item, Skip, Source, SourceError


def _require_dir(path, spec):
  if not path:
    raise SourceError(f"source {spec!r} names no directory")
  if not os.path.isdir(path):
    raise SourceError(f"source directory {path!r} does not exist (from {spec!r})")
  return os.path.abspath(path)


def group_of(rel):
  """The patient and series of an image file at relative path `rel` (below a
  class folder, if any): the BIDS `sub-` entity names the patient; otherwise
  the file's folder is both (an image folder source is documented as one
  folder per patient). Files directly in the root have neither ("")."""
  folder = "/".join(rel.replace(os.sep, "/").split("/")[:-1])
  subject = identity.bids_subject(rel)
  if subject:
    return subject, folder or identity.strip_extensions(os.path.basename(rel))
  return folder, folder


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

