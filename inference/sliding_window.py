"""Sliding-window inference over a whole volume, as MONAI's
`sliding_window_inference` does (monai/inferers/utils.py).

A model trained on patches of `patch_size` is applied to a volume of any size:
patches are laid on a grid with `overlap` (a fraction of the patch) whose last
patch along each axis is flush with the border (`patch_starts`), run through
the model `batch_size` at a time, and each output patch is added into an
accumulator weighted by an importance map (`importance_map`); the sum is
divided by the summed weights. With the Gaussian map a voxel takes most of its
value from the patches it lies near the centre of, so that patch edges, where
a convolutional network sees the least context, leave no seams.

Memory: the volume, one float32 output accumulator [*spatial, C_out] and one
float32 weight accumulator [*spatial], and one batch of patches in and out.
The patches are cut as they are run, never all at once.

Works for any number of spatial axes: a volume [D, H, W, C] (the project's
channels-last example) or an image [H, W, C].
"""

import itertools
import math

import numpy as np

BLEND_MODES = ("gaussian", "constant")
# MONAI's default: sigma = 0.125 * patch size on each axis, so the map falls to
# exp(-8) (0.03%) at a patch's faces.
SIGMA_SCALE = 0.125
# The map's floor: every voxel of a patch keeps a positive weight, so that the
# summed weights are never zero. MONAI clamps at 1e-3 instead; but where every
# patch covering a voxel is below the floor (the edges and corners of the
# volume, which only patch edges cover) a floor that high blends them all alike,
# as mode="constant" does, seams included: with 32^3 patches over an 80^3
# volume and a per-patch offset, 4x the largest step between neighbouring
# voxels of the unclamped map. The map's least value, exp(-8) per axis, is far
# above this floor, so it guards against underflow only.
MIN_WEIGHT = float(np.finfo(np.float32).tiny)


def _per_axis(value, ndim, name):
  """An int or a sequence of `ndim` ints -> a tuple of `ndim` positive ints."""
  values = (value,) * ndim if np.isscalar(value) else tuple(value)
  if len(values) != ndim or any(int(v) != v or v < 1 for v in values):
    raise ValueError(f"{name} must be a positive int or {ndim} positive ints (one per spatial "
                     f"axis), got {value!r}")
  return tuple(int(v) for v in values)


def scan_interval(size, patch, overlap):
  """The step between the starts of neighbouring patches along one axis.

  As MONAI: a patch that spans the axis takes one step of its own size;
  otherwise `patch * (1 - overlap)` rounded down, at least 1.
  """
  if patch >= size:
    return patch
  return max(int(patch * (1.0 - overlap)), 1)


def patch_starts(size, patch, overlap):
  """The start of every patch along one axis of `size` voxels.

  Patches start every `scan_interval` voxels until one reaches the border;
  that last one is moved back to end flush with it, so that every voxel is
  covered and no patch leaves the axis. An axis no longer than the patch has
  one patch at 0 (the caller pads a shorter axis to the patch first).

  Returns:
    A list of ints, increasing.
  """
  step = scan_interval(size, patch, overlap)
  starts, start = [], 0
  while True:
    starts.append(min(start, max(size - patch, 0)))
    if start + patch >= size:
      return starts
    start += step


def patch_positions(shape, patch_size, overlap=0.5):
  """The corner of every patch of a volume of spatial `shape`.

  Returns:
    [N, ndim] int array, the first axis varying slowest (as MONAI's
    `dense_patch_slices`).
  """
  axes = [patch_starts(s, p, overlap) for s, p in zip(shape, patch_size)]
  return np.array(list(itertools.product(*axes)), np.int64).reshape(-1, len(shape))


def importance_map(patch_size, mode="gaussian", sigma_scale=SIGMA_SCALE):
  """The weight of each voxel of a patch, as MONAI's `compute_importance_map`.

  gaussian: the product over axes of exp(-x^2 / (2 sigma^2)), with x the
  distance from the patch centre ((p - 1) / 2) and sigma = sigma_scale * p;
  1 at the centre of an odd-sized patch, exp(-8 ((p - 1) / p)^2) per axis
  at its faces. Values below MIN_WEIGHT (underflow only) are raised to it. constant: 1 everywhere (every covering patch counts alike: plain
  averaging).

  Returns:
    float32 array of shape `patch_size`.

  Raises:
    ValueError: an unknown mode.
  """
  if mode == "constant":
    return np.ones(patch_size, np.float32)
  if mode != "gaussian":
    raise ValueError(f"mode must be one of {', '.join(BLEND_MODES)}, got {mode!r}")
  weights = np.ones((), np.float64)
  for p in patch_size:
    x = np.arange(p, dtype=np.float64) - (p - 1) / 2.0
    weights = np.multiply.outer(weights, np.exp(-x**2 / (2.0 * (sigma_scale * p)**2)))
  return np.maximum(weights, MIN_WEIGHT).astype(np.float32)


