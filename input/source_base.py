"""The base of conversion sources: `Source`, the `Item`s it lists, the
`Example` it loads and the `Skip`s it reports (`input.sources` lists the
sources by scheme)."""

import dataclasses

from input import images
from input.medical import splits


class SourceError(ValueError):
  """A source that cannot be converted at all (bad spec, empty, unreadable)."""


@dataclasses.dataclass(frozen=True)
class Item:
  """One example to convert.

  Attributes:
    key: a stable, unique name (a relative path or an index), kept in the record.
    paths: the files the example is read from (none for generated data).
    label: class index, or None when the source has no labels (or the
      loaded `Example` carries its own).
    index: position in an array or generated sequence (a slice index for
      volumes); None for an item read from its own file.
    series: the series or volume the example belongs to (`--split_by=series`).
    patient: the patient it belongs to (`--split_by=patient`); never a
      patient-identifying value, only a pseudonym or a folder name; "" when
      nothing identifies it (`input.medical.identity`).
    study: the study it belongs to (`--split_by=study`; "": its series).
  """
  key: str
  paths: tuple = ()
  label: int | None = None
  index: int | None = None
  series: str = ""
  patient: str = ""
  study: str = ""


@dataclasses.dataclass(frozen=True)
class Example:
  """One loaded example, as `Source.load` (or a streaming source) gives it.

  Attributes:
    arrays: {feature: native array}: "image", "image_a" and "image_b", or
      "vector" (`manifest.FEATURES_BY_KIND`).
    label: the class index of an example that carries its own (generated and
      TFDS data); None: the item's label, if any.
    windows: {volume id: `input.medical.window.Window`} that mapped the
      example's images from modality units to codes; the manifest records
      each volume's window. Empty for every other source.
    corner: where a 3-D patch was cut from its volumes ([d, h, w] of its
      first voxel; the manifest's `patch_corners`), None for anything else.
  """
  arrays: dict
  label: int | None = None
  windows: dict = dataclasses.field(default_factory=dict)
  corner: tuple | None = None


@dataclasses.dataclass(frozen=True)
class Skip:
  """An input left out before loading (for example an unmatched pair)."""
  key: str
  reason: str


class Source:
  """Base class. Subclasses set `kind` and implement `items` and `load`.

  Attributes:
    kind: image | vector | paired | unpaired.
    streaming: the source yields its examples in order (`stream(split)`), in
      the main process, instead of loading items by index.
    default_bit_depth: the stored bit depth when --bit_depth is not given.
    items_are: what an item is called in the log ("files", "slices").
    patient_ways_out: what a refused `--split_by=patient` suggests when
      examples have no patient (`splits.holdout`).
  """
  kind = "image"
  streaming = False
  default_bit_depth = 8
  items_are = "files"
  patient_ways_out = splits.FOLDER_WAYS_OUT

  def __init__(self, spec):
    self.spec = spec

  def items(self):
    """Returns ({split: [Item, ...]}, [Skip, ...]) in a deterministic order."""
    raise NotImplementedError

  def label_names(self):
    return None

  def finish_split(self, items):
    """The items of each split once `--holdout` has made the split (called
    with the source's own splits when there is none).

    Args:
      items: {split: [Item, ...]}.

    Returns:
      {split: [Item, ...]}; the default: as they are. Paired 3-D patches
      store their held-out split as tiles of whole volumes
      (`input.medical.volume_records`).
    """
    return items

  def load(self, item):
    """Returns the `Example` of one item; raises BadImageError."""
    raise NotImplementedError

  def load_order(self, items):
    """The items of one shard in the order to load them (default: as planned)."""
    return list(items)

  def probe(self, item):
    """Header-only `ImageInfo` of an item, or None when unknown/unreadable."""
    if not item.paths:
      return None
    infos = [images.probe_file(p) for p in item.paths]
    if any(i is None for i in infos):
      return None
    return infos[0]

  def example_spec(self, items, config):
    """The spec every example is brought to, where the source decides it
    (whole volumes: `volume_records.VolumeSpec`); None (the default): an
    `images.ImageSpec` from the flags or probed headers."""
    del items, config
    return None

  def fixed_info(self):
    """An `ImageInfo` that holds for every item without probing, or None."""
    return None

  def slice_stacks(self):
    """{feature: N} of the features loaded as stacks of N gray slices (the
    2.5-D context of paired volumes), stored as N channels at the image
    spec's size and depth; {} (the default): every feature has the spec's
    channels."""
    return {}

  def extra_manifest(self):
    return {}

  def secret_ids(self):
    """{group name: the identity it was made from} for the split order
    (`input.medical.splits`), where a name is a salted pseudonym; never written."""
    return {}
