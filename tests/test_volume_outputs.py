"""What a run trained on volumes writes: previews and sample grids as the three
orthogonal mid-planes of each volume (`training.samples.mid_slices`), and
`pipeline.sample` as one NIfTI volume per sample in modality units with the
training spacing (`inference.volume_samples`), PNG formats refused.

The sampling run is a fake: `sampling.load_algorithm` returns a generator of
known volumes, so that every written voxel can be checked by hand."""

import json
import os
import types

import numpy as np
import pytest
import tensorflow as tf

from inference import sampling
from inference import volume_samples
from inference import volumes
from input.medical import nifti
from training import samples as samples_lib

nib = pytest.importorskip("nibabel")

D, H, W = 4, 6, 5


def _hand_volume():
  """v[d, h, w] = 100 d + 10 h + w: every voxel names its own place."""
  d, h, w = np.meshgrid(np.arange(D), np.arange(H), np.arange(W), indexing="ij")
  return (100 * d + 10 * h + w).astype(np.float32)[None, ..., None]  # [1, D, H, W, 1]


# --- Previews ---


def test_mid_slices_by_hand():
  v = _hand_volume()
  out = samples_lib.mid_slices(v)
  # Cells of max(H, D) = 6 rows by max(W, H) = 6 columns, three side by side.
  assert out.shape == (1, 6, 18, 1)
  x = out[0, ..., 0]
  # Left: the slice at D // 2 = 2, [H, W] = 6 x 5, one column of padding.
  np.testing.assert_array_equal(x[:, :5], 200 + 10 * np.arange(H)[:, None] + np.arange(W))
  np.testing.assert_array_equal(x[:, 5], -1)
  # Middle: the plane at H // 2 = 3, [D, W] = 4 x 5, the last slice on top;
  # rows padded 1 above and 1 below, one column on the right.
  np.testing.assert_array_equal(x[1:5, 6:11], 100 * np.arange(D)[::-1, None] + 30
                                + np.arange(W))
  assert x[1, 6] == 330 and x[4, 6] == 30
  np.testing.assert_array_equal(x[[0, 5], 6:12], -1)
  np.testing.assert_array_equal(x[:, 11], -1)
  # Right: the plane at W // 2 = 2, [D, H] = 4 x 6, the last slice on top.
  np.testing.assert_array_equal(x[1:5, 12:18], 100 * np.arange(D)[::-1, None]
                                + 10 * np.arange(H) + 2)
  np.testing.assert_array_equal(x[[0, 5], 12:18], -1)


def test_mid_slices_of_a_cube_have_no_padding():
  v = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 8, 1)).astype(np.float32)
  out = samples_lib.mid_slices(v)
  assert out.shape == (2, 8, 24, 1) and out.dtype == np.float32
  np.testing.assert_array_equal(out[:, :, 8:16], v[:, ::-1, 4])


def test_image_grid_of_volumes_tiles_their_mid_planes():
  v = np.random.default_rng(1).uniform(-1, 1, (3, 8, 8, 8, 1)).astype(np.float32)
  grid = samples_lib.image_grid(v, columns=3)
  np.testing.assert_array_equal(grid, samples_lib.image_grid(samples_lib.mid_slices(v),
                                                             columns=3))
  assert grid.shape == (2 + 8 + 2, 2 + 3 * (24 + 2), 3)


def test_mid_slices_refuses_images():
  with pytest.raises(ValueError, match=r"mid_slices takes volumes \[B, D, H, W, C\], got shape "
                     r"\(2, 8, 8, 1\)"):
    samples_lib.mid_slices(np.zeros((2, 8, 8, 1)))


# --- pipeline.sample ---

LOW, HIGH = -1000.0, 1000.0
SPACING = (3.0, 2.0, 1.5)


class _FakeGenerator:
  """What `sampling.run` uses of a sampling algorithm: sample i is the hand
  volume scaled into [-1, 1] and shifted by i / 10."""
  inference = "sampling"

  def __init__(self, axis="axial", channels=1, window=True, spacing=SPACING):
    self.data = types.SimpleNamespace(
        kind="image", shape=(D, H, W, channels), volumes=True, voxel_spacing={"image": spacing},
        window={"image": {"low": LOW, "high": HIGH}} if window else None,
        medical={"format": "nifti", "slice_axis": axis, "volumes": True})
    self.config = types.SimpleNamespace(algo="dcgan", z_dim=4, data="data")

  def sample(self, z, labels=None):
    del labels
    i = tf.range(tf.shape(z)[0], dtype=tf.float32)[:, None, None, None, None]
    return tf.constant(_hand_volume() / 400.0 - 0.9) + i / 10.0


