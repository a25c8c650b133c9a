"""DICOM and NIfTI conversion sources: `dicom:DIR`, `nifti:PATH`, and
`paired:`/`unpaired:` with `dicom:` or `nifti:` before their two folders.

Each series (DICOM) or 3-D volume (NIfTI) becomes a stack of 2-D slices, one
example each, keyed `<volume id>/<slice>`. A slice is windowed (see
`input.medical.window`) onto 16-bit codes; the shard writer then brings it to the
output spec (so `--bit_depth=8` keeps the top 8 bits of the same window).
Each volume's window travels with its slices into the shard sidecars and the
manifest (`series.<id>.window`), so that generated or translated images can
be mapped back to modality units.

Paired volumes are matched by name (a DICOM series' folder relative to its
root; a NIfTI file's BIDS entities without the suffix, `sub-01_ses-2`, else
its relative name without extensions), then slice by slice; a pair whose
slice counts or in-plane shapes differ is skipped and listed. With
`--context_slices=K`, a pair's source slice (`image_a`) is stored with its K
neighbours on either side as 2K + 1 channels (`volume.context_indices`: in
slice order, the end slices repeated), its target (`image_b`) as its one
slice. Who the patient of a volume is follows `input.medical.identity`.
"""

import collections
import dataclasses
import os

from absl import logging
import numpy as np

from input import images
from input.medical import identity
from input.medical import nifti
from input.medical import pseudonyms
from input.medical import splits
from input.medical import volume as base
from input.medical import window as window_lib
from input.source_base import Example, Item, Skip, Source, SourceError

SLICE_AXES = tuple(nifti.AXES)
# The settings that a mode of source reads beyond its reader's
# (`input.sources` refuses them for the other sources).
MODE_READS = {"paired": ("context_slices", "window_b", "patch_size", "patches_per_volume"),
              "unpaired": ("window_b",)}
# ... and that every mode reads (`input.medical.volume_records`: --volumes).
VOLUME_READS = ("volumes", "volume_size", "spacing")


@dataclasses.dataclass(frozen=True)
class MedicalOptions:
  """The conversion settings that only medical sources read, checked, with
  --window parsed once (`parse`)."""
  window: window_lib.WindowSpec
  slice_axis: str
  volume_index: str
  patient_from: str | None
  context_slices: int = 0  # Paired sources: K, the source's 2K + 1 channels.
  window_b: window_lib.WindowSpec | None = None  # The B side's, where it has its own.

  @classmethod
  def parse(cls, settings, reader):
    """The options of a `reader` source from `settings` (anything with the
    attributes `window`, `window_b`, `slice_axis`, `volume_index`,
    `patient_from` and `context_slices`: a `ConvertConfig`).

    Raises:
      SourceError: a bad value, named.
    """
    try:
      window = window_lib.parse(settings.window)
      window_b = window_lib.parse(settings.window_b) if settings.window_b else None
      identity.validate_rule(settings.patient_from, reader.name)
    except (window_lib.WindowError, identity.IdentityError) as e:
      raise SourceError(str(e)) from None
    if settings.slice_axis not in SLICE_AXES:
      raise SourceError(f"--slice_axis must be one of {', '.join(SLICE_AXES)}, "
                        f"got {settings.slice_axis!r}")
    if settings.volume_index != "all" and not settings.volume_index.isdigit():
      raise SourceError(f"--volume_index must be an index >= 0 or 'all', "
                        f"got {settings.volume_index!r}")
    return cls(window, settings.slice_axis, settings.volume_index, settings.patient_from,
               settings.context_slices, window_b)

  def spec_of(self, side):
    """The window spec of side "A", "B" or "" (one root)."""
    return self.window_b if side == "B" and self.window_b is not None else self.window