def _pad_to_patch(volume, patch_size):
  """Pads the spatial axes shorter than the patch, on both sides alike (as
  MONAI), by repeating the edge voxels.

  The edge, not MONAI's zeros: zero is mid-grey in the model's [-1, 1], so
  that a model would see a grey slab beside the body; the edge is what lies at
  the border already (air, mostly).

  Returns:
    (padded volume, the slices that crop the output back).
  """
  spatial = volume.shape[:-1]
  pads = [((p - s) // 2, p - s - (p - s) // 2) if s < p else (0, 0)
          for s, p in zip(spatial, patch_size)]
  crop = tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, spatial))
  if not any(lo or hi for lo, hi in pads):
    return volume, crop
  return np.pad(volume, pads + [(0, 0)], mode="edge"), crop


def sliding_window(volume, fn, patch_size, overlap=0.5, batch_size=4, mode="gaussian"):
  """Applies a patch model to a whole volume by blended sliding windows.

  Args:
    volume: [*spatial, C] array (a volume [D, H, W, C], or an image [H, W, C]).
    fn: [n, *patch_size, C] float32 -> [n, *patch_size, C_out] (a numpy
      array or an eager tensor), for 1 <= n <= batch_size.
    patch_size: the patch the model takes: an int for every spatial axis, or
      one int per axis.
    overlap: the fraction of a patch that neighbouring patches share along
      each axis, in [0, 1).
    batch_size: the most patches per call of `fn`.
    mode: how overlapping outputs are blended (BLEND_MODES): "gaussian"
      (`importance_map`) or "constant" (plain averaging).

  Returns:
    float32 [*spatial, C_out]: the volume's own spatial shape.

  Raises:
    ValueError: a bad patch size, overlap, batch size or mode, or `fn`
      returning another shape than [n, *patch_size, C_out].
  """
  volume = np.asarray(volume)
  if volume.ndim < 2:
    raise ValueError(f"volume must be [*spatial, C], got shape {volume.shape}")
  patch_size = _per_axis(patch_size, volume.ndim - 1, "patch_size")
  if not 0.0 <= overlap < 1.0:
    raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
  batch_size = _per_axis(batch_size, 1, "batch_size")[0]
  weights = importance_map(patch_size, mode)
  padded, crop = _pad_to_patch(volume.astype(np.float32, copy=False), patch_size)
  spatial = padded.shape[:-1]
  positions = patch_positions(spatial, patch_size, overlap)
  out, total = None, np.zeros(spatial, np.float32)
  for first in range(0, len(positions), batch_size):
    windows = [tuple(slice(s, s + p) for s, p in zip(corner, patch_size))
               for corner in positions[first:first + batch_size]]
    y = np.asarray(fn(np.stack([padded[w] for w in windows])), np.float32)
    if y.shape[:-1] != (len(windows),) + patch_size:
      raise ValueError(f"fn must return [n, *patch_size, C_out] = [{len(windows)}, "
                       f"{', '.join(map(str, patch_size))}, C_out] for {len(windows)} "
                       f"patch(es), got shape {y.shape}")
    if out is None:
      out = np.zeros(spatial + y.shape[-1:], np.float32)
    for w, patch in zip(windows, y):
      out[w] += patch * weights[..., None]
      total[w] += weights
  out /= total[..., None]
  return out[crop]


def num_patches(shape, patch_size, overlap=0.5):
  """How many patches `sliding_window` runs over a volume of spatial `shape`
  (after padding an axis shorter than the patch)."""
  return math.prod(len(patch_starts(max(s, p), p, overlap)) for s, p in zip(shape, patch_size))


def seam_steps(y, patch_size, overlap=0.5, margin=0):
  """The seam statistic of a sliding-window output: the largest step between
  neighbouring voxels across a patch border (a plane where some patch starts
  or ends), and the largest step elsewhere.

  Args:
    y: [*spatial, C], the output of `sliding_window` with the same
      `patch_size` and `overlap` on a volume of no axis shorter than the
      patch.
    margin: voxels this close to the volume's faces are left out (where a
      model's own edge effects show whatever the blending: no other patch
      covers them).

  Returns:
    (across borders, elsewhere); 0.0 for either where there is none.
  """
  patch_size = _per_axis(patch_size, y.ndim - 1, "patch_size")
  inner = tuple(slice(margin, s - margin) for s in y.shape[:-1]) + (slice(None),)
  core = y[inner]
  across, inside = 0.0, 0.0
  for axis, (size, patch) in enumerate(zip(y.shape[:-1], patch_size)):
    if core.shape[axis] < 2:
      continue
    starts = patch_starts(size, patch, overlap)
    borders = {s for s in starts if s > 0} | {s + patch for s in starts if s + patch < size}
    steps = np.abs(np.diff(core, axis=axis)).max(
        axis=tuple(a for a in range(y.ndim) if a != axis))
    # Step i of `core` is between voxels margin + i and margin + i + 1 of `y`.
    is_border = np.isin(np.arange(margin + 1, margin + core.shape[axis]), sorted(borders))
    if is_border.any():
      across = max(across, float(steps[is_border].max()))
    if not is_border.all():
      inside = max(inside, float(steps[~is_border].max()))
  return across, inside
