"""Image features of volumes: what a 2-D feature network sees of a run
trained on volumes (`pipeline.convert --volumes`).

The feature networks of `pipeline.evaluate` (`evaluation.features`:
InceptionV3, or a Keras model) are 2-D. A volume [D, H, W, C] is shown to
them as its three orthogonal mid-planes, the planes that the sample grids
and TensorBoard show (`training.samples.mid_slices`: the plane at D // 2,
at H // 2 and at W // 2, each centred in a cell padded with -1), each plane
an image of its own. So:

- FID, KID, precision/recall and the Inception Score of a volume run are
  those of its mid-plane images, three per volume (the real volumes' and the
  generated ones' alike): `features` returns one feature row per plane.
  They compare the planes' distributions, not whole volumes; a defect off
  the mid-planes goes unseen (the memorization audit's pixel space sees the
  whole volume).
- The memorization audit's feature space (`evaluation.memorization`) takes
  one vector per volume: its three planes' features concatenated
  (`per_example`).

Images [B, H, W, C] pass through as they are.
"""

import numpy as np

from training import samples as samples_lib

__all__ = ["PLANES", "PROTOCOL", "features", "is_volume_batch", "per_example", "planes"]

PLANES = 3  # The orthogonal mid-planes of `training.samples.mid_slices`.
PROTOCOL = ("volumes: features of each volume's three orthogonal mid-planes (planes at D/2, "
            "H/2 and W/2, training.samples.mid_slices), each plane an image")


def is_volume_batch(x):
  """Whether `x` is a batch of volumes [B, D, H, W, C] rather than images."""
  return np.ndim(x) == 5


def planes(volumes):
  """[B, D, H, W, C] -> [3 B, rows, cols, C]: the mid-planes of each volume
  (`mid_slices`' three cells), volume after volume."""
  side_by_side = samples_lib.mid_slices(volumes)
  b, rows, cols, c = side_by_side.shape
  cells = side_by_side.reshape(b, rows, PLANES, cols // PLANES, c)
  return np.moveaxis(cells, 2, 1).reshape(b * PLANES, rows, cols // PLANES, c)


def features(net, x):
  """(features, logits or None) of a batch: `net`'s of images, or of each
  volume's mid-planes (`PLANES` rows per volume, volume after volume)."""
  return net(planes(x) if is_volume_batch(x) else x)


def per_example(features_, num):
  """[num, d] feature vectors of `num` examples from `features`' rows: an
  image's row, or a volume's planes' rows concatenated."""
  return np.asarray(features_, np.float32).reshape(num, -1)
