"""The picture of one evaluated volume (`pipeline.evaluate`, paired fidelity):
a row per slice (three, at a quarter, half and three quarters of the slice
axis), columns source (when known), prediction, reference and the absolute
error, with a colour bar for the error in modality units. People look
before they read.

Images are grey over their window (source: the source's; prediction and
reference: the reference's). The error is coloured (an inferno-like map)
from 0 to its 99th percentile inside the mask, brighter values saturating;
voxels outside the mask are dark grey. Pillow only.
"""

import os

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

# Inferno's colours at 0, 1/4, 1/2, 3/4 and 1: dark to bright, readable in grey.
_ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
                    np.float64)
_OUTSIDE = (40, 40, 40)
_MIN_TILE = 128
_TEXT = 14  # Height of a text line.
_BAR = 16  # Width of the colour bar.


def colormap(t):
  """[...] values in [0, 1] -> [..., 3] uint8 colours."""
  t = np.clip(np.asarray(t, np.float64), 0.0, 1.0) * (len(_ANCHORS) - 1)
  i = np.minimum(np.floor(t).astype(int), len(_ANCHORS) - 2)
  f = (t - i)[..., None]
  return np.round(_ANCHORS[i] * (1 - f) + _ANCHORS[i + 1] * f).astype(np.uint8)


def picture_slices(num_slices):
  """The slices shown: a quarter, half and three quarters along the axis."""
  return sorted({min(num_slices - 1, (num_slices * q) // 4) for q in (1, 2, 3)})


def _grey(values, low, high):
  g = (np.asarray(values, np.float64) - low) / max(high - low, 1e-12)
  return np.repeat((np.clip(g, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def _tile(rgb, scale):
  return np.kron(rgb, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else rgb


def write(path, prediction, reference, window, mask, source=None, source_window=None,
          units="", title=""):
  """Writes the picture of one volume as PNG.

  Args:
    path: the PNG to write (its folder is made).
    prediction, reference: [S, rows, cols] in modality units.
    window: the reference's `Window` (grey scale of prediction and reference).
    mask: bool [S, rows, cols], the voxels evaluated.
    source, source_window: the source volume and its `Window`, or None.
    units: the modality's units for the colour bar ("" for arbitrary units).
    title: a line above the picture.

  Returns:
    (the slices shown, the top of the error scale).
  """
  error = np.abs(np.asarray(prediction, np.float64) - np.asarray(reference, np.float64))
  inside = error[mask] if mask.any() else error.ravel()
  top = float(np.percentile(inside, 99)) if inside.size else 0.0
  top = top if top > 0 else 1.0
  slices = picture_slices(len(reference))
  rows, cols = reference.shape[1:]
  scale = max(1, -(-_MIN_TILE // max(rows, cols)))
  columns = ([("source", source, source_window)] if source is not None else []) + [
      ("prediction", prediction, window), ("reference", reference, window),
      (f"|error| {units}".rstrip(), None, None)]
  th, tw, pad, left = rows * scale, cols * scale, 4, 56
  width = left + len(columns) * (tw + pad) + _BAR + 60
  height = 2 * _TEXT + len(slices) * (th + pad) + pad
  canvas = Image.new("RGB", (width, height), (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  font = ImageFont.load_default()
  draw.text((pad, 0), title, fill=(0, 0, 0), font=font)
  for c, (name, _, _) in enumerate(columns):
    draw.text((left + c * (tw + pad), _TEXT), name, fill=(0, 0, 0), font=font)
  for r, s in enumerate(slices):
    y = 2 * _TEXT + pad + r * (th + pad)
    for c, (name, values, w) in enumerate(columns):
      if values is None:
        rgb = colormap(error[s] / top)
        rgb[~mask[s]] = _OUTSIDE
      else:
        rgb = _grey(values[s], w.low, w.high)
      canvas.paste(Image.fromarray(_tile(rgb, scale)), (left + c * (tw + pad), y))
    draw.text((pad, y + th // 2 - _TEXT // 2), f"slice {s}", fill=(0, 0, 0), font=font)
  # The colour bar of the error: top value at the top.
  x0, y0 = left + len(columns) * (tw + pad), 2 * _TEXT + pad + _TEXT
  bar_h = max(height - y0 - 2 * _TEXT, 16)
  ramp = colormap(np.linspace(1, 0, bar_h))[:, None, :].repeat(_BAR, axis=1)
  canvas.paste(Image.fromarray(ramp), (x0, y0))
  draw.text((x0 + _BAR + 3, y0 - 2), f"{top:.4g}", fill=(0, 0, 0), font=font)
  draw.text((x0 + _BAR + 3, y0 + bar_h - _TEXT), "0", fill=(0, 0, 0), font=font)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  canvas.save(path)
  return slices, top