def build(spec, arg, settings, pseudonym_salt, *, reader, mode, source_cls=None):
  """A `MedicalSource` from its spec (`input.sources` registers this).

  Args:
    spec: the whole spec, for messages.
    arg: what follows the scheme: one path (mode "image") or two, A,B.
    settings: what `MedicalOptions.parse` reads (a `ConvertConfig`).
    pseudonym_salt: returns the salt of the pseudonyms; called once the spec
      and settings are known to be good (the conversion makes it then).
    reader: the format's `volume.Reader`.
    mode: "image", "paired" or "unpaired".
    source_cls: makes the source from `MedicalSource`'s arguments
      (default `MedicalSource`: slices; `volume_records` stores volumes).

  Raises:
    SourceError: a bad spec or setting, or the `[medical]` extra missing.
  """
  options = MedicalOptions.parse(settings, reader)
  try:
    base.require(reader.module, f"{reader.name}:")
  except base.MissingExtraError as e:
    raise SourceError(str(e)) from None
  roots = ([arg] if arg else []) if mode == "image" else [p for p in arg.split(",") if p]
  want = 1 if mode == "image" else 2
  if len(roots) != want:
    raise SourceError(f"{spec!r}: a {mode} {reader.name} source takes "
                      f"{'one path' if want == 1 else 'two paths A,B'}")
  for r in roots:
    reader.check_root(r, spec)
  return (source_cls or MedicalSource)(spec, reader, roots, mode, options, pseudonym_salt())


