"""Whole volumes as records: `pipeline.convert --volumes` of `dicom:` and
`nifti:` sources (and their `paired:` and `unpaired:` forms).

Each series or volume becomes one example, a 16-bit [D, H, W, 1] array
(raw encoding): its slices, windowed onto 16-bit codes exactly as slice
mode windows them (`input.medical.window`), stacked in slice order. D runs
along `--slice_axis` (NIfTI) or the series' slice order (DICOM), and H, W
are the rows and columns of the slices, so that the slices of slice mode
stacked are the volume. On the way (`input.medical.resample`, one Lanczos
kernel applied separably):

1. `--spacing=MM` resamples the volume to isotropic MM voxels;
2. `--volume_size=D,H,W` (or N) fits it to that size under `--resize`
   (crop, pad or stretch, as slices); without it every volume keeps its
   size, which they must then share;
3. paired sources with `--patch_size=N --patches_per_volume=K` store K
   paired N^3 patches per pair instead of the pair: the same positions in A
   and B, centred on voxels of the B (target) side's body mask
   (`input.medical.mask.auto_mask` of its codes), drawn from `--seed` and the
   pair's id (`patch_corners`). The held-out split (`--holdout`) stores
   each held-out pair as tiles instead (`input.medical.tiles`: N^3 tiles
   every N voxels, the last flush with the border), so that
   `pipeline.evaluate` can reassemble and score whole held-out volumes.

Keys: a volume's id (`<id>`, a pair's pseudonym for paired data),
`<pair id>/p<k>` for patch k, or `<pair id>/t<k>` for tile k of a held-out
pair; the items carry the volume's patient and study, so `--holdout` keeps
whole patients on one side as for slices. The manifest's `medical` record
adds `volumes`, `volume_size`, `spacing`,
`voxel_spacing` ({domain: [d, h, w] mm of the stored voxels}, each domain's
median where its volumes differ; a domain none of whose volumes knows its
spacing is left out, and the log says how many lack one) and, for patches,
`patch_size` and `patches_per_volume` (and `test_split: "tiles"` when a
held-out split was tiled); each series entry its
`source_spacing`, `resampled_spacing` and `voxel_spacing` (None where
unknown), and the manifest's `patch_corners` where each patch was cut.
"""

import collections
import dataclasses
import functools
import hashlib

from absl import logging
import numpy as np

from input import images
from input.medical import mask as mask_lib
from input.medical import resample
from input.medical import source as medical
from input.medical import tiles as tiles_lib
from input.medical import window as window_lib
from input.source_base import Example, Item, SourceError


def volume_size(values):
  """`--volume_size` as (D, H, W): three sizes, or one N for N^3; None when empty."""
  values = tuple(int(v) for v in values or ())
  return None if not values else (values * 3 if len(values) == 1 else values)


def config_checks(config):
  """(ok, message) pairs that `ConvertConfig.validate` checks, for the
  settings of whole volumes and the ones they cannot go with."""
  size = tuple(config.volume_size or ())
  volumes = config.volumes
  return [
      (volumes or not size, "--volume_size applies to --volumes; add --volumes, or give "
                            "--image_size for slices"),
      (volumes or config.spacing is None, "--spacing applies to --volumes; add --volumes"),
      (volumes or config.patch_size is None, "--patch_size applies to --volumes (paired 3-D "
                                             "patches); add --volumes"),
      (len(size) in (0, 1, 3) and all(s >= 1 for s in size),
       f"--volume_size takes D,H,W or one N (N^3), each >= 1, got "
       f"{','.join(str(s) for s in size)!r}"),
      (config.spacing is None or config.spacing > 0,
       f"--spacing must be > 0 mm, got {config.spacing}"),
      (config.patch_size is None or config.patch_size >= 1,
       f"--patch_size must be >= 1, got {config.patch_size}"),
      (config.patches_per_volume is None or config.patches_per_volume >= 1,
       f"--patches_per_volume must be >= 1, got {config.patches_per_volume}"),
      ((config.patch_size is None) == (config.patches_per_volume is None),
       "--patch_size=N and --patches_per_volume=K go together (K paired N^3 patches per "
       "volume); give both, or neither for whole volumes"),
      (not size or config.patch_size is None or config.patch_size <= min(volume_size(size)),
       f"--patch_size={config.patch_size} does not fit in --volume_size="
       f"{','.join(str(s) for s in size)}"),
      (not (volumes and config.context_slices),
       f"--context_slices={config.context_slices} stacks 2-D slices with their neighbours; "
       "--volumes stores whole volumes, which hold them already: drop one of the two"),
      (not (volumes and config.image_size), "--image_size sizes slices; with --volumes give "
                                            "--volume_size=D,H,W (or N)"),
      (not (volumes and config.channels == 3), "--volumes stores gray volumes (1 channel); "
                                               "drop --channels=3"),
      (not (volumes and config.bit_depth == 8), "--volumes stores 16-bit codes; drop "
                                                "--bit_depth=8"),
      (not (volumes and config.encoding == "png"), "--volumes stores [D, H, W, 1] arrays, "
                                                   "which PNG cannot hold; use --encoding=raw"),
  ]


