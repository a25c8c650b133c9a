"""Resampling whole volumes: the 3-D form of the one resampling path.

Medical slices are resized by one function, `input.images.resize` (Lanczos,
Pillow, float32, half-pixel centres, antialiased when shrinking), in the
conversion and in translation alike. A volume [D, H, W] is resized with the
same kernel, separably:

1. in the plane, slice by slice, with `images.resize`, exactly as a slice
   is resized in slice mode;
2. then along D, with `images.resize` of the [D, H, W] array read as
   [rows, columns, channels]: each [D, H] plane at one column is resized to
   [D', H], and Pillow, whose width is then unchanged, makes only its
   vertical pass: the same 1-D Lanczos kernel along D, nothing in the plane.

An axis already at its size is not touched, so a volume already at its size
comes back bit for bit.

Fitting to `--volume_size` follows `--resize` as slices do
(`images.fitted_shape`), with one scale on all three axes: `crop` keeps
whole the axis that needs the largest scale and crops the others (centred)
to the output's proportions, `pad` keeps whole the one that needs the
smallest and pads the others with zeros (the window's low end), `stretch`
scales each axis on its own. The scale is in voxels; `--spacing=MM` first
resamples the volume to isotropic MM voxels, so that the fit keeps
millimetres in proportion.

`geometry` computes, from a volume's shape and spacing alone, every size and
spacing on the way, for the plan and the manifest; `apply` does the same to
the values.
"""

from typing import NamedTuple

import numpy as np

from input import images


def fitted_box(shape, out_shape, mode):
  """The size of what `fit` resizes onto `out_shape`, for any number of axes.

  `images.fitted_shape` for N axes (equal to it for two): `crop` keeps the
  axis with the largest out/in ratio whole and takes the others at the
  output's proportions (smaller: cropped), `pad` keeps the axis with the
  smallest ratio whole (the others larger: padded), `stretch` keeps all.

  Args:
    shape: the source's size per axis.
    out_shape: the output's size per axis.
    mode: one of `images.RESIZE_MODES`.

  Returns:
    A tuple of sizes, one per axis.
  """
  shape, out_shape = tuple(int(s) for s in shape), tuple(int(s) for s in out_shape)
  if mode not in images.RESIZE_MODES:
    raise ValueError(f"resize must be one of {images.RESIZE_MODES}, got {mode!r}")
  if mode == "stretch":
    return shape
  ratios = [o / s for s, o in zip(shape, out_shape)]
  b = int(np.argmax(ratios) if mode == "crop" else np.argmin(ratios))
  box = []
  for i, (s, o) in enumerate(zip(shape, out_shape)):
    if i == b or s * out_shape[b] == shape[b] * o:  # In proportion already.
      box.append(s)
    else:
      box.append(max(1, round(shape[b] * o / out_shape[b])))
  return tuple(box)


