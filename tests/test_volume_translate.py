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
from input.medical import nifti

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

  def __init__(self, shape, **conversion):
    window = {"low": LOW, "high": HIGH, "units": "", "source": "50,200"}
    self.data = base.DataInfo("paired", shape, 0, "fake", window={"A": window, "B": window},
                              medical={"format": "nifti", "window": "50,200",
                                       "slice_axis": "axial", "volumes": len(shape) == 4,
                                       **conversion})
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
  def use(shape, **conversion):
    algorithm = _FakeTranslation(shape, **conversion)
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
                                      "grid": "resized to the conversion's scale and back "
                                              "(resample.scaled_shape)",
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


def test_scan_translated_at_the_conversions_scale(tmp_path, fake_run):
  # Volumes fitted to 8^3 from 16^3 scans: a 16^3 scan is translated at 8^3
  # (one patch) and resized back; a constant stays that constant.
  algorithm = fake_run((PATCH, PATCH, PATCH, 1), volume_size=[8, 8, 8])
  path = os.path.join(tmp_path, "in", "flat.nii.gz")
  os.makedirs(os.path.dirname(path))
  nib.save(nib.Nifti1Image(np.full((16, 16, 16), 70.0, np.float32), AFFINE), path)
  result = translate.run(translate.TranslateConfig(model_dir="run", input=path,
                                                   output=os.path.join(tmp_path, "out")))
  assert sum(s[0] for s in algorithm.shapes) == 1  # One 8^3 patch, at the training scale.
  img = nib.load(result.written[0])
  assert img.shape == (16, 16, 16)
  np.testing.assert_allclose(img.get_fdata(), 70.0, rtol=0, atol=(HIGH - LOW) / 65535)


def test_scan_resampled_to_the_runs_spacing(tmp_path, fake_run):
  # Converted with --spacing=2 (no --volume_size). The scan: voxel axes i, j, k
  # of 2, 1 and 1.5 mm (AFFINE), i.e. canonical x, y, z of 2, 1.5 and 1 mm and
  # (11, 9, 13) voxels; axial [D, H, W] = z, y, x: (13, 9, 11) voxels of (1, 1.5,
  # 2) mm -> at 2 mm round(6.5) = 6, round(6.75) = 7 and 11 voxels.
  algorithm = fake_run((PATCH, PATCH, PATCH, 1), spacing=2.0)
  path, values = _scan(tmp_path)
  translator = volume_translate.PatchTranslator(None, algorithm.data, "AtoB", 1)
  assert nib.load(path).shape == (11, 13, 9)
  assert nifti.dhw_spacing(nib.load(path), "axial") == (1.0, 1.5, 2.0)
  assert translator.model_shape((13, 9, 11), (1.0, 1.5, 2.0)) == (6, 7, 11)
  with pytest.raises(ValueError, match=r"13x9x11 voxels: .*no voxel spacing.*--spacing=2"):
    translator.model_shape((13, 9, 11), None)
  result = translate.run(translate.TranslateConfig(model_dir="run", input=path,
                                                   output=os.path.join(tmp_path, "out")))
  # 6 x 7 x 11 at 2 mm, padded to one 8-voxel patch along D and H, two along W.
  assert sum(s[0] for s in algorithm.shapes) == 2
  assert nib.load(result.written[0]).shape == values.shape