class MedicalSource(Source):
  """Slices of DICOM series or NIfTI volumes; made by `build`.

  Args:
    spec: the source spec, for messages.
    reader: the format's `volume.Reader` (`dicom.READER`, `nifti.READER`).
    roots: one path (mode "image") or two (modes "paired" and "unpaired").
    mode: "image", "paired" or "unpaired".
    options: `MedicalOptions`.
    salt: the secret of the pseudonyms that name series, studies and
      patients (`pseudonyms`); kept out of the manifest and of workers.
  """
  default_bit_depth = 16  # The window maps onto all 65536 levels.
  items_are = "slices"
  patient_ways_out = splits.MEDICAL_WAYS_OUT

  def __init__(self, spec, reader, roots, mode, options, salt):
    super().__init__(spec)
    self.reader, self.roots, self.kind, self.options = reader, tuple(roots), mode, options
    self._salt = salt
    self._volumes = {}  # id -> Volume
    self._pairs = {}  # pair id -> (id A, id B)
    self._table = {}
    self._non_images, self._ignored = [], 0
    self._windows = {}  # Per process: id -> Window.
    self._recent = collections.OrderedDict()  # Per process: (id, index) -> codes.
    self._secret_ids = {}  # Never written, never pickled (`secret_ids`).

  def _scan(self, root, side, pseudonym):
    found = self.reader.scan(root, pseudonym, self.options)
    self._non_images += [{**n, "key": f"{side}{n['key']}"} for n in found.non_images]
    self._ignored += found.ignored
    vols = found.volumes
    if side:  # Two roots: ids must not collide (a NIfTI id is its file name).
      vols = [dataclasses.replace(v, id=f"{side}{v.id}") for v in vols]
    return vols, [Skip(f"{side}{s['key']}", s["reason"]) for s in found.skipped]

  def items(self):
    pseudonym = pseudonyms.Pseudonym(self._salt)
    sides = ("",) if self.kind == "image" else ("A/", "B/")
    scanned, skips = [], []
    for root, side in zip(self.roots, sides):
      vols, skipped = self._scan(root, side, pseudonym)
      skips += skipped
      if not vols:
        raise SourceError(f"no readable {self.reader.label} image volume in {root!r}" + (
            f" ({len(skipped)} files skipped, e.g. {skipped[0].key}: {skipped[0].reason})"
            if skipped else ""))
      for v in vols:
        self._volumes[v.id] = v
        self._table[v.id] = self._describe(v, side.rstrip("/"))
        self._secret_ids.update(v.secret_ids)
      scanned.append(vols)
    methods = collections.Counter(v.identified_by for vols in scanned for v in vols)
    logging.info("%s", identity.count_line(self.reader.volumes_are, methods))
    if self.kind == "image":
      out = {"train": self._volume_items(scanned[0])}
    elif self.kind == "unpaired":
      out = {"trainA": self._volume_items(scanned[0]),
             "trainB": self._volume_items(scanned[1])}
    else:
      out, pair_skips = self._pair(scanned, pseudonym)
      skips += pair_skips
      if not out["train"]:
        raise SourceError(f"no volume names match between {self.roots[0]!r} and "
                          f"{self.roots[1]!r}")
    return out, skips

  def secret_ids(self):
    return dict(self._secret_ids)

  def _describe(self, v, side):
    entry = {"modality": v.modality, "num_slices": v.num_slices, "shape": list(v.shape),
             "patient": v.patient, "study": v.study, "patient_from": v.identified_by,
             **{k: val for k, val in v.info.items()}}
    if side:
      entry["side"] = side
    return entry

  def _volume_items(self, vols):
    """The items of the volumes of one root: one per slice, keyed `<id>/<slice>`."""
    return [Item(f"{v.id}/{k:04d}", index=k, series=v.id, patient=v.patient, study=v.study)
            for v in vols for k in range(v.num_slices)]

  def _pair_items(self, pid, a, b):
    """The items of the pair `pid` of volumes `a` and `b`: one per slice."""
    return [Item(f"{pid}/{k:04d}", index=k, series=pid, patient=a.patient or b.patient,
                 study=a.study or b.study)
            for k in range(a.num_slices)]

  def _pair(self, scanned, pseudonym):
    by_name = [{}, {}]
    skips = []
    for side, vols in enumerate(scanned):
      names = {}
      for v in vols:
        names.setdefault(v.match, []).append(v)
      for name, vs in names.items():
        if not name or len(vs) > 1:
          for v in vs:
            skips.append(Skip(v.id, "ambiguous pair: several series in one "
                              "folder" if name else "series spread over several folders"))
          continue
        by_name[side][name] = vs[0]
    out = []
    for side in (0, 1):
      for name, v in sorted(by_name[side].items()):
        if name not in by_name[1 - side]:
          skips.append(Skip(v.id, f"no matching volume in {'AB'[1 - side]} (matched by "
                            f"{self.reader.matched_by})"))
    for name in sorted(set(by_name[0]) & set(by_name[1])):
      a, b = by_name[0][name], by_name[1][name]
      pid = pseudonym("pair", name) if self.reader.private_names else name
      if a.num_slices != b.num_slices or a.shape != b.shape:
        skips.append(Skip(pid, f"pair differs: A has {a.num_slices} slices of "
                          f"{a.shape[0]}x{a.shape[1]}, B {b.num_slices} of "
                          f"{b.shape[0]}x{b.shape[1]}"))
        continue
      self._pairs[pid] = (a.id, b.id)
      self._secret_ids[pid] = a.secret_ids.get(a.id, pid)
      out += self._pair_items(pid, a, b)
    return {"train": out}, skips

  def probe(self, item):
    vid = self._pairs[item.series][0] if self.kind == "paired" else item.series
    v = self._volumes[vid]
    channels = 3 if v.info.get("samples_per_pixel", 1) == 3 else 1
    return images.ImageInfo(v.shape[0], v.shape[1], channels, 16)

  def load_order(self, items):
    return sorted(items, key=lambda item: (item.series, item.index))

  def _relative(self, ref):
    path = os.path.abspath(ref.path)
    for root in self.roots:
      root = os.path.abspath(root)
      if os.path.isdir(root) and path.startswith(root + os.sep):
        return os.path.relpath(path, root)
    return os.path.basename(path)

  def _window(self, v):
    if v.id not in self._windows:
      spec = self.options.spec_of(self._table[v.id].get("side", ""))
      values = self.reader.volume_values(v) if spec.needs_values(v.modality) else None
      self._windows[v.id] = window_lib.resolve(spec, values, v.modality)
    return self._windows[v.id]

  def _load_slice(self, vid, index, windows):
    v = self._volumes[vid]
    try:
      values = self.reader.slice_values(v.refs[index])
    except images.BadImageError as e:
      raise images.BadImageError(f"{e} (file {self._relative(v.refs[index])})") from None
    if values.ndim == 3:  # Colour: no modality units, no window.
      return values
    w = self._window(v)
    windows[vid] = w
    return w.to_codes(values, 16)[..., None]

  def _load_context(self, vid, index, windows):
    """Slice `index` of volume `vid` with its context: [H, W, 2K + 1] codes.

    Slices are loaded in order (`load_order`), so that neighbours come from
    the last 2K + 2 slices decoded rather than from their files again.
    """
    k = self.options.context_slices
    v = self._volumes[vid]
    planes = []
    for i in base.context_indices(index, v.num_slices, k):
      key = (vid, i)
      if key in self._recent:
        self._recent.move_to_end(key)
      else:
        self._recent[key] = self._load_slice(vid, i, windows)
        while len(self._recent) > 2 * k + 2:
          self._recent.popitem(last=False)
      if self._recent[key].shape[-1] != 1:
        raise images.BadImageError("a colour series cannot be stacked as --context_slices "
                                   "channels")
      planes.append(self._recent[key])
    windows[vid] = self._windows[vid]
    return np.concatenate(planes, axis=-1)

  def load(self, item):
    windows = {}
    if self.kind == "paired":
      a, b = self._pairs[item.series]
      source = (self._load_context(a, item.index, windows) if self.options.context_slices
                else self._load_slice(a, item.index, windows))
      arrays = {"image_a": source, "image_b": self._load_slice(b, item.index, windows)}
    else:
      arrays = {"image": self._load_slice(item.series, item.index, windows)}
    return Example(arrays, windows=windows)

  def slice_stacks(self):
    k = self.options.context_slices
    return {"image_a": 2 * k + 1} if self.kind == "paired" and k else {}

  def extra_manifest(self):
    o = self.options
    medical = {"format": self.reader.name, "window": o.window.text,
               "slice_axis": o.slice_axis, "volume_index": o.volume_index,
               "patient_from": o.patient_from}
    if o.context_slices:  # Absent means 0: data converted without it stays as it was.
      medical["context_slices"] = o.context_slices
    if o.window_b is not None:  # Absent: --window windowed both sides.
      medical["window_b"] = o.window_b.text
    suffixes = self._bids_suffixes()
    if suffixes:  # Absent: no side of BIDS-named files with one suffix.
      medical["bids_suffix"] = suffixes
    extra = {"medical": medical, "series": self._table}
    if self._pairs:
      extra["pairs"] = {pid: {"A": a, "B": b} for pid, (a, b) in sorted(self._pairs.items())}
    extra.update(self.reader.manifest(self._non_images, self._ignored))
    return extra

  def _bids_suffixes(self):
    """{domain ("image", "A" or "B"): the BIDS suffix} of each side whose
    files all have the same one (NIfTI: `sub-01_T2w.nii.gz` -> `T2w`), so that
    `pipeline.translate` names its outputs after the target contrast."""
    found = collections.defaultdict(set)
    for entry in self._table.values():
      if "file" in entry:
        found[entry.get("side", "image")].add(identity.bids_suffix(entry["file"]))
    return {side: names.pop() for side, names in sorted(found.items())
            if len(names) == 1 and "" not in names}

  def __getstate__(self):
    # Workers get no raw identities: they only load slices.
    state = dict(self.__dict__)
    del state["_salt"]  # Workers name nothing.
    state["_windows"] = {}
    state["_recent"] = collections.OrderedDict()
    state["_secret_ids"] = {}
    state["_volumes"] = {k: dataclasses.replace(v, secret_ids={})
                         for k, v in self._volumes.items()}
    return state