@pytest.fixture
def fake_run(monkeypatch):
  def use(**kwargs):
    algorithm = _FakeGenerator(**kwargs)
    monkeypatch.setattr(sampling, "load_algorithm", lambda *_: (algorithm, 3))
    return algorithm
  return use


def _expected(i):
  x = np.clip(_hand_volume()[0, ..., 0] / 400.0 - 0.9 + i / 10.0, -1, 1)
  return LOW + (x + 1) / 2 * (HIGH - LOW)


@pytest.mark.parametrize("axis, zooms", [
    ("axial", (1.5, 2.0, 3.0)),      # D along z; rows along y, columns along x
    ("sagittal", (3.0, 1.5, 2.0)),   # D along x; rows along z, columns along y
    ("coronal", (1.5, 3.0, 2.0)),    # D along y; rows along z, columns along x
])
def test_nifti_volume_per_sample(tmp_path, fake_run, axis, zooms):
  fake_run(axis=axis)
  out = os.path.join(tmp_path, "samples")
  num, step = sampling.run(sampling.SampleConfig(model_dir="run", output=out, format="nifti",
                                                 num=2))
  assert (num, step) == (2, 3)
  assert sorted(os.listdir(out)) == ["00000.nii.gz", "00001.nii.gz", volumes.WINDOW_NAME]
  for i in range(2):
    img = nib.load(os.path.join(out, f"{i:05d}.nii.gz"))
    assert img.header.get_zooms() == pytest.approx(zooms)
    np.testing.assert_allclose(img.affine, np.diag(zooms + (1.0,)))
    assert nib.aff2axcodes(img.affine) == ("R", "A", "S")
    data = np.asarray(img.dataobj, np.float32)
    # Read back in slice order, each voxel where the generator put it.
    np.testing.assert_allclose(nifti.volume_to_slices(data, axis), _expected(i), atol=1e-3)
  with open(os.path.join(out, volumes.WINDOW_NAME), encoding="utf-8") as f:
    record = json.load(f)
  assert record["voxel_spacing"] == list(SPACING) and record["slice_axis"] == axis


def test_ras_zooms_read_back_by_the_readers_rule():
  # The NIfTI reader's spacing of a volume sliced along `axis`:
  # (zooms[axis], *plane_spacing(zooms, axis)) gives the (D, H, W) back.
  for axis in nifti.AXES:
    zooms = volume_samples.ras_zooms(SPACING, axis)
    assert (zooms[nifti.AXES[axis]], *nifti.plane_spacing(zooms, axis)) == SPACING


def test_unknown_spacing_is_1_mm(tmp_path, fake_run):
  fake_run(spacing=None)
  out = os.path.join(tmp_path, "samples")
  sampling.run(sampling.SampleConfig(model_dir="run", output=out, format="nifti", num=1))
  assert nib.load(os.path.join(out, "00000.nii.gz")).header.get_zooms() == (1.0, 1.0, 1.0)


def test_npz_and_grid_of_volumes(tmp_path, fake_run):
  fake_run()
  npz = os.path.join(tmp_path, "s.npz")
  sampling.run(sampling.SampleConfig(model_dir="run", output=npz, num=2))
  assert np.load(npz)["x"].shape == (2, D, H, W, 1)
  grid = os.path.join(tmp_path, "grid.png")
  sampling.run(sampling.SampleConfig(model_dir="run", output=grid, num=2))
  assert os.path.getsize(grid) > 0


@pytest.mark.parametrize("fmt, output, kwargs, message", [
    ("png16", "dir", {}, r"^--format=png16 writes 2-D images, and this run's samples are volumes "
                         r"\(4, 6, 5, 1\): use --format=nifti"),
    ("png", "dir", {}, r"^--format=png writes 2-D images"),
    (None, "dir", {}, r"^--output='.*dir' \(a folder of PNGs\) writes 2-D images"),
    ("nifti", "dir", {"channels": 3}, r"^--format=nifti writes 1-channel samples; this run's "
                                      r"volumes have 3 channels \(use --output=\*.npz\)$"),
    ("nifti", "dir", {"window": False}, r"^--format=nifti needs the data's window"),
])
def test_refusals(tmp_path, fake_run, fmt, output, kwargs, message):
  fake_run(**kwargs)
  with pytest.raises(ValueError, match=message):
    sampling.run(sampling.SampleConfig(model_dir="run", output=os.path.join(tmp_path, output),
                                       format=fmt, num=1))
  assert not os.path.exists(os.path.join(tmp_path, output))
