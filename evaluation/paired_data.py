"""Where the volumes of paired fidelity come from (`evaluation.paired`):
`HeldOutPairs`, the held-out pairs of converted data with a run's
translations and the baselines, and `read_pairs`, two folders of NIfTI
volumes. Each gives `Volume`s: [S, rows, cols] arrays in modality units,
S slices along the slice axis, with the reference's window and the mask.

`HeldOutPairs` (`pipeline.evaluate --model_dir=RUN --real=DATA`, and
`--eval_every` during training): DATA's held-out pairs (split `test`, made
by `pipeline.convert --holdout`), as converted: at the run's size, in the
data's window. Each source volume's slices are translated in the run's
direction and mapped back to modality units through the reference volume's
own window, the one the manifest records for it, so that the reference is
exactly its held-out slices' codes in modality units (HU for CT). The
baselines (`evaluation.baselines`) are fitted on DATA's `train` split and
predict the same volumes. Data converted with `--volumes` holds whole
volumes [D, H, W] (S = D slices), read and translated by
`evaluation.volume_pairs`: each held-out volume whole (reassembled from its
tiles for 3-D patch data), through the model by blended sliding windows of
the training patch.

`read_pairs` (`--pairs=PRED,REF`): two folders (or files) of NIfTI volumes
or DICOM series, either side either format. NIfTI files match by name as
`pipeline.convert` pairs them (BIDS entities without the suffix,
`sub-01_ses-2`, else the relative name without extensions), so that
`pipeline.translate`'s outputs, which keep their source's entities, match their
references; a DICOM series matches by its folder relative to the root
(`ref/sub-01/*.dcm` matches `pred/sub-01.nii.gz`), and is placed in the
patient by its own geometry (`dicom.series_affine`, as `pipeline.translate`
writes it). Volumes whose shape or affine differ are refused by name.
Slices run along `--slice_axis` (axial). The window: `--window`, else
PRED/window.json's target window (written by `pipeline.translate`), else
each reference's own range (`percentile:0,100`). Values are clipped to the
window on both sides, as a conversion clips the training data.

Masks: `auto` (`fidelity.auto_mask`: the reference above the window's low
end, or above Otsu's threshold where the window does not clip the
background; holes filled, largest component), `none`, or (`--pairs` only) a
folder of mask volumes, matched and checked like PRED, whose nonzero voxels
count.
"""

import collections
import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from evaluation import baselines
from evaluation import fidelity
from evaluation import volume_pairs
from input import reader
from input.medical import dicom
from input.medical import geometry
from input.medical import nifti
from input.medical import pseudonyms
from input.medical import window as window_lib

MASKS = ("auto", "none")
SLICE_AXES = tuple(nifti.AXES)


class Volume:
  """One evaluated volume: [S, rows, cols] arrays in modality units.

  Attributes:
    name: the pair's name (a BIDS key, a relative name or a pseudonym).
    reference: the reference (clipped to `window`).
    window: the reference's `Window`.
    mask: bool, the voxels evaluated.
    source, source_window: the source (None with --pairs) and its window.
    model_input: [S, rows, cols, C] in [-1, 1], what the model translates
      (None with --pairs).
    prediction: the prediction to score (--pairs: PRED's volume).
  """

  def __init__(self, name, reference, window, mask, source=None, source_window=None,
               model_input=None, prediction=None):
    self.name, self.reference, self.window, self.mask = name, reference, window, mask
    self.source, self.source_window = source, source_window
    self.model_input, self.prediction = model_input, prediction


def mask_for(rule, reference, window):
  if rule == "none":
    return np.ones(reference.shape, bool)
  return fidelity.auto_mask(reference, window.low, window.source.startswith("percentile"))


# --- --model_dir: the held-out pairs of converted data ---


def has_held_out_pairs(manifest):
  """Whether converted data holds paired volumes with a held-out split."""
  return (manifest.get("kind") == "paired" and "pairs" in manifest
          and "test" in manifest["splits"])


def _group_by_volume(data_dir, manifest, split, batch_size):
  """{pair id: (source codes, target codes)} of a split, stored codes as
  [S, rows, cols, C] ordered by slice; keys are `<pair id>/<slice>`."""
  ds = reader.make_dataset(reader.ReaderConfig(
      data_dir, split=split, shuffle_buffer=0, repeat=False, drop_remainder=False,
      deterministic=True, with_keys=True, normalize=False), batch_size)
  slices = collections.defaultdict(dict)
  for batch in ds.as_numpy_iterator():
    for key, a, b in zip(batch["key"], batch["image_a"], batch["image_b"]):
      pid, _, index = key.decode().rpartition("/")
      slices[pid][int(index)] = (a, b)
  return {pid: tuple(np.stack([by_index[k][i] for k in sorted(by_index)]) for i in (0, 1))
          for pid, by_index in sorted(slices.items())}


