"""Paired fidelity of a translated volume against its reference: MAE, RMSE,
PSNR and SSIM (2-D per slice and 3-D), in modality units, inside a mask.

Pure numpy (no scipy). After MONAI's regression metrics
(`monai/metrics/regression.py`: one function per figure, an explicit data
range, per-item results reduced in one place, `summarize`). A volume is an
array [S, rows, cols] of S slices along the slice axis; a mask is a bool
array of the same shape.

| figure    | inside the mask M (n voxels), L = the window's width (high - low)  |
|-----------|---------------------------------------------------------------------|
| `mae`     | sum(abs(p - r)) / n                                                 |
| `rmse`    | sqrt(sum((p - r)^2) / n)                                            |
| `psnr`    | 10 log10(L^2 / mse) (inf when p equals r)                           |
| `ssim_2d` | each slice's mean SSIM over its window centres in M, averaged over  |
|           | the slices that have any                                            |
| `ssim_3d` | the mean 3-D SSIM over the window centres in M                      |

SSIM follows Wang et al. 2004 ("Image quality assessment: from error
visibility to structural similarity"): a Gaussian window of 11 (sigma 1.5,
normalized), K1 = 0.01, K2 = 0.03, C = (K L)^2, population (co)variances,
the window kept inside the image (a "valid" convolution). These are the
constants of skimage's `structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=L)` and of
`tf.image.ssim(max_val=L)`, against which tests/test_paired_fidelity.py pins
this one. A window counts when its centre is in M (it may reach outside).
A volume with fewer than 11 voxels along an axis has no SSIM there (None).

`auto_mask` (`--mask=auto`) and its parts live in `input.medical.mask`,
which the conversion's 3-D patches sample inside too; they are imported
here under their old names.
"""

import math

import numpy as np

# The masks live with the input, which samples patches inside them too.
from input.medical.mask import (  # pylint: disable=unused-import
    BACKGROUND_AT_LOW, OTSU_BINS, auto_mask, fill_holes_2d, label, largest_component,
    otsu_threshold)

__all__ = [
    "BACKGROUND_AT_LOW", "FIGURES", "SSIM_K1", "SSIM_K2", "SSIM_SIGMA", "SSIM_SIZE", "auto_mask",
    "fill_holes_2d", "gaussian_window", "label", "largest_component", "mae", "otsu_threshold",
    "psnr", "rmse", "ssim", "ssim_map", "summarize", "volume_figures",
]

SSIM_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# Lower is better for the first two, higher for the rest.
FIGURES = {"mae": "min", "rmse": "min", "psnr": "max", "ssim_2d": "max", "ssim_3d": "max"}


def _masked(pred, ref, mask):
  pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
  if pred.shape != ref.shape:
    raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
  if mask is None:
    return pred.ravel(), ref.ravel()
  mask = np.asarray(mask, bool)
  if mask.shape != ref.shape:
    raise ValueError(f"mask {mask.shape} and reference {ref.shape} differ in shape")
  return pred[mask], ref[mask]


def mae(pred, ref, mask=None):
  """Mean absolute error inside `mask` (None: everywhere); None for an empty mask."""
  p, r = _masked(pred, ref, mask)
  return float(np.mean(np.abs(p - r))) if p.size else None


def rmse(pred, ref, mask=None):
  """Root mean squared error inside `mask`; None for an empty mask."""
  p, r = _masked(pred, ref, mask)
  return float(np.sqrt(np.mean((p - r) ** 2))) if p.size else None


def psnr(pred, ref, data_range, mask=None):
  """10 log10(data_range^2 / mse) inside `mask`; inf when equal, None when empty."""
  p, r = _masked(pred, ref, mask)
  if not p.size:
    return None
  mse = float(np.mean((p - r) ** 2))
  return math.inf if mse == 0.0 else 10.0 * math.log10(data_range ** 2 / mse)