@dataclasses.dataclass(frozen=True)
class VolumeSpec:
  """The shape every volume (or patch) record has: 16-bit [D, H, W, 1]."""
  depth: int
  height: int
  width: int
  channels: int = 1
  bit_depth: int = 16

  @property
  def shape(self):
    return (self.depth, self.height, self.width, self.channels)

  @property
  def dtype(self):
    return np.uint16

  def feature_shape(self, channels=None):
    del channels  # No stacks: the depth is the volume's own.
    return list(self.shape)

  def fit(self, arr, stack=False):
    """Checks an array that the source brought to this spec (it resamples
    volumes itself: their spacing is the source's to know)."""
    del stack
    if tuple(arr.shape) != self.shape or arr.dtype != np.uint16:
      raise images.BadImageError(f"volume of shape {arr.shape} ({arr.dtype}), expected "
                                 f"{'x'.join(str(s) for s in self.shape)} uint16")
    return arr

  def describe(self):
    return (f"{self.depth}x{self.height}x{self.width}x{self.channels} (DxHxWxC) "
            f"{self.bit_depth}-bit")


@dataclasses.dataclass(frozen=True)
class VolumeOptions:
  """The settings of whole volumes, checked (`config_checks`) and parsed."""
  size: tuple | None  # (D, H, W), or None: each volume's own.
  spacing: float | None
  patch_size: int | None
  patches_per_volume: int | None
  seed: int
  resize: str

  @classmethod
  def parse(cls, settings):
    return cls(volume_size(settings.volume_size), settings.spacing, settings.patch_size,
               settings.patches_per_volume, settings.seed, settings.resize)


def patch_corners(mask, patch_size, count, seed, volume_id):
  """Where the patches of one volume start: `count` corners [d, h, w] of
  patch_size^3 patches inside the volume, each centred (voxel N // 2 of the
  patch) on a voxel of `mask`, drawn without replacement where the mask has
  enough such voxels, from a generator seeded by `seed` and `volume_id`.

  Args:
    mask: bool [D, H, W].
    patch_size: N.
    count: K.
    seed: `--seed`.
    volume_id: the id the volume is keyed by.

  Returns:
    int64 [K, 3].

  Raises:
    images.BadImageError: no voxel of the mask has a whole patch around it.
  """
  n, half = patch_size, patch_size // 2
  valid = np.zeros_like(mask, dtype=bool)
  d, h, w = mask.shape
  valid[half:d - n + half + 1, half:h - n + half + 1, half:w - n + half + 1] = True
  centres = np.argwhere(mask & valid)
  if not len(centres):
    raise images.BadImageError(f"no voxel of the B side's body mask ({int(mask.sum())} "
                               f"voxels) has a whole {n}^3 patch around it in a "
                               f"{d}x{h}x{w} volume")
  digest = hashlib.sha256(f"{seed}\0{volume_id}".encode()).digest()
  rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
  pick = rng.choice(len(centres), size=count, replace=len(centres) < count)
  return centres[np.sort(pick)] - half


def _summary(domain, spacings, unknown):
  """One domain's stored voxel spacing: the median of its volumes'."""
  if unknown:
    logging.info("Voxel spacing of domain %s: %d of %d volumes have none", domain, unknown,
                 unknown + len(spacings))
  if not spacings:
    return None
  values = np.array(spacings, np.float64)
  out = [float(v) for v in np.median(values, axis=0)]
  if np.any(values.max(axis=0) - values.min(axis=0) > 1e-6 * values.max(axis=0)):
    logging.info("Voxel spacing of domain %s: its %d volumes differ (%s to %s mm); the "
                 "manifest gives the median, %s mm", domain, len(values),
                 values.min(axis=0).round(4).tolist(), values.max(axis=0).round(4).tolist(),
                 np.round(out, 4).tolist())
  return out