def crop_or_pad(x, box):
  """Crops (centred) or pads (zeros, centred) each axis of `x` to `box`, as
  `images.to_spec` does a slice."""
  for axis, new in enumerate(box):
    n = x.shape[axis]
    if new < n:
      start = (n - new) // 2
      x = np.take(x, np.arange(start, start + new), axis=axis)
    elif new > n:
      pad = [(0, 0)] * x.ndim
      pad[axis] = ((new - n) // 2, new - n - (new - n) // 2)
      x = np.pad(x, pad)
  return x


def resize_volume(x, size):
  """Resizes float32 [D, H, W] to `size` (D', H', W') with the Lanczos of
  `images.resize`: in the plane slice by slice, then along D (see the
  module docstring). Axes already at their size are left as they are."""
  d, h, w = (int(s) for s in size)
  x = np.asarray(x, np.float32)
  if x.shape[1:] != (h, w):
    x = np.stack([images.resize(s[..., None], h, w)[..., 0] for s in x])
  if x.shape[0] != d:
    x = images.resize(x, d, h)  # [D, H, W] read as rows, columns, channels.
  return x


class Geometry(NamedTuple):
  """The sizes and spacings of one volume on its way to a record.

  Attributes:
    source_shape: (D, H, W) as read.
    source_spacing: (d, h, w) mm as read, or None when unknown.
    resampled_shape: after `--spacing` (the source's without it).
    resampled_spacing: the spacing after `--spacing`: MM up to the rounding
      of the shape (n * spacing / resampled n exactly); None when unknown.
    shape: as stored (`--volume_size`, or the resampled shape).
    spacing: of the stored voxels, or None when unknown.
  """
  source_shape: tuple
  source_spacing: tuple | None
  resampled_shape: tuple
  resampled_spacing: tuple | None
  shape: tuple
  spacing: tuple | None


def geometry(shape, spacing, mm=None, size=None, mode="crop"):
  """The `Geometry` of a volume of `shape` and `spacing`.

  Args:
    shape: (D, H, W).
    spacing: (d, h, w) in mm, or None when unknown.
    mm: `--spacing`, or None.
    size: `--volume_size` (D, H, W), or None (keep the resampled shape).
    mode: `--resize`.

  Raises:
    ValueError: `mm` given for a volume without a spacing.
  """
  shape = tuple(int(s) for s in shape)
  spacing = None if spacing is None else tuple(float(s) for s in spacing)
  resampled, resampled_spacing = shape, spacing
  if mm is not None:
    if spacing is None:
      raise ValueError(f"its header gives no voxel spacing, so it cannot be resampled to "
                       f"--spacing={mm:g}")
    resampled = tuple(max(1, round(n * s / mm)) for n, s in zip(shape, spacing))
    resampled_spacing = tuple(n * s / m for n, s, m in zip(shape, spacing, resampled))
  out = resampled if size is None else tuple(int(s) for s in size)
  stored = resampled_spacing
  if stored is not None:
    box = fitted_box(resampled, out, mode)
    stored = tuple(s * b / o for s, b, o in zip(resampled_spacing, box, out))
  return Geometry(shape, spacing, resampled, resampled_spacing, out, stored)


def scaled_shape(shape, spacing, mm=None, size=None, mode="crop"):
  """The size a whole volume takes at the scale the conversion gives it: the
  3-D `images.scaled_shape`.

  The conversion resamples to `--spacing` (`mm`), crops or pads to the
  output's proportions (`fitted_box`) and resizes that onto `--volume_size`;
  at the same scale the whole volume is resampled * size / box along each
  axis, rounded. Translating a scan resizes it to this size and back
  (`inference.volume_translate`), so that the model sees anatomy at the
  scale of its training patches.

  Args: as `geometry`.

  Raises:
    ValueError: `mm` given for a volume without a spacing (`geometry`).
  """
  geom = geometry(shape, spacing, mm, size, mode)
  box = fitted_box(geom.resampled_shape, geom.shape, mode)
  return tuple(max(1, round(r * o / b)) for r, o, b in zip(geom.resampled_shape, geom.shape, box))


def apply(codes, geom, mode):
  """Brings a volume's 16-bit codes [D, H, W] to `geom.shape`.

  Returns:
    uint16 [D', H', W']: `codes` itself when nothing changes its size;
    otherwise resampled to `--spacing` and fitted (`resize_volume` on the
    float codes, then rounded and clipped once).
  """
  if tuple(codes.shape) != geom.source_shape:
    raise ValueError(f"volume of shape {codes.shape}, expected {geom.source_shape}")
  if geom.resampled_shape == geom.source_shape and geom.shape == geom.source_shape:
    return codes
  x = np.asarray(codes, np.float32)
  x = resize_volume(x, geom.resampled_shape)
  x = crop_or_pad(x, fitted_box(x.shape, geom.shape, mode))
  x = resize_volume(x, geom.shape)
  return np.clip(np.round(x), 0, 65535).astype(np.uint16)