def gaussian_window(size=SSIM_SIZE, sigma=SSIM_SIGMA):
  """The normalized 1-D Gaussian [size] (its outer products are the 2-D and
  3-D windows)."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  g = np.exp(-x ** 2 / (2.0 * sigma ** 2))
  return g / g.sum()


def _filter(x, weights, axes):
  """The separable weighted sum over `axes`, windows inside x only (valid)."""
  k = len(weights)
  for axis in axes:
    n = x.shape[axis] - k + 1
    out = 0.0
    for i, w in enumerate(weights):
      out = out + w * np.take(x, np.arange(i, i + n), axis=axis)
    x = out
  return x


def ssim_map(x, y, data_range, axes):
  """SSIM of every window position over `axes` of x and y (valid positions:
  each axis shrinks by SSIM_SIZE - 1). float64."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  w = gaussian_window()
  c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
  mx, my = _filter(x, w, axes), _filter(y, w, axes)
  vx = _filter(x * x, w, axes) - mx * mx
  vy = _filter(y * y, w, axes) - my * my
  cxy = _filter(x * y, w, axes) - mx * my
  return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def _centres(mask, axes):
  """The part of `mask` where windows over `axes` have their centres."""
  r = SSIM_SIZE // 2
  index = [slice(None)] * mask.ndim
  for axis in axes:
    index[axis] = slice(r, mask.shape[axis] - r)
  return mask[tuple(index)]


def ssim(pred, ref, data_range, mask=None, spatial_dims=2):
  """Mean SSIM inside `mask` of [S, rows, cols] volumes.

  Args:
    pred, ref: [S, rows, cols] arrays.
    data_range: L, the window's width.
    mask: bool [S, rows, cols], or None (every voxel).
    spatial_dims: 2: each slice's mean over its window centres in the mask,
      then the mean over the slices that have any; 3: the mean of the 3-D
      SSIM over the window centres in the mask.

  Returns:
    A float, or None when the volume is smaller than the window along an
    axis used or no window centre is in the mask.
  """
  pred, ref = np.asarray(pred, np.float64), np.asarray(ref, np.float64)
  if pred.shape != ref.shape or pred.ndim != 3:
    raise ValueError(f"expected two [S, rows, cols] volumes of one shape, got {pred.shape} "
                     f"and {ref.shape}")
  if spatial_dims not in (2, 3):
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
  axes = (1, 2) if spatial_dims == 2 else (0, 1, 2)
  if any(ref.shape[a] < SSIM_SIZE for a in axes):
    return None
  mask = np.ones(ref.shape, bool) if mask is None else np.asarray(mask, bool)
  centres = _centres(mask, axes)
  if not centres.any():
    return None
  values = ssim_map(pred, ref, data_range, axes)
  if spatial_dims == 3:
    return float(values[centres].mean())
  per_slice = [values[s][centres[s]].mean() for s in range(len(values)) if centres[s].any()]
  return float(np.mean(per_slice))


# --- Per volume and over volumes ---


def volume_figures(pred, ref, data_range, mask=None):
  """Every figure of one [S, rows, cols] volume (`FIGURES`), plus `voxels`,
  the voxels in the mask."""
  voxels = int(np.size(ref) if mask is None else np.count_nonzero(mask))
  return {"mae": mae(pred, ref, mask), "rmse": rmse(pred, ref, mask),
          "psnr": psnr(pred, ref, data_range, mask),
          "ssim_2d": ssim(pred, ref, data_range, mask, 2),
          "ssim_3d": ssim(pred, ref, data_range, mask, 3), "voxels": voxels}


def summarize(per_volume):
  """Mean, sd (sample, n - 1; 0 for one volume, nan when a value is
  infinite), median and count of each figure over volumes, skipping the
  volumes where it is None.

  Args:
    per_volume: a list of `volume_figures` dicts.

  Returns:
    {figure: {"mean", "sd", "median", "n"}}, a figure with no value {"n": 0}.
  """
  out = {}
  for name in FIGURES:
    values = np.array([v[name] for v in per_volume if v.get(name) is not None], np.float64)
    if not values.size:
      out[name] = {"n": 0}
      continue
    sd = 0.0 if values.size == 1 else (float(values.std(ddof=1)) if np.isfinite(values).all()
                                       else math.nan)  # PSNR is inf for an exact prediction.
    out[name] = {"mean": float(values.mean()), "sd": sd,
                 "median": float(np.median(values)), "n": int(values.size)}
  return out
