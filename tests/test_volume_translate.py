"""pipeline.translate of a run trained on volumes: whole NIfTI scans through a
3-D patch model by sliding windows (`inference.volume_translate`), windowed in
and out as the 2-D path does, written with the input's shape, affine and
header; --overlap given only to such runs.

The run is a fake: `sampling.load_algorithm` returns a translation algorithm
whose generator is the identity on [n, 8, 8, 8, 1] patches, so that the
translation of a scan is the scan itself, up to the 16-bit window codes."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import algorithms
from algorithms import base
from inference import sampling
from inference import translate
from inference import volume_translate
from inference import volumes

nib = pytest.importorskip("nibabel")

# Voxel axis i -> x flipped (L), j -> z (S), k -> y (A), as test_medical_out's.
AFFINE = np.array([[-2.0, 0.0, 0.0, 10.0], [0.0, 0.0, 1.5, -5.0], [0.0, 1.0, 0.0, 3.0],
                   [0.0, 0.0, 0.0, 1.0]])
LOW, HIGH = -50.0, 150.0  # --window=50,200 for both domains.
PATCH = 8


class _FakeTranslation:
  """What `translate.run` uses of a translation algorithm; its generator is
  the identity and records the patch batches it was traced with."""
  inference = algorithms.TRANSLATION
  stride = 1

  def __init__(self, shape):
    window = {"low": LOW, "high": HIGH, "units": "", "source": "50,200"}
    self.data = base.DataInfo("paired", shape, 0, "fake", window={"A": window, "B": window},
                              medical={"format": "nifti", "window": "50,200",
                                       "slice_axis": "axial"})
    self.config = type("Config", (), {"algo": "pix2pix"})()
    self.shapes = []

  def translation_direction(self, direction):
    if direction not in (None, "AtoB"):
      raise ValueError("pix2pix translates one way only")
    return "AtoB", False

  def translate(self, x, reverse=False):
    del reverse
    self.shapes.append(tuple(x.shape))
    return tf.identity(x)


@pytest.fixture
def fake_run(monkeypatch):
  def use(shape):
    algorithm = _FakeTranslation(shape)
    monkeypatch.setattr(sampling, "load_algorithm", lambda *_: (algorithm, 7))
    return algorithm
  return use


def _scan(tmp_path, shape=(11, 13, 9)):
  values = np.random.default_rng(0).uniform(LOW + 10, HIGH - 10, shape).astype(np.float32)
  path = os.path.join(tmp_path, "in", "scan.nii.gz")
  os.makedirs(os.path.dirname(path))
  img = nib.Nifti1Image(values, AFFINE)
  img.header["descrip"] = b"kept"
  nib.save(img, path)
  return path, values


def test_is_volume_run():
  assert volumes.is_volume_run(base.DataInfo("paired", (8, 8, 8, 1), 0, "x"))
  assert not volumes.is_volume_run(base.DataInfo("paired", (64, 64, 1), 0, "x"))


def test_identity_model_gives_back_the_scan(tmp_path, fake_run):
  algorithm = fake_run((PATCH, PATCH, PATCH, 1))
  path, values = _scan(tmp_path)
  out = os.path.join(tmp_path, "out")
  result = translate.run(translate.TranslateConfig(model_dir="run", input=path, output=out,
                                                   overlap=0.25))
  assert result.kind == "nifti" and not result.skipped
  img = nib.load(result.written[0])
  assert result.written[0] == os.path.join(out, "scan.nii.gz")
  assert img.shape == values.shape
  np.testing.assert_array_equal(img.affine, AFFINE)
  assert img.header["descrip"].tobytes().rstrip(b"\0") == b"kept"
  # One 16-bit code of the window: (HIGH - LOW) / 65535 = 0.003; half of it
  # from rounding in, float32 on the way.
  np.testing.assert_allclose(img.get_fdata(), values, rtol=0, atol=(HIGH - LOW) / 65535)
  # The model saw patches of the training size, at most PATCH_BATCH at a time.
  assert {s[1:] for s in algorithm.shapes} == {(PATCH, PATCH, PATCH, 1)}
  assert max(s[0] for s in algorithm.shapes) <= volume_translate.PATCH_BATCH
  with open(os.path.join(out, volumes.WINDOW_NAME), encoding="utf-8") as f:
    record = json.load(f)
  assert record["sliding_window"] == {"patch_size": [PATCH] * 3, "overlap": 0.25,
                                      "blending": "gaussian", "sigma_scale": 0.125,
                                      "grid": "each scan's own voxels, not resampled",
                                      "training_voxel_spacing": None}


def test_scan_smaller_than_a_patch(tmp_path, fake_run):
  fake_run((PATCH, PATCH, PATCH, 1))
  path, values = _scan(tmp_path, (5, 12, 3))
  result = translate.run(translate.TranslateConfig(model_dir="run", input=path,
                                                   output=os.path.join(tmp_path, "out")))
  img = nib.load(result.written[0])
  assert img.shape == values.shape
  np.testing.assert_allclose(img.get_fdata(), values, rtol=0, atol=(HIGH - LOW) / 65535)


def test_overlap_refusals(tmp_path, fake_run):
  path, _ = _scan(tmp_path)
  out = os.path.join(tmp_path, "out")
  fake_run((16, 16, 1))
  with pytest.raises(ValueError, match=r"^--overlap is for runs trained on volumes "
                     r"\(pipeline.convert --volumes\); 'run' was trained on slices"):
    translate.run(translate.TranslateConfig(model_dir="run", input=path, output=out, overlap=0.5))
  fake_run((PATCH, PATCH, PATCH, 1))
  with pytest.raises(ValueError, match=r"^--overlap must be in \[0, 1\), got 1.0$"):
    translate.run(translate.TranslateConfig(model_dir="run", input=path, output=out, overlap=1.0))


def test_images_refused_for_a_volume_run(tmp_path, fake_run):
  fake_run((PATCH, PATCH, PATCH, 1))
  folder = os.path.join(tmp_path, "images")
  os.makedirs(folder)
  with open(os.path.join(folder, "a.png"), "wb") as f:
    f.write(b"")
  with pytest.raises(ValueError, match=r"'run' translates volumes \(trained on 3-D patches of "
                     r"\(8, 8, 8, 1\)\); .* holds images: give NIfTI volumes or DICOM series"):
    translate.run(translate.TranslateConfig(model_dir="run", input=folder,
                                            output=os.path.join(tmp_path, "out")))