class VolumeSource(medical.MedicalSource):
  """Whole series or volumes (or paired 3-D patches) of a medical source;
  made by `build`. See the module docstring."""
  items_are = "volumes"

  def __init__(self, spec, reader, roots, mode, options, salt, volume_options):
    super().__init__(spec, reader, roots, mode, options, salt)
    self.volume_options = volume_options
    self._geometry = {}  # id -> resample.Geometry
    self._fitted = collections.OrderedDict()  # Per process: id -> uint16 [D, H, W].
    self._corners = {}  # Per process: pair id -> [K, 3].
    self._tiles = {}  # Held-out pair id -> [T, 3] tile corners (`finish_split`).

  # --- Listing: one item per volume, or per patch. ---

  def _volume_items(self, vols):
    for v in vols:
      self._plan_geometry(v)
    return [Item(v.id, series=v.id, patient=v.patient, study=v.study) for v in vols]

  def _pair_items(self, pid, a, b):
    self._plan_geometry(a)
    self._plan_geometry(b)
    o = self.volume_options
    shapes = self._geometry[a.id].shape, self._geometry[b.id].shape
    if shapes[0] != shapes[1]:  # --spacing of sides with different spacings.
      raise SourceError(f"pair {pid!r}: A is stored as {'x'.join(map(str, shapes[0]))} and B "
                        f"as {'x'.join(map(str, shapes[1]))} voxels (DxHxW), so their voxels "
                        "would not line up; give --volume_size=D,H,W")
    common = dict(series=pid, patient=a.patient or b.patient, study=a.study or b.study)
    if o.patch_size is None:
      return [Item(pid, **common)]
    return [Item(f"{pid}/p{k:03d}", index=k, **common) for k in range(o.patches_per_volume)]

  def finish_split(self, items):
    """Paired 3-D patches: the held-out split's pairs as tiles (see the
    module docstring); everything else as it is.

    Raises:
      SourceError: a pair with patches on both sides of the split
        (`--split_by=file` holds out single patches).
    """
    o = self.volume_options
    if o.patch_size is None or "test" not in items:
      return items
    trained = {it.series for split, its in items.items() if split != "test" for it in its}
    tiled = []
    for it in items["test"]:
      if it.series in self._tiles:
        continue
      if it.series in trained:
        raise SourceError(f"pair {it.series!r} has patches in both train and test: the "
                          "held-out split of --patch_size is stored as tiles of whole volumes, "
                          "so hold out whole pairs with --split_by=patient|study|series")
      shape = self._geometry[self._pairs[it.series][1]].shape
      self._tiles[it.series] = tiles_lib.tile_corners(shape, o.patch_size)
      tiled += [Item(f"{it.series}/t{k:04d}", index=k, series=it.series, patient=it.patient,
                     study=it.study) for k in range(len(self._tiles[it.series]))]
    return {**items, "test": tiled}

  def _plan_geometry(self, v):
    o = self.volume_options
    spacing = self.reader.voxel_spacing(v)
    try:
      geom = resample.geometry((v.num_slices, *v.shape), spacing, o.spacing, o.size, o.resize)
    except ValueError as e:
      raise SourceError(f"volume {v.id!r}: {e}") from None
    self._geometry[v.id] = geom
    self._table[v.id].update(
        source_spacing=None if spacing is None else list(spacing),
        resampled_spacing=(None if o.spacing is None or geom.resampled_spacing is None
                           else list(geom.resampled_spacing)),
        voxel_spacing=None if geom.spacing is None else list(geom.spacing),
        volume_shape=list(geom.source_shape))

  def example_spec(self, items, config):
    del config
    o = self.volume_options
    if o.patch_size is not None:
      too_small = [vid for vid, g in self._geometry.items() if min(g.shape) < o.patch_size]
      if too_small:
        g = self._geometry[too_small[0]]
        raise SourceError(f"--patch_size={o.patch_size} does not fit in {len(too_small)} "
                          f"volumes (e.g. {too_small[0]!r}, "
                          f"{'x'.join(map(str, g.shape))}); give --volume_size, or a "
                          "smaller --patch_size")
      return VolumeSpec(o.patch_size, o.patch_size, o.patch_size)
    used = {vid for split in items.values() for it in split for vid in self._ids(it.series)}
    shapes = collections.Counter(self._geometry[vid].shape for vid in used)
    if len(shapes) > 1:
      common = ", ".join(f"{'x'.join(map(str, s))} ({n})" for s, n in shapes.most_common(3))
      raise SourceError(f"volumes in {self.spec!r} have {len(shapes)} different sizes (DxHxW, "
                        f"most common: {common}); pass --volume_size=D,H,W to fit them all "
                        "(with --resize=crop|pad|stretch, and --spacing=MM to even out the "
                        "voxels first)")
    return VolumeSpec(*next(iter(shapes)))

  def _ids(self, series):
    return self._pairs[series] if self.kind == "paired" else (series,)

  def probe(self, item):
    del item
    return None  # `example_spec` decides.

  def load_order(self, items):
    return sorted(items, key=lambda item: (item.series, item.index or 0))

  def slice_stacks(self):
    return {}

  # --- Loading. ---

  def _volume(self, vid, windows):
    """The fitted codes of volume `vid`, uint16 [D, H, W]; the last few are kept."""
    if vid in self._fitted:
      self._fitted.move_to_end(vid)
    else:
      v = self._volumes[vid]
      values = []
      for ref in v.refs:
        try:
          values.append(self.reader.slice_values(ref))
        except images.BadImageError as e:
          raise images.BadImageError(f"{e} (file {self._relative(ref)})") from None
      if values[0].ndim != 2:
        raise images.BadImageError("a colour series cannot be stored as a volume")
      values = np.stack(values)
      spec = self.options.spec_of(self._table[vid].get("side", ""))
      if vid not in self._windows:  # The window of slice mode: the same values.
        self._windows[vid] = window_lib.resolve(
            spec, values if spec.needs_values(v.modality) else None, v.modality)
      codes = self._windows[vid].to_codes(values, 16)
      self._fitted[vid] = resample.apply(codes, self._geometry[vid], self.volume_options.resize)
      while len(self._fitted) > 2:
        self._fitted.popitem(last=False)
    windows[vid] = self._windows[vid]
    return self._fitted[vid]

  def load(self, item):
    windows = {}
    if self.kind != "paired":
      return Example({"image": self._volume(item.series, windows)[..., None]},
                     windows=windows)
    a, b = self._pairs[item.series]
    va, vb = self._volume(a, windows), self._volume(b, windows)
    o = self.volume_options
    if o.patch_size is None:
      return Example({"image_a": va[..., None], "image_b": vb[..., None]}, windows=windows)
    if item.series in self._tiles:  # A held-out pair: tile k of its grid.
      corner = self._tiles[item.series][item.index]
    else:
      if item.series not in self._corners:
        window = self._windows[b]
        body = mask_lib.auto_mask(vb.astype(np.float64), 0.0,
                                  per_volume=window.source.startswith("percentile"))
        self._corners = {item.series: patch_corners(body, o.patch_size, o.patches_per_volume,
                                                    o.seed, item.series)}
      corner = self._corners[item.series][item.index]
    box = tuple(slice(c, c + o.patch_size) for c in corner)
    return Example({"image_a": va[box][..., None], "image_b": vb[box][..., None]},
                   windows=windows, corner=tuple(int(c) for c in corner))

  # --- The manifest. ---

  def extra_manifest(self):
    extra = super().extra_manifest()
    o = self.volume_options
    used = set(self._geometry)
    by_domain, unknown = collections.defaultdict(list), collections.Counter()
    for vid in sorted(used):
      domain = self._table[vid].get("side") or "image"
      spacing = self._geometry[vid].spacing
      if spacing is None:
        unknown[domain] += 1
      else:
        by_domain[domain].append(spacing)
    voxel_spacing = {}
    for domain in sorted(set(by_domain) | set(unknown)):
      summary = _summary(domain, by_domain[domain], unknown[domain])
      if summary is not None:
        voxel_spacing[domain] = summary
    sizes = {self._geometry[vid].shape for vid in used}
    extra["medical"].update(
        volumes=True, volume_size=list(next(iter(sizes))) if len(sizes) == 1 else None,
        spacing=o.spacing, voxel_spacing=voxel_spacing or None)
    if o.patch_size is not None:
      extra["medical"].update(patch_size=o.patch_size, patches_per_volume=o.patches_per_volume)
    if self._tiles:  # Absent: no held-out split, or data converted before tiles.
      extra["medical"]["test_split"] = "tiles"
    return extra

  def __getstate__(self):
    state = super().__getstate__()
    state["_fitted"] = collections.OrderedDict()
    state["_corners"] = {}
    return state


def build(spec, arg, settings, pseudonym_salt, *, reader, mode):
  """A `VolumeSource` (`medical.build`'s arguments; `input.sources` calls
  this for `--volumes`)."""
  return medical.build(spec, arg, settings, pseudonym_salt, reader=reader, mode=mode,
                       source_cls=functools.partial(VolumeSource,
                                                    volume_options=VolumeOptions.parse(settings)))
