"""What the trainer learns from a converted dataset's manifest."""

import math
import os

from absl import logging
import numpy as np

from algorithms import base
from input import images
from input import manifest as manifest_lib
from input.medical import nifti


def describe(manifest, spec):
  """A `DataInfo` from a manifest (with its window and medical settings, for
  medical data)."""
  kind = manifest["kind"]
  feature = manifest_lib.FEATURES_BY_KIND[kind][0]
  shape = tuple(manifest["features"][feature]["shape"])
  names = manifest.get("label_names") or []
  if spec.startswith("builtin:"):
    name = spec.split(":", 1)[1]
  else:
    name = os.path.basename(os.path.normpath(spec if ":" not in spec
                                             else spec.split(":", 1)[1].split(",")[0]))
  return base.DataInfo(kind=kind, shape=shape, num_classes=len(names), name=name,
                       window=manifest.get("window"), medical=manifest.get("medical"),
                       pixel_spacing=pixel_spacing(manifest), holdout=manifest.get("holdout"),
                       resize=manifest.get("config", {}).get("resize"),
                       shapes={k: tuple(f["shape"]) for k, f in manifest["features"].items()},
                       voxel_spacing=(manifest.get("medical") or {}).get("voxel_spacing"))


def pixel_spacing(manifest):
  """The in-plane pixel spacing of a medical dataset's slices after resizing.

  A series' own spacing (DICOM PixelSpacing; for NIfTI, the canonical zooms
  in the plane of its slice axis) grows by what the conversion's --resize
  made of its slices: one converted pixel spans fitted / converted source
  pixels along each side, with `fitted` the cropped or padded size
  (`images.fitted_shape`: crop keeps the short side's scale, pad the long
  side's). Where the series of a domain differ, each side is their median,
  and the log says so.

  Args:
    manifest: a converted dataset's manifest.

  Returns:
    {domain: [row spacing, column spacing]} in mm, the domains as in the
    manifest's window ("image", or "A" and "B"), for the domains that have a
    series with a known spacing; None when none has (data not converted from
    dicom: or nifti:, or DICOM without PixelSpacing).
  """
  series, medical = manifest.get("series"), manifest.get("medical")
  if not series or not medical:
    return None
  if medical.get("volumes"):  # [D, H, W] voxels: the plane's spacing is H's and W's.
    voxels = medical.get("voxel_spacing") or {}
    return {domain: [float(v) for v in s[1:]] for domain, s in voxels.items()} or None
  feature = manifest["features"][manifest_lib.FEATURES_BY_KIND[manifest["kind"]][0]]
  height, width = feature["shape"][:2]
  resize = manifest.get("config", {}).get("resize", "crop")
  known, unknown = {}, {}
  for entry in series.values():
    domain = entry.get("side") or "image"
    spacing = _series_spacing(entry, medical)
    if spacing is None:
      unknown[domain] = unknown.get(domain, 0) + 1
      continue
    rows, cols = images.fitted_shape(*entry["shape"], height, width, resize)
    known.setdefault(domain, []).append((spacing[0] * rows / height, spacing[1] * cols / width))
  out = {}
  for domain in sorted(set(known) | set(unknown)):
    values = np.array(known.get(domain, []), np.float64).reshape(-1, 2)
    if unknown.get(domain):
      logging.info("Pixel spacing of domain %s: %d of %d series have none", domain,
                   unknown[domain], unknown[domain] + len(values))
    if not len(values):
      continue
    low, high = values.min(axis=0), values.max(axis=0)
    out[domain] = [float(v) for v in np.median(values, axis=0)]
    if np.any(high - low > 1e-6 * high):
      logging.info("Pixel spacing of domain %s: its %d series differ after resizing to %dx%d "
                   "(rows %.4g to %.4g mm, columns %.4g to %.4g mm); samples use the median, "
                   "%.4g x %.4g mm", domain, len(values), height, width, low[0], high[0],
                   low[1], high[1], *out[domain])
  return out or None


def _series_spacing(entry, medical):
  """(row mm, column mm) of one series' slices as read, or None when unknown."""
  if medical.get("format") == "nifti":
    zooms = entry.get("zooms")
    spacing = None if zooms is None else nifti.plane_spacing(
        zooms, entry.get("axis") or medical.get("slice_axis", "axial"))
  else:
    spacing = entry.get("pixel_spacing")
  if spacing is None or not all(np.isfinite(v) and v > 0 for v in spacing):
    return None
  return float(spacing[0]), float(spacing[1])


def auto_shuffle_buffer(manifest):
  """About 64 MB of records, 1,000 to 10,000: the buffer is saved in every
  checkpoint (it is part of the input iterator's position)."""
  total = 0
  for f in manifest["features"].values():
    n = math.prod(f["shape"])
    total += n * (4 if f["dtype"] == "float32" else np.dtype(f["dtype"]).itemsize)
  return int(min(10_000, max(1_000, 64e6 // max(total, 1))))
