"""Tiles of a volume: the held-out split of paired 3-D patches.

`pipeline.convert --volumes --patch_size=N --patches_per_volume=K` trains on
K random N^3 patches per pair, but random patches cannot be scored per
patient. Its held-out split (`--holdout`) stores each held-out pair as
*tiles* instead: a regular grid of N^3 patches, one every N voxels along
each axis, the last one flush with the border (so that tiles overlap there
when N does not divide the size, and never leave the volume). Their corners
go into the manifest's `patch_corners`, as the training patches' do, and
`pipeline.evaluate` reassembles the volumes from them (`assemble`).

The grid is `inference.sliding_window.patch_starts` at overlap 0 (which
input/ cannot import: it is a lower layer); tests/test_volume_evaluation.py
checks that the two agree.
"""

import itertools

import numpy as np

__all__ = ["assemble", "tile_corners", "tile_starts", "volume_shape"]


def tile_starts(size, n):
  """The starts of the tiles along one axis of `size` voxels (size >= n >= 1):
  0, n, 2n, ... and the last at size - n."""
  if not 1 <= n <= size:
    raise ValueError(f"a tile of {n} voxels does not fit along an axis of {size}")
  starts = list(range(0, size - n + 1, n))
  if starts[-1] != size - n:
    starts.append(size - n)
  return starts


def tile_corners(shape, n):
  """The corner [d, h, w] of every tile of a volume of spatial `shape`.

  Returns:
    int64 [T, 3], the first axis varying slowest.
  """
  axes = [tile_starts(int(s), int(n)) for s in shape]
  return np.array(list(itertools.product(*axes)), np.int64).reshape(-1, len(shape))


def volume_shape(corners, n):
  """The spatial shape of the volume that tiles of side `n` at `corners`
  cover: the last tile is flush with the border along each axis."""
  return tuple(int(c) + int(n) for c in np.max(np.asarray(corners), axis=0))


def assemble(tiles, corners):
  """The volume that `tiles` cover, bit for bit.

  Args:
    tiles: [T, n, n, n, C] arrays (any dtype), tile t cut at corners[t].
    corners: [T, 3] ints, the grid of `tile_corners`.

  Returns:
    [D, H, W, C] of the tiles' dtype.

  Raises:
    ValueError: tiles and corners that differ in number, or that leave a
      voxel uncovered (not the whole grid of one volume).
  """
  tiles, corners = np.asarray(tiles), np.asarray(corners, np.int64)
  if len(tiles) != len(corners) or not len(tiles):
    raise ValueError(f"{len(tiles)} tiles but {len(corners)} corners")
  n = tiles.shape[1]
  shape = volume_shape(corners, n)
  out = np.zeros(shape + tiles.shape[4:], tiles.dtype)
  covered = np.zeros(shape, bool)
  for tile, corner in zip(tiles, corners):
    box = tuple(slice(int(c), int(c) + n) for c in corner)
    out[box] = tile
    covered[box] = True
  if not covered.all():
    raise ValueError(f"{len(tiles)} tiles of {n}^3 leave {int((~covered).sum())} of "
                     f"{covered.size} voxels of a {'x'.join(map(str, shape))} volume uncovered; "
                     "they are not the tiles of one whole volume")
  return out