def _to_model(codes, max_code):
  return codes.astype(np.float32) * (2.0 / max_code) - 1.0


class HeldOutPairs:
  """The held-out pairs of converted paired volumes, read once, for scoring
  a translation model and the baselines (`pipeline.evaluate`, and
  `--eval_every` during training).

  Args:
    data_dir: converted paired data from dicom: or nifti: volumes.
    manifest: its manifest.
    direction: "AtoB" or "BtoA", the direction the model translates.
    mask: "auto" or "none".
    batch_size: slices per read and per model call (volumes: records per
      read; the sliding window sets the patches per call).

  Raises:
    ValueError: data that is not paired volumes, has no held-out split, or
      has no window; a bad mask rule.
  """

  def __init__(self, data_dir, manifest, direction, mask="auto", batch_size=16):
    if manifest.get("kind") != "paired" or "pairs" not in manifest:
      raise ValueError(f"{data_dir!r} is not paired volumes: paired fidelity needs data "
                       "converted from paired:dicom: or paired:nifti: (a pipeline.convert "
                       "directory)")
    if "test" not in manifest["splits"]:
      raise ValueError(f"{data_dir!r} has no held-out split 'test': convert it with "
                       "--holdout=FRACTION --split_by=patient")
    if mask not in MASKS:
      raise ValueError(f"--mask={mask} with --model_dir: use auto or none (a folder of masks "
                       "is for --pairs, at the volumes' own resolution)")
    self.data_dir, self.manifest, self.mask_rule = data_dir, manifest, mask
    self.batch_size = batch_size
    self.sides = ("A", "B") if direction == "AtoB" else ("B", "A")
    feature = manifest["features"]["image_a"]
    self.max_code = 255.0 if feature["dtype"] == "uint8" else 65535.0
    # pipeline.convert --context_slices=K: A's slice is channel K of 2K + 1.
    self.context = int((manifest.get("medical") or {}).get("context_slices", 0))
    # Volumes: the training patch, which the sliding window translates by.
    self.patch_size = (volume_pairs.patch_size(manifest) if volume_pairs.is_volume_data(manifest)
                       else None)
    held_out = (volume_pairs.held_out(data_dir, manifest, batch_size) if self.patch_size else
                _group_by_volume(data_dir, manifest, "test", batch_size))
    self.volumes = [self._volume(pid, *codes) for pid, codes in held_out.items()]
    if not self.volumes:
      raise ValueError(f"{data_dir!r} holds no held-out pair")
    self.baselines = {}  # Method -> predictions or a reason; `fit_baselines` fills it.
    self.baseline_info = {}

  def _windows(self, pid):
    entry = self.manifest["pairs"][pid]
    series = self.manifest.get("series", {})
    out = []
    for side in self.sides:
      record = series.get(entry[side], {}).get("window")
      if record is None:
        raise ValueError(f"{self.data_dir!r}: volume {entry[side]!r} has no recorded window "
                         "(a colour series?), so its values cannot be mapped to modality units")
      out.append(window_lib.Window.from_json(record))
    return out

  def _plane(self, x, side):
    """The slices [S, rows, cols] of one side's [S, rows, cols, C]: the mean
    of the channels, or A's centre channel of a 2.5-D context."""
    return x[..., self.context] if side == "A" and self.context else x.mean(axis=-1)

  def _arrays(self, a, b):
    """(the model's input [S, rows, cols, C], the source's slices, the
    target's slices), in [-1, 1]."""
    x = {"A": _to_model(a, self.max_code), "B": _to_model(b, self.max_code)}
    source, target = self.sides
    return x[source], self._plane(x[source], source), self._plane(x[target], target)

  def _volume(self, pid, a, b):
    source_window, window = self._windows(pid)
    x, source, target = self._arrays(a, b)
    reference = window.from_model(target)
    return Volume(pid, reference, window, mask_for(self.mask_rule, reference, window),
                  source=source_window.from_model(source), source_window=source_window,
                  model_input=x)

  @property
  def units(self):
    return self.volumes[0].window.units

  def predict(self, translate):
    """The model's prediction of every volume, in modality units.

    Args:
      translate: [B, H, W, C] in [-1, 1] -> the same (tensor or array);
        volumes: [B, *patch_size, C].
    """
    out = []
    for v in self.volumes:
      if self.patch_size:
        out.append(v.window.from_model(volume_pairs.translate(v.model_input, translate,
                                                              self.patch_size)))
        continue
      y = [np.asarray(translate(tf.constant(v.model_input[i:i + self.batch_size])))
           for i in range(0, len(v.model_input), self.batch_size)]
      out.append(v.window.from_model(np.concatenate(y).mean(axis=-1)))
    return out

  def fit_baselines(self):
    """Fits the intensity mapping on the `train` split (inside its masks) and
    makes both baselines' predictions of the held-out volumes."""
    lut = baselines.IntensityMapping(-1.0, 1.0)
    train = (volume_pairs.training_pairs(self.data_dir, self.manifest, self.batch_size)
             if self.patch_size else
             _group_by_volume(self.data_dir, self.manifest, "train", self.batch_size).items())
    count = 0
    for pid, (a, b) in train:  # Volumes: each whole volume, or each patch, on its own.
      _, source, target = self._arrays(a, b)
      window = self._windows(pid)[1]
      lut.add(source, target, mask_for(self.mask_rule, window.from_model(target), window))
      count += 1
    what = ("pairs" if not self.patch_size else
            "patches" if self.manifest["medical"].get("patch_size") else "volumes")
    self.baselines[baselines.INTENSITY_MAPPING] = [
        v.window.from_model(lut(self._plane(v.model_input, self.sides[0])))
        for v in self.volumes]
    self.baseline_info[baselines.INTENSITY_MAPPING] = {
        **lut.describe(), "fitted_on": f"{count} training {what} (split train)",
        "intensity": "the stored codes as [-1, 1], as the model sees them"}
    if all(baselines.shares_units(v.source_window, v.window) for v in self.volumes):
      self.baselines[baselines.IDENTITY] = [baselines.identity(v.source, v.window)
                                            for v in self.volumes]
      self.baseline_info[baselines.IDENTITY] = {
          "prediction": "the source, clipped to the target window"}
    else:
      self.baseline_info[baselines.IDENTITY] = {
          "skipped": "the two sides do not share units (a per-volume percentile window, or "
                     "other units)"}
    logging.info("Baselines fitted on %d training %s: %s", count, what,
                 ", ".join(self.baselines))


