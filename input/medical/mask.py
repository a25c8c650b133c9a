"""Body masks of medical volumes: `auto_mask` (the reference above a
threshold, holes filled slice by slice, then the largest 3-D connected
component), with its parts (`label`, `largest_component`, `fill_holes_2d`,
`otsu_threshold`). Pure numpy (no scipy).

The threshold is the window's low end where the window clips the background
there (a fixed window with at least `BACKGROUND_AT_LOW` of the voxels at or
below its low end: CT windows above air). Where it does not, the low end
would keep the background (MR's noise above a per-volume percentile window's
low end, air inside `ct_full`), so the threshold is Otsu's (`otsu_threshold`,
the foreground rule of MONAI's `ForegroundMask`), if above the low end.

Used by the paired fidelity figures (`evaluation.fidelity`, `--mask=auto`)
and by the conversion's paired 3-D patches, which are sampled inside the
target side's mask (`input.medical.volume_records`).
"""

import numpy as np

__all__ = ["BACKGROUND_AT_LOW", "OTSU_BINS", "auto_mask", "fill_holes_2d", "label",
           "largest_component", "otsu_threshold"]

BACKGROUND_AT_LOW = 0.01  # `auto_mask`: a window that clips this much clips the background.
OTSU_BINS = 256


def label(mask, axes=None):
  """Connected components of a bool array, voxels joined across the faces
  along `axes` (None: every axis).

  Returns:
    int64 labels of mask's shape: each component's smallest flat index,
    -1 outside the mask.
  """
  mask = np.asarray(mask, bool)
  axes = range(mask.ndim) if axes is None else axes
  n = mask.size
  lab = np.where(mask, np.arange(n).reshape(mask.shape), n)
  while True:
    before = lab
    for axis in axes:  # Each voxel takes the smallest label of its neighbours.
      for forward in (True, False):
        shifted = np.full_like(lab, n)
        src = [slice(None)] * lab.ndim
        dst = [slice(None)] * lab.ndim
        src[axis], dst[axis] = (slice(1, None), slice(None, -1)) if forward else (
            slice(None, -1), slice(1, None))
        shifted[tuple(dst)] = lab[tuple(src)]
        lab = np.where(mask, np.minimum(lab, shifted), n)
    flat = np.append(lab.ravel(), n)
    while True:  # Pointer jumping: a label is a voxel of the same component.
      jumped = flat[flat]
      if np.array_equal(jumped, flat):
        break
      flat = jumped
    lab = flat[:-1].reshape(mask.shape)
    if np.array_equal(lab, before):
      return np.where(mask, lab, -1).astype(np.int64)


def largest_component(mask):
  """The largest connected component (faces touching; the first on a tie)."""
  lab = label(mask)
  if not (lab >= 0).any():
    return np.zeros(np.shape(mask), bool)
  counts = np.bincount(lab[lab >= 0].ravel())
  return lab == int(np.argmax(counts))


def fill_holes_2d(mask):
  """Fills, in each slice of [S, rows, cols], the background that does not
  reach the slice's border."""
  mask = np.asarray(mask, bool)
  lab = label(~mask, axes=(1, 2))
  border = np.zeros_like(mask)
  border[:, 0, :] = border[:, -1, :] = border[:, :, 0] = border[:, :, -1] = True
  outside = np.isin(lab, np.unique(lab[border & ~mask]))
  return mask | (~mask & ~outside)


def otsu_threshold(values, bins=OTSU_BINS):
  """Otsu's threshold (1979): of `bins` equal bins over the values' range,
  the bin centre that maximizes the variance between the two classes it
  splits (values above it are foreground). As skimage's `threshold_otsu`.
  The value itself for constant values."""
  values = np.asarray(values, np.float64).ravel()
  lo, hi = float(values.min()), float(values.max())
  if hi <= lo:
    return lo
  hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
  centres = (edges[:-1] + edges[1:]) / 2
  w0 = np.cumsum(hist)
  w1 = np.cumsum(hist[::-1])[::-1]
  m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
  m1 = (np.cumsum((hist * centres)[::-1]) / np.maximum(w1[::-1], 1))[::-1]
  between = w0[:-1] * w1[1:] * (m0[:-1] - m1[1:]) ** 2
  return float(centres[int(np.argmax(between))])


def auto_mask(reference, low, per_volume=False):
  """`--mask=auto` (see the module docstring).

  Args:
    reference: [S, rows, cols] in modality units, clipped to the window.
    low: the window's low end.
    per_volume: the window is the volume's own percentiles (it clips only
      as much as its low percentile says, never the background as such).
  """
  reference = np.asarray(reference, np.float64)
  threshold = low
  if per_volume or np.mean(reference <= low) < BACKGROUND_AT_LOW:
    threshold = max(low, otsu_threshold(reference))
  return largest_component(fill_holes_2d(reference > threshold))
