"""Sample grids: images tiled into one picture, 2-D points rendered as a scatter."""

import math

import numpy as np
from PIL import Image


def to_uint8(images):
  """[-1, 1] float -> uint8, clipping."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(
      np.uint8)


def image_grid(images, columns=None, pad=2):
  """Tiles [N, H, W, C] images in [-1, 1] into one uint8 [H', W', 3] picture."""
  x = to_uint8(images)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  n, h, w, c = x.shape
  columns = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / columns))
  grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    y, x0 = pad + r * (h + pad), pad + col * (w + pad)
    grid[y:y + h, x0:x0 + w] = x[i]
  return grid


def scatter(points, reference=None, size=256, extent=None):
  """Renders 2-D points (red) over reference points (gray) as uint8 [S, S, 3]."""
  points = np.asarray(points, np.float32)
  allp = points if reference is None else np.concatenate([points, reference])
  if extent is None:
    extent = float(np.max(np.abs(allp))) * 1.1 + 1e-6
  img = np.full((size, size, 3), 255, np.uint8)

  def draw(p, color, radius):
    ij = np.round((p / extent * 0.5 + 0.5) * (size - 1)).astype(int)
    for dy in range(-radius, radius + 1):
      for dx in range(-radius, radius + 1):
        q = ij + [dx, dy]
        ok = np.all((q >= 0) & (q < size), axis=1)
        img[size - 1 - q[ok, 1], q[ok, 0]] = color

  if reference is not None:  # Mode centres as gray squares under the samples.
    draw(np.asarray(reference, np.float32), (170, 170, 170), 3)
  draw(points, (200, 0, 0), 0)
  return img


def save_png(path, picture):
  Image.fromarray(picture).save(path)