# --- --pairs: two folders of NIfTI volumes or DICOM series ---


class _Item:
  """One volume of a --pairs folder: its name for messages and a loader of
  its nibabel image (a NIfTI file as it is; a DICOM series as
  `pipeline.translate` writes it, `nifti.write_series`, so that both formats
  meet on the same voxel grid)."""

  def __init__(self, name, load, volume_index=None):
    self.name, self._load, self.volume_index = name, load, volume_index
    self._image = None

  def canonical(self):
    """The image reoriented to RAS+ (nibabel's closest canonical)."""
    if self._image is None:
      nib = nifti.base.require("nibabel", "NIfTI volumes")
      self._image = nib.as_closest_canonical(self._load())
    return self._image


def _dicom_image(v):
  """A DICOM series (`dicom.scan`'s `Volume`) as an in-memory NIfTI image,
  placed in the patient by its ImageOrientationPatient, ImagePositionPatient
  and PixelSpacing (`dicom.series_affine`, LPS -> RAS+)."""
  nib = nifti.base.require("nibabel", "NIfTI volumes")
  try:
    affine = dicom.series_affine(v)
  except geometry.GeometryError as e:
    raise ValueError(f"DICOM series {v.match or v.id}: cannot be placed by one affine: {e}"
                     ) from None
  if affine is None:
    raise ValueError(f"DICOM series {v.match or v.id} has no ImageOrientationPatient or "
                     "ImagePositionPatient: its geometry cannot be checked against its partner")
  values = np.stack([dicom.slice_values(ref) for ref in v.refs]).astype(np.float32)
  if values.ndim != 3:
    raise ValueError(f"DICOM series {v.match or v.id} is in colour: no modality units")
  voxel_affine = affine @ nifti.stack_to_slice_index(values.shape[1])
  return nib.Nifti1Image(nifti.slices_to_volume(values, "axial"), voxel_affine)


def _is_dicom_folder(path):
  """Whether `path` holds DICOM rather than NIfTI files (no NIfTI file in it)."""
  return os.path.isdir(path) and not nifti.list_files(path)[1]


def _scan(path, axis, what):
  """{match name: `_Item`} of the NIfTI files or DICOM series `path` names.

  NIfTI files match by their BIDS entities without the suffix, else their
  relative name; a DICOM series by its folder relative to `path` (so that
  `ref/sub-01/IM0001.dcm` matches `pred/sub-01.nii.gz`).
  """
  if not os.path.exists(path):
    raise ValueError(f"{what} {path!r} does not exist")
  nib = nifti.base.require("nibabel", "NIfTI volumes")
  by_name = {}

  def add(match, item):
    if match in by_name:
      raise ValueError(f"{what}: {by_name[match].name} and {item.name} both match as "
                       f"{match!r}; keep one per name")
    by_name[match] = item

  if _is_dicom_folder(path):
    nifti.base.require("pydicom", "DICOM series")
    # The series' ids are salted hashes nobody sees: a fresh salt will do.
    found = dicom.scan(path, pseudonyms.Pseudonym(pseudonyms.new_salt()))
    for v in found.volumes:
      if not v.match:
        raise ValueError(f"{what}: several DICOM series share a folder in {path!r}; put "
                         "each series in a folder of its own (the folder is its name)")
      add(v.match, _Item(os.path.join(path, v.match), lambda v=v: _dicom_image(v)))
    kind = "DICOM series"
  else:
    found = nifti.scan(path, axis, "all")
    for v in found.volumes:
      ref = v.refs[0]
      add(v.match, _Item(ref.path, lambda ref=ref: nib.load(ref.path), ref.volume))
    kind = "NIfTI volume"
  if not by_name:
    raise ValueError(f"{what} {path!r} holds no readable {kind}")
  return by_name


