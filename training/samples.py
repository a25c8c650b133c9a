"""Sample grids: images tiled into one picture (volumes as their three
orthogonal mid-planes), 2-D points rendered as a scatter."""

import math

import numpy as np
from PIL import Image


def to_uint8(images):
  """[-1, 1] float -> uint8, clipping."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(
      np.uint8)


def mid_slices(volumes):
  """The three orthogonal mid-planes of each volume, side by side.

  For a volume [D, H, W, C] (D along the conversion's slice axis, H and W the
  rows and columns of its slices): the plane at D // 2 ([H, W], a slice as
  2-D runs see it), at H // 2 ([D, W]) and at W // 2 ([D, H]), in that order
  from left to right. The last two show D upwards (row 0 is the last slice):
  for axial slices, the default, the head is at the top, as radiology shows
  coronal and sagittal planes. Each plane is centred in a cell of
  max(H, D) x max(W, H) voxels, padded with -1 (black), so that no plane is
  stretched.

  Args:
    volumes: [B, D, H, W, C].

  Returns:
    [B, max(H, D), 3 * max(W, H), C], of the volumes' dtype.

  Raises:
    ValueError: not a batch of volumes.
  """
  volumes = np.asarray(volumes)
  if volumes.ndim != 5:
    raise ValueError(f"mid_slices takes volumes [B, D, H, W, C], got shape {volumes.shape}")
  _, d, h, w, _ = volumes.shape
  planes = [volumes[:, d // 2], volumes[:, ::-1, h // 2], volumes[:, ::-1, :, w // 2]]
  rows, cols = max(h, d), max(w, h)
  cells = []
  for p in planes:
    dr, dc = rows - p.shape[1], cols - p.shape[2]
    cells.append(np.pad(p, [(0, 0), (dr // 2, dr - dr // 2), (dc // 2, dc - dc // 2), (0, 0)],
                        constant_values=-1))
  return np.concatenate(cells, axis=2)


def image_grid(images, columns=None, pad=2):
  """Tiles [N, H, W, C] images in [-1, 1] into one uint8 [H', W', 3] picture.

  Volumes [N, D, H, W, C] are tiled as their three mid-planes (`mid_slices`).
  """
  if np.ndim(images) == 5:
    images = mid_slices(images)
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
