"""One resampling path for medical slices: translation brings a slice to
the model the way the conversion brought the training slices (the same
Lanczos filter, the same scale under --resize crop, pad or stretch), and
back onto the slice's own grid, so that a translated volume lines up with
its reference voxel for voxel.

The models here are known functions (the identity, a negation), so that
where each voxel lands is known by hand."""

import os

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from algorithms import base
from inference import volumes
from input import images
from input.medical import nifti

nib = pytest.importorskip("nibabel")

WINDOW = {"low": 0.0, "high": 200.0, "units": "", "source": "fixed"}


def _translator(fn, size, resize, stride=1):
  """A translator of `fn` for a model of `size` trained on data converted
  with --resize=`resize`, both domains in the window [0, 200]."""
  data = base.DataInfo(kind="paired", shape=(*size, 1), num_classes=0, name="t",
                       window={"A": WINDOW, "B": WINDOW}, resize=resize,
                       medical={"format": "nifti", "window": "100,200", "slice_axis": "axial"})
  return volumes.VolumeTranslator(fn, data, "AtoB", channels=1, stride=stride)


def _blobs(shape, centres, sigma=2.0):
  """Smooth Gaussian blobs (values 20..180) at `centres` (row, column) of
  every slice of a [S, rows, cols] stack."""
  rows, cols = np.mgrid[0:shape[1], 0:shape[2]]
  plane = np.zeros(shape[1:])
  for r, c in centres:
    plane += np.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * sigma ** 2))
  return np.repeat((20 + 160 * plane / plane.max())[None], shape[0], axis=0).astype(np.float32)


def _centroid(plane, r, c, radius=4):
  """The intensity centroid of `plane` within `radius` of (r, c), above its
  background."""
  window = plane[r - radius:r + radius + 1, c - radius:c + radius + 1] - 20.0
  window = np.clip(window, 0, None)
  rr, cc = np.mgrid[-radius:radius + 1, -radius:radius + 1]
  return (r + (rr * window).sum() / window.sum(), c + (cc * window).sum() / window.sum())


class ScaleTest(tf.test.TestCase):

  def test_scaled_shape_golden(self):
    # 48 x 32 onto 16 x 16: crop keeps the short side (x 0.5), pad the long
    # one (x 1/3), stretch each side its own.
    self.assertEqual(images.scaled_shape(48, 32, 16, 16, "crop"), (24, 16))
    self.assertEqual(images.scaled_shape(48, 32, 16, 16, "pad"), (16, 11))
    self.assertEqual(images.scaled_shape(48, 32, 16, 16, "stretch"), (16, 16))
    self.assertEqual(images.scaled_shape(32, 32, 16, 16, "crop"), (16, 16))

  def test_model_sees_what_the_conversion_gave_it(self):
    rng = np.random.default_rng(0)
    values = rng.uniform(0.0, 200.0, (1, 48, 32)).astype(np.float32)
    values = (values + np.roll(values, 1, axis=1) + np.roll(values, 1, axis=2)) / 3
    seen = []

    def record(x):
      seen.append(np.asarray(x))
      return x

    translator = _translator(record, (16, 16), "crop")
    translator.translate(values, translator.source)
    (x,) = seen
    self.assertEqual(x.shape, (1, 24, 16, 1))  # The whole slice, at the crop's scale.
    # The conversion: codes of the window, centre crop 32 x 32, Lanczos to 16 x 16.
    codes = translator.source.to_codes(values[0], 16)[..., None]
    converted = images.to_spec(codes, images.ImageSpec(16, 16, 1, 16, "crop"))[..., 0]
    seen_codes = (x[0, 4:20, :, 0] + 1) / 2 * 65535  # Rows 8..40 of the slice.
    # Lanczos reaches 3 output pixels: away from the crop's edges both see
    # the same pixels through the same filter.
    self.assertAllClose(seen_codes[3:-3], converted[3:-3].astype(np.float64), atol=1.0)


class AlignmentTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters("crop", "pad", "stretch")
  def test_translated_volume_lines_up_with_its_reference(self, resize):
    tmp = self.create_tempdir().full_path
    centres = [(7, 6), (20, 13), (11, 15)]
    a = _blobs((3, 28, 20), centres)  # [S, rows, cols]: not square, not the model's size.
    affine = np.diag([0.8, 1.1, 2.0, 1.0])
    for name, stack in (("A", a), ("B", 200.0 - a)):  # B is A negated in the window.
      os.makedirs(os.path.join(tmp, name))
      nib.save(nib.Nifti1Image(nifti.slices_to_volume(stack, "axial"), affine),
               os.path.join(tmp, name, "v.nii.gz"))
    out = os.path.join(tmp, "out")
    os.makedirs(out)
    # The model negates: in [-1, 1] over the window [0, 200], A -> 200 - A.
    translator = _translator(lambda x: -x, (16, 16), resize, stride=4)
    written, skipped = volumes.translate_nifti(translator, os.path.join(tmp, "A", "v.nii.gz"),
                                               out, "nifti")
    self.assertEqual(skipped, [])
    got = nifti.read_slices(written[0], "axial")[0][0]
    reference = nifti.read_slices(os.path.join(tmp, "B", "v.nii.gz"), "axial")[0][0]
    self.assertEqual(got.shape, reference.shape)
    self.assertTrue(np.array_equal(nib.load(written[0]).affine,
                                   nib.load(os.path.join(tmp, "B", "v.nii.gz")).affine))
    for r, c in centres:
      self.assertAllClose(_centroid(200.0 - got[1], r, c), _centroid(200.0 - reference[1], r, c),
                          atol=0.05, msg=(resize, r, c))
    # Aligned: far closer to the reference than to the reference moved by
    # one voxel either way.
    error = np.abs(got - reference).mean()
    for axis in (1, 2):
      for shift in (-1, 1):
        moved = np.abs(got - np.roll(reference, shift, axis=axis)).mean()
        self.assertLess(error, moved / 4, (resize, axis, shift, error, moved))


if __name__ == "__main__":
  tf.test.main()
