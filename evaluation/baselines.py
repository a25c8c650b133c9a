"""Trivial translations that a paired translation model must beat, fitted on
the training pairs only (`pipeline.evaluate --model_dir=RUN --real=DATA`
prints them beside the model):

- `identity`: the source as the prediction, where the two sides share units
  (`shares_units`: CT -> CT, low-dose -> full-dose);
- `IntensityMapping`: a lookup table from the source's intensity to the mean
  target intensity of the training voxels that have it, inside the mask: the
  best prediction that looks at one voxel only (Bayes-optimal for the squared
  error among functions of the voxel's own intensity, up to the binning).

Both work on the intensities as the model sees them (the data's stored codes
as [-1, 1]), so they receive exactly the model's inputs and their outputs are
mapped to modality units exactly as the model's are.
"""

import numpy as np

__all__ = [
    "IDENTITY", "INTENSITY_MAPPING", "LUT_BINS", "IntensityMapping", "identity", "shares_units",
]

IDENTITY = "identity"
INTENSITY_MAPPING = "intensity_mapping"
LUT_BINS = 256


def shares_units(source, target):
  """Whether source and target `Window`s put values in one unit, so that a
  source value is a prediction of the target's: both fixed (not per-volume
  percentiles) and of the same units."""
  per_volume = [w.source.startswith("percentile") for w in (source, target)]
  return not any(per_volume) and source.units == target.units


def identity(source_values, target_window):
  """The source in modality units as the prediction, clipped to the target's
  window (as the model's output is)."""
  return np.clip(np.asarray(source_values, np.float32), target_window.low, target_window.high)


class IntensityMapping:
  """A per-voxel intensity mapping: LUT_BINS equal bins of source intensity
  over [low, high], each mapped to the mean target intensity of the training
  voxels in it.

      lut = IntensityMapping(-1.0, 1.0)
      for source, target, mask in training_pairs:
        lut.add(source, target, mask)
      prediction = lut(test_source)

  A bin that no training voxel fell in takes the linear interpolation of the
  nearest filled bins' means at its centre (the first or last filled bin's
  mean beyond them). Values outside [low, high] fall in the end bins.
  """

  def __init__(self, low, high, bins=LUT_BINS):
    if not high > low or bins < 1:
      raise ValueError(f"need low < high and bins >= 1, got {low}, {high}, {bins}")
    self.low, self.high, self.bins = float(low), float(high), int(bins)
    self.sums = np.zeros(self.bins, np.float64)
    self.counts = np.zeros(self.bins, np.int64)

  def _bin(self, values):
    scaled = (np.asarray(values, np.float64) - self.low) / (self.high - self.low) * self.bins
    return np.clip(np.floor(scaled), 0, self.bins - 1).astype(np.int64)

  def add(self, source, target, mask=None):
    """Adds training voxels (arrays of one shape; `mask` picks some)."""
    source, target = np.asarray(source), np.asarray(target)
    if source.shape != target.shape:
      raise ValueError(f"source {source.shape} and target {target.shape} differ in shape")
    if mask is not None:
      source, target = source[mask], target[mask]
    index = self._bin(source).ravel()
    self.sums += np.bincount(index, np.asarray(target, np.float64).ravel(), self.bins)
    self.counts += np.bincount(index, minlength=self.bins)

  @property
  def voxels(self):
    return int(self.counts.sum())

  def table(self):
    """The mean target intensity of each bin [bins] (empty bins interpolated).

    Raises:
      ValueError: no training voxel was added.
    """
    filled = self.counts > 0
    if not filled.any():
      raise ValueError("the intensity mapping has no training voxel (every mask was empty)")
    centres = np.arange(self.bins)
    means = self.sums[filled] / self.counts[filled]
    return np.interp(centres, centres[filled], means)

  def __call__(self, source):
    """The mapped intensities of `source`, float32."""
    return self.table()[self._bin(source)].astype(np.float32)

  def describe(self):
    return {"bins": self.bins, "range": [self.low, self.high], "training_voxels": self.voxels,
            "filled_bins": int((self.counts > 0).sum())}