def _check_geometry(a, b, what):
  """Raises a one-line ValueError naming the pair when shape or affine differ.

  Both are compared as read, reoriented to RAS+ (`_read`): the same grid
  stored in two voxel orders (a DICOM series' rows and columns, a NIfTI
  file's axes) is the same grid.
  """
  ia, ib = a.canonical(), b.canonical()
  if ia.shape != ib.shape:
    raise ValueError(f"{what}: {a.name} has shape {ia.shape} but {b.name} has {ib.shape}; "
                     "resample it onto the reference's grid")
  diff = float(np.max(np.abs(ia.affine - ib.affine)))
  if diff > 1e-3:
    raise ValueError(f"{what}: {a.name} and {b.name} differ in affine (largest difference "
                     f"{diff:.4g}); resample it onto the reference's grid")


def _read(item, axis):
  """[S, rows, cols] float32 slices of an `_Item` along `axis` (canonical RAS+)."""
  data = np.asarray(item.canonical().dataobj, np.float32)
  if data.ndim == 4:
    data = data[..., item.volume_index or 0]
  return nifti.volume_to_slices(data, axis)


def _pairs_window(config, pred_dir):
  """(the window rule's description, a function reference values -> Window)."""
  if config.window:
    spec = window_lib.parse(config.window)
    return config.window, lambda values: window_lib.resolve(spec, values)
  record = os.path.join(pred_dir, "window.json")
  if os.path.isfile(record):
    with open(record, encoding="utf-8") as f:
      target = json.load(f).get("target")
    if target:
      fixed = window_lib.Window.from_json(target)
      return f"{record} (target)", lambda values: fixed
  spec = window_lib.parse("percentile:0,100")
  return "each reference's range (percentile:0,100)", lambda v: window_lib.resolve(spec, v)


def read_pairs(config):
  """The `Volume`s of `--pairs=PRED,REF` and a description of how they were read.

  Raises:
    ValueError: one line: a missing folder, an ambiguous name, no matching
      name, a pair (or mask) whose shape or affine differ, a missing mask.
  """
  parts = [p for p in config.pairs.split(",") if p]
  if len(parts) != 2:
    raise ValueError(f"--pairs takes two folders PRED,REF, got {config.pairs!r}")
  axis = config.slice_axis or "axial"
  preds, refs = _scan(parts[0], axis, "--pairs PRED"), _scan(parts[1], axis, "--pairs REF")
  names = sorted(set(preds) & set(refs))
  unmatched = sorted(set(preds) ^ set(refs))
  if not names:
    raise ValueError(f"--pairs: no volume name matches between {parts[0]!r} and {parts[1]!r} "
                     f"(e.g. {sorted(preds)[0]!r} and {sorted(refs)[0]!r})")
  for name in unmatched:
    logging.warning("--pairs: %s has no partner in %s", name,
                    parts[1] if name in preds else parts[0])
  for name in names:
    _check_geometry(preds[name], refs[name], "--pairs")
  masks = None
  if config.mask not in MASKS:
    masks = _scan(config.mask, axis, "--mask")
    for name in names:
      if name not in masks:
        raise ValueError(f"--mask {config.mask!r} has no mask named {name!r}")
      _check_geometry(masks[name], refs[name], "--mask")
  rule, window_of = _pairs_window(config, parts[0])
  volumes = []
  for name in names:
    ref_values = _read(refs[name], axis)
    window = window_of(ref_values)
    reference = np.clip(ref_values, window.low, window.high)
    prediction = np.clip(_read(preds[name], axis), window.low, window.high)
    mask = (_read(masks[name], axis) != 0 if masks else
            mask_for(config.mask, reference, window))
    volumes.append(Volume(name, reference, window, mask, prediction=prediction))
  return volumes, {"pred": os.path.abspath(parts[0]), "ref": os.path.abspath(parts[1]),
                   "matched": len(names), "unmatched": unmatched, "slice_axis": axis,
                   "window": rule, "clipped": "both sides, to the window"}
