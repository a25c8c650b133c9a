"""Paired fidelity (issue 29): every figure of evaluation/fidelity.py against
values computed by hand on tiny volumes, SSIM against tf.image.ssim, the
masks; the baselines of evaluation/baselines.py; `pipeline.evaluate
--pairs` and `--model_dir` (evaluation/paired.py) on NIfTI volumes and a
tiny pix2pix run, with the refusals."""

import csv
import json
import math
import os
import shutil
import subprocess
import sys

from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

from evaluation import baselines
from evaluation import during_training
from evaluation import evaluate
from evaluation import fidelity
from evaluation import paired
from evaluation import paired_data
from evaluation import paired_picture
from inference import sampling
from input import convert
from input.medical import nifti
from input.medical import phantom_files
from input.medical import window as window_lib
from tests import helpers
from training import config as config_lib
from training import trainer

nib = pytest.importorskip("nibabel")


def _gauss(size=11, sigma=1.5):
  """The SSIM window of Wang et al. 2004, written out again here."""
  g = np.array([math.exp(-((i - 5) ** 2) / (2 * sigma * sigma)) for i in range(size)])
  return g / g.sum()


def _ssim_one_window(x, y, w, data_range):
  """SSIM of one window of weights w (summing to 1) over arrays of w's shape."""
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mx, my = (w * x).sum(), (w * y).sum()
  vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
  cxy = (w * (x - mx) * (y - my)).sum()
  return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))


class FiguresTest(tf.test.TestCase):

  def test_mae_rmse_psnr_golden(self):
    # One slice of 2 x 3; the mask keeps 4 voxels whose errors are 0, 1, -2, 3.
    ref = np.array([[[10.0, 10.0, 10.0], [10.0, 10.0, 10.0]]])
    pred = np.array([[[10.0, 11.0, 8.0], [13.0, 99.0, -50.0]]])
    mask = np.array([[[True, True, True], [True, False, False]]])
    self.assertAllClose(fidelity.mae(pred, ref, mask), 6.0 / 4)
    self.assertAllClose(fidelity.rmse(pred, ref, mask), math.sqrt(14.0 / 4))
    # L = 100: 10 log10(100^2 / 3.5).
    self.assertAllClose(fidelity.psnr(pred, ref, 100.0, mask), 10 * math.log10(1e4 / 3.5))
    # Without a mask every voxel counts.
    self.assertAllClose(fidelity.mae(pred, ref), (0 + 1 + 2 + 3 + 89 + 60) / 6)
    self.assertEqual(fidelity.psnr(ref, ref, 100.0), math.inf)
    empty = np.zeros_like(mask)
    self.assertIsNone(fidelity.mae(pred, ref, empty))
    self.assertIsNone(fidelity.psnr(pred, ref, 100.0, empty))

  def test_ssim_2d_one_window_golden(self):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 50, (1, 11, 11))
    y = 0.7 * x + rng.normal(0, 5, x.shape)
    w = np.outer(_gauss(), _gauss())
    expected = _ssim_one_window(x[0], y[0], w, 50.0)
    self.assertAllClose(fidelity.ssim(y, x, 50.0, spatial_dims=2), expected, rtol=1e-12)
    # Symmetric, 1 for equal images, and a constant offset lowers only luminance.
    self.assertAllClose(fidelity.ssim(x, y, 50.0), expected, rtol=1e-12)
    self.assertAllClose(fidelity.ssim(x, x, 50.0), 1.0)

  def test_ssim_2d_equals_tf_image_ssim(self):
    rng = np.random.default_rng(1)
    x = rng.uniform(-100, 300, (3, 20, 24))
    y = x + rng.normal(0, 40, x.shape)
    want = np.mean([tf.image.ssim(tf.constant(y[s, ..., None]), tf.constant(x[s, ..., None]),
                                  max_val=400.0).numpy() for s in range(3)])
    self.assertAllClose(fidelity.ssim(y, x, 400.0, spatial_dims=2), want, rtol=1e-5)

  def test_ssim_3d_golden(self):
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (12, 11, 13))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    g = _gauss()
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]
    # 2 x 1 x 3 window positions, each by hand.
    values = {(s, r, c): _ssim_one_window(x[s:s + 11, r:r + 11, c:c + 11],
                                          y[s:s + 11, r:r + 11, c:c + 11], w, 1.0)
              for s in range(2) for r in range(1) for c in range(3)}
    self.assertAllClose(fidelity.ssim(y, x, 1.0, spatial_dims=3),
                        np.mean(list(values.values())), rtol=1e-12)
    # Inside a mask: only the windows whose centre (s+5, r+5, c+5) is in it.
    mask = np.zeros(x.shape, bool)
    mask[5, 5, 5] = mask[6, 5, 7] = True
    mask[0, 0, 0] = True  # No window is centred here.
    self.assertAllClose(fidelity.ssim(y, x, 1.0, mask, spatial_dims=3),
                        (values[(0, 0, 0)] + values[(1, 0, 2)]) / 2, rtol=1e-12)
    # Fewer than 11 slices: no 3-D SSIM; 2-D still.
    self.assertIsNone(fidelity.ssim(y[:10], x[:10], 1.0, spatial_dims=3))
    self.assertIsNotNone(fidelity.ssim(y[:10], x[:10], 1.0, spatial_dims=2))

  def test_ssim_2d_mask_averages_slices_that_have_centres(self):
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, (3, 11, 12))
    y = x ** 2
    w = np.outer(_gauss(), _gauss())
    one = lambda s, c: _ssim_one_window(x[s, :, c:c + 11], y[s, :, c:c + 11], w, 1.0)
    mask = np.zeros(x.shape, bool)
    mask[0, 5, 5] = mask[0, 5, 6] = True  # Slice 0: both windows.
    mask[2, 5, 6] = True  # Slice 2: the second window; slice 1: none.
    want = ((one(0, 0) + one(0, 1)) / 2 + one(2, 1)) / 2
    self.assertAllClose(fidelity.ssim(y, x, 1.0, mask), want, rtol=1e-12)

  def test_volume_figures_and_summary(self):
    ref = np.zeros((1, 2, 2))
    figures = fidelity.volume_figures(ref + 1.0, ref, 10.0)
    self.assertEqual(figures["voxels"], 4)
    self.assertAllClose((figures["mae"], figures["rmse"], figures["psnr"]), (1.0, 1.0, 20.0))
    self.assertIsNone(figures["ssim_2d"])  # 2 x 2 slices: smaller than the window.
    summary = fidelity.summarize([{"mae": 1.0, "ssim_2d": None}, {"mae": 2.0, "ssim_2d": 0.5},
                                  {"mae": 6.0, "ssim_2d": None}])
    self.assertAllClose((summary["mae"]["mean"], summary["mae"]["sd"], summary["mae"]["median"]),
                        (3.0, math.sqrt(7.0), 2.0))  # sd: ((4 + 1 + 9) / 2) ** 0.5.
    self.assertEqual(summary["ssim_2d"], {"mean": 0.5, "sd": 0.0, "median": 0.5, "n": 1})
    self.assertEqual(summary["ssim_3d"], {"n": 0})
    inf = fidelity.summarize([{"psnr": math.inf}, {"psnr": math.inf}])["psnr"]
    self.assertEqual((inf["mean"], inf["median"]), (math.inf, math.inf))
    self.assertTrue(math.isnan(inf["sd"]))


class MaskTest(tf.test.TestCase):

  def test_auto_mask_fills_holes_and_keeps_the_largest_component(self):
    ref = np.full((4, 9, 9), -1000.0)
    ref[:, 1:7, 1:7] = 40.0  # The body, on every slice.
    ref[1:3, 3:5, 3:5] = -1000.0  # An enclosed cavity: a hole.
    ref[0, 3, 0:3] = -1000.0  # A notch open to the slice's border: not a hole.
    ref[:, 8, 8] = 40.0  # A separate speck.
    mask = fidelity.auto_mask(ref, -160.0)
    want = np.zeros(ref.shape, bool)
    want[:, 1:7, 1:7] = True
    want[0, 3, 1:3] = False
    self.assertAllEqual(mask, want)
    # The low end itself is outside (above it only).
    self.assertFalse(fidelity.auto_mask(np.full((1, 3, 3), -160.0), -160.0).any())

  def test_otsu_threshold_golden(self):
    # Two bins over [0, 1]: the only split, at the first bin's centre.
    self.assertAllClose(fidelity.otsu_threshold([0.0, 0.0, 1.0], bins=2), 0.25)
    # Four bins over [0, 8] (centres 1, 3, 5, 7), counts 2, 1, 0, 3. Between-class
    # variance w0 w1 (m0 - m1)^2 of the splits after bins 0, 1, 2:
    # 2*4*(1 - 6)^2 = 200, 3*3*(5/3 - 7)^2 = 256, 3*3*(5/3 - 7)^2 = 256: the first
    # largest, after bin 1, whose centre is 3.
    values = [0.0, 1.5, 3.0, 8.0, 7.0, 6.5]
    self.assertAllClose(fidelity.otsu_threshold(values, bins=4), 3.0)
    self.assertEqual(fidelity.otsu_threshold([4.0, 4.0]), 4.0)

  def test_auto_mask_above_the_noise_where_the_window_keeps_it(self):
    # MR-like: a head of 100 on noise 5..20, a window whose low end (2) clips
    # nothing: Otsu's threshold, not the low end, separates them.
    rng = np.random.default_rng(4)
    ref = rng.uniform(5.0, 20.0, (3, 12, 12))
    ref[:, 3:9, 3:9] = 100.0
    ref[1, 5, 5] = 10.0  # A dark spot inside: a hole, filled.
    want = np.zeros(ref.shape, bool)
    want[:, 3:9, 3:9] = True
    self.assertAllEqual(fidelity.auto_mask(ref, 2.0), want)
    # A per-volume window whose low end clips 1% or more: still Otsu's.
    clipped = np.where(np.arange(ref.size).reshape(ref.shape) % 10 == 0, 2.0, ref)
    clipped[:, 3:9, 3:9] = 100.0
    self.assertAllEqual(fidelity.auto_mask(clipped, 2.0, per_volume=True), want)
    # The same as a fixed window: the low end is taken to clip the background,
    # so the noise above it joins the head: everything but the clipped voxels
    # on the slices' border (inside, they are holes).
    border = np.ones(ref.shape, bool)
    border[:, 1:-1, 1:-1] = False
    self.assertAllEqual(fidelity.auto_mask(clipped, 2.0), ~(border & (clipped <= 2.0)))

  def test_label_follows_a_spiral(self):
    # A spiral needs many propagation rounds: one component all the same.
    m = np.zeros((1, 9, 9), bool)
    m[0, 0, :] = m[0, :, 8] = m[0, 8, :] = m[0, 2:, 0] = True
    m[0, 2, 0:7] = m[0, 2:7, 6] = m[0, 6, 2:7] = m[0, 4:7, 2] = m[0, 4, 2:5] = True
    lab = fidelity.label(m)
    self.assertEqual(set(np.unique(lab[m])), {0})
    self.assertAllEqual(lab[~m], np.full((~m).sum(), -1))
    # Diagonal neighbours are not joined.
    d = np.eye(3, dtype=bool)[None]
    self.assertEqual(len(np.unique(fidelity.label(d)[d])), 3)


class BaselinesTest(tf.test.TestCase):

  def test_intensity_mapping_golden(self):
    # 4 bins over [0, 4): bins 0 and 2 filled, 1 interpolated, 3 the last filled mean.
    lut = baselines.IntensityMapping(0.0, 4.0, bins=4)
    lut.add(np.array([0.2, 0.7, 2.5, 9.0]), np.array([1.0, 3.0, 10.0, 50.0]),
            np.array([True, True, True, False]))  # 9.0 is masked out.
    self.assertAllClose(lut.table(), [2.0, 6.0, 10.0, 10.0])
    self.assertEqual(lut.voxels, 3)
    # Out of range values fall in the end bins.
    self.assertAllClose(lut(np.array([-5.0, 1.5, 3.99, 100.0])), [2.0, 6.0, 10.0, 10.0])
    with self.assertRaisesRegex(ValueError, "no training voxel"):
      baselines.IntensityMapping(0.0, 1.0).table()

  def test_identity_and_shared_units(self):
    hu = window_lib.Window(-160.0, 240.0, "HU", "ct_abdomen")
    self.assertAllClose(baselines.identity(np.array([-1000.0, 0.0, 999.0]), hu),
                        [-160.0, 0.0, 240.0])
    self.assertTrue(baselines.shares_units(window_lib.Window(-1024, 3071, "HU", "ct_full"), hu))
    mr = window_lib.Window(3.0, 800.0, "", "percentile 0.5-99.5")
    self.assertFalse(baselines.shares_units(mr, hu))
    self.assertFalse(baselines.shares_units(mr, mr))  # Per-volume windows: no common unit.


class PictureTest(tf.test.TestCase):

  def test_slices_and_colours(self):
    self.assertEqual(paired_picture.picture_slices(4), [1, 2, 3])
    self.assertEqual(paired_picture.picture_slices(100), [25, 50, 75])
    self.assertEqual(paired_picture.picture_slices(1), [0])
    self.assertAllEqual(paired_picture.colormap(np.array([0.0, 0.5, 1.0, 2.0])),
                        [[0, 0, 4], [188, 55, 84], [252, 255, 164], [252, 255, 164]])


AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])


def _save(path, data, affine=AFFINE):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
  return path


class PairsTest(tf.test.TestCase):
  """--pairs on NIfTI volumes written here, with values known by hand."""

  def _folders(self):
    tmp = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    ref = rng.uniform(20.0, 80.0, (14, 13, 12))  # Canonical [x, y, z]: 12 axial slices.
    pred = ref + 2.0
    inside = np.zeros(ref.shape, bool)
    inside[2:12, 2:11, 1:11] = True
    pred[~inside] += 30.0  # Outside the mask errors are large and must not count.
    for sub in ("01", "02"):
      _save(os.path.join(tmp, "ref", f"sub-{sub}", "anat", f"sub-{sub}_T2w.nii.gz"), ref)
      # pipeline.translate keeps the source's name: sub-XX_T1w matches sub-XX_T2w.
      _save(os.path.join(tmp, "pred", f"sub-{sub}_T1w.nii.gz"), pred)
      _save(os.path.join(tmp, "mask", f"sub-{sub}_mask.nii.gz"), inside.astype(np.uint8))
    _save(os.path.join(tmp, "ref", "sub-03", "anat", "sub-03_T2w.nii.gz"), ref)  # No partner.
    return tmp, ref, pred, inside

  def test_figures_csv_and_picture_golden(self):
    tmp, ref, pred, inside = self._folders()
    output = os.path.join(tmp, "out", "eval.json")
    out = evaluate.run(evaluate.EvaluateConfig(
        pairs=f"{tmp}/pred,{tmp}/ref", mask=f"{tmp}/mask", window="50,100", output=output))
    result = out["paired"]
    self.assertEqual([v["name"] for v in result["volumes"]], ["sub-01", "sub-02"])
    self.assertEqual(result["protocol"]["unmatched"], ["sub-03"])
    figures = result["volumes"][0]["model"]
    self.assertEqual(result["volumes"][0]["voxels"], 10 * 9 * 10)
    # Window [0, 100]: every error inside the mask is 2.
    self.assertAllClose((figures["mae"], figures["rmse"], figures["psnr"]),
                        (2.0, 2.0, 10 * math.log10(100.0 ** 2 / 4.0)))
    slices = nifti.volume_to_slices(ref, "axial")
    mask = nifti.volume_to_slices(inside, "axial")
    # Clipped to the window: outside the mask, pred reaches past 100.
    want_pred = np.clip(np.where(mask, slices + 2, slices + 32), 0, 100)
    self.assertAllClose(figures["ssim_2d"], fidelity.ssim(want_pred, slices, 100.0, mask, 2))
    self.assertIsNotNone(figures["ssim_3d"])
    self.assertEqual(result["summary"]["model"]["mae"]["n"], 2)
    self.assertAllClose(result["summary"]["model"]["mae"]["sd"], 0.0)
    with open(output, encoding="utf-8") as f:
      self.assertEqual(json.load(f)["paired"]["volumes"][1]["name"], "sub-02")
    with open(out["files"]["csv"], encoding="utf-8") as f:
      rows = list(csv.DictReader(f))
    self.assertEqual([(r["volume"], r["method"]) for r in rows],
                     [("sub-01", "model"), ("sub-02", "model")])
    self.assertAllClose(float(rows[0]["mae"]), 2.0)
    self.assertEqual(os.path.basename(out["files"]["csv"]), "eval_volumes.csv")
    self.assertEqual(sorted(os.path.basename(p) for p in out["files"]["pictures"]),
                     ["sub-01.png", "sub-02.png"])
    self.assertGreater(os.path.getsize(out["files"]["pictures"][0]), 1000)

  def test_auto_mask_and_default_window(self):
    tmp = self.create_tempdir().full_path
    ref = np.zeros((12, 12, 2))
    ref[3:9, 3:9, :] = 100.0  # A body on a background of 0 (the reference's minimum).
    pred = ref.copy()
    pred[3:9, 3:9, :] += 10.0  # Clipped to the reference's range [0, 100]: no error.
    pred[0, 0, :] = 50.0  # Outside the body: not in the auto mask.
    pred[4, 4, :] = 90.0  # Inside: error 10 on 1 of 36 voxels per slice.
    _save(os.path.join(tmp, "ref", "a.nii.gz"), ref)
    _save(os.path.join(tmp, "pred", "a.nii.gz"), pred)
    out = evaluate.run(evaluate.EvaluateConfig(pairs=f"{tmp}/pred,{tmp}/ref"))
    volume = out["paired"]["volumes"][0]
    self.assertEqual(volume["voxels"], 72)
    self.assertEqual((volume["window"]["low"], volume["window"]["high"]), (0.0, 100.0))
    self.assertAllClose(volume["model"]["mae"], 10.0 / 36)
    self.assertEqual(out["files"], {})  # Nothing written without --output.
    none = evaluate.run(evaluate.EvaluateConfig(pairs=f"{tmp}/pred,{tmp}/ref", mask="none"))
    self.assertEqual(none["paired"]["volumes"][0]["voxels"], 288)
    self.assertAllClose(none["paired"]["volumes"][0]["model"]["mae"], (10.0 + 50.0) * 2 / 288)

  def test_refused_geometry(self):
    tmp, ref, pred, _ = self._folders()
    _save(os.path.join(tmp, "pred", "sub-02_T1w.nii.gz"), pred[:, :, :11])
    with self.assertRaisesRegex(ValueError, r"^--pairs: \S+sub-02_T1w.nii.gz has shape "
                                            r"\(14, 13, 11\) but \S+sub-02_T2w.nii.gz has "
                                            r"\(14, 13, 12\)"):
      evaluate.run(evaluate.EvaluateConfig(pairs=f"{tmp}/pred,{tmp}/ref"))
    moved = AFFINE.copy()
    moved[0, 3] = 0.5
    _save(os.path.join(tmp, "pred", "sub-02_T1w.nii.gz"), pred, moved)
    with self.assertRaisesRegex(ValueError, r"sub-02_T1w.nii.gz and \S+sub-02_T2w.nii.gz differ "
                                            r"in affine \(largest difference 0.5\)"):
      evaluate.run(evaluate.EvaluateConfig(pairs=f"{tmp}/pred,{tmp}/ref"))
    # The binary: one line, exit 2.
    proc = subprocess.run([sys.executable, "-m", "pipeline.evaluate",
                           f"--pairs={tmp}/pred,{tmp}/ref"], capture_output=True, text=True,
                          cwd=helpers.REPO_ROOT, env=helpers.subprocess_env(), timeout=300)
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertRegex(proc.stderr.strip().splitlines()[-1],
                     r"^evaluate: error: --pairs: .*sub-02_T1w.nii.gz and .* differ in affine")
    # A mask on another grid is refused too.
    _save(os.path.join(tmp, "pred", "sub-02_T1w.nii.gz"), pred)
    _save(os.path.join(tmp, "mask", "sub-02_mask.nii.gz"), np.ones((14, 13, 12)), moved)
    with self.assertRaisesRegex(ValueError, r"^--mask: .*sub-02_mask.nii.gz and .* differ"):
      evaluate.run(evaluate.EvaluateConfig(pairs=f"{tmp}/pred,{tmp}/ref", mask=f"{tmp}/mask"))

  def test_dicom_series_on_either_side(self):
    pytest.importorskip("pydicom")
    tmp = self.create_tempdir().full_path
    size = (12, 14, 6)
    for fmt in ("nifti", "dicom"):  # The same phantom as NIfTI volumes and DICOM series.
      phantom_files.run(phantom_files.PhantomConfig(output=f"{tmp}/{fmt}", subjects=2, seed=1,
                                                    size=size, format=fmt))
    # DICOM series match NIfTI volumes by their folder (ref/sub-01/ ~ sub-01_T2w.nii.gz),
    # land on the same voxel grid (geometry from the DICOM headers), with the same values.
    for pred, ref in ((f"{tmp}/nifti/T2w", f"{tmp}/dicom/T2w"),
                      (f"{tmp}/dicom/T2w", f"{tmp}/nifti/T2w"),
                      (f"{tmp}/dicom/T1w", f"{tmp}/dicom/T2w")):
      out = evaluate.run(evaluate.EvaluateConfig(pairs=f"{pred},{ref}", window="500,1000",
                                                 mask="none"))["paired"]
      self.assertEqual([v["name"] for v in out["volumes"]], ["sub-01", "sub-02"], pred)
      self.assertEqual(out["volumes"][0]["voxels"], int(np.prod(size)))
      if "T1w" not in pred:
        self.assertEqual(out["volumes"][0]["model"]["mae"], 0.0, pred)
    # By hand: T1w against T2w of subject 1, clipped to the window [0, 1000] (centre 500,
    # width 1000), over every voxel (--mask=none).
    t1 = np.clip(nib.load(f"{tmp}/nifti/T1w/sub-01/anat/sub-01_T1w.nii.gz").get_fdata(), 0, 1000)
    t2 = np.clip(nib.load(f"{tmp}/nifti/T2w/sub-01/anat/sub-01_T2w.nii.gz").get_fdata(), 0, 1000)
    self.assertAllClose(out["volumes"][0]["model"]["mae"], np.abs(t1 - t2).mean(), rtol=1e-5)
    # Another grid is refused by name.
    phantom_files.run(phantom_files.PhantomConfig(output=f"{tmp}/other", subjects=1, seed=1,
                                                  size=(12, 14, 5), format="dicom"))
    with self.assertRaisesRegex(ValueError, r"^--pairs: \S+sub-01_T2w.nii.gz has shape "
                                            r"\(12, 14, 6\) but \S+other/T2w/sub-01 has "
                                            r"\(12, 14, 5\)"):
      evaluate.run(evaluate.EvaluateConfig(pairs=f"{tmp}/nifti/T2w,{tmp}/other/T2w"))

  def test_bad_flags(self):
    tmp = self.create_tempdir().full_path
    with self.assertRaisesRegex(ValueError, "takes no --real"):
      evaluate.run(evaluate.EvaluateConfig(pairs=f"{tmp},{tmp}", real=tmp))
    with self.assertRaisesRegex(ValueError, "--window and --slice_axis are read with --pairs"):
      evaluate.run(evaluate.EvaluateConfig(model_dir=tmp, real=tmp, window="40,80"))
    with self.assertRaisesRegex(ValueError, "--pairs takes two folders PRED,REF"):
      evaluate.run(evaluate.EvaluateConfig(pairs=tmp))
    with self.assertRaisesRegex(ValueError, "no volume name matches"):
      _save(os.path.join(tmp, "p", "x.nii.gz"), np.zeros((2, 2, 2)))
      _save(os.path.join(tmp, "r", "y.nii.gz"), np.zeros((2, 2, 2)))
      evaluate.run(evaluate.EvaluateConfig(pairs=f"{tmp}/p,{tmp}/r"))


class ModelDirTest(tf.test.TestCase, parameterized.TestCase):
  """--model_dir of a tiny pix2pix run on paired NIfTI volumes (B = 200 - A,
  4 subjects, 2 held out), and its baselines."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), "paired_fidelity")
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    for i in range(4):
      a = rng.uniform(0.0, 100.0, (32, 32, 12))
      a = (a + np.roll(a, 1, axis=0)) / 2  # Smooth: percentiles away from the extremes.
      for side, data in (("A", a), ("B", 200.0 - a), ("C", a + 10.0)):
        _save(os.path.join(root, side, f"sub-0{i}", "anat", f"sub-0{i}_{side}.nii.gz"), data)
    convert.run(convert.ConvertConfig(
        source=f"paired:nifti:{root}/A,{root}/B", output=os.path.join(root, "ab"), image_size=32,
        num_workers=1, holdout=0.5, split_by="patient"))
    convert.run(convert.ConvertConfig(  # No held-out split.
        source=f"paired:nifti:{root}/A,{root}/B", output=os.path.join(root, "whole"),
        image_size=32, num_workers=1))
    cls.run_dir = os.path.join(root, "run")
    trainer.run(config_lib.TrainConfig(
        algo="pix2pix", data=os.path.join(root, "ab"), model_dir=cls.run_dir,
        global_batch_size=2, base_channels=4, log_every=10, sample_every=1000,
        checkpoint_every=1000, shuffle_buffer=16, strategy="mirrored", deterministic=True,
        cpu_replicas=1, fresh=True, train_steps=2))

  def test_held_out_volumes_translated_and_scored(self):
    data = os.path.join(self.root, "ab")
    output = os.path.join(self.create_tempdir().full_path, "eval.json")
    out = evaluate.run(evaluate.EvaluateConfig(model_dir=self.run_dir, real=data, output=output))
    result = out["paired"]
    with open(os.path.join(data, "manifest.json"), encoding="utf-8") as f:
      manifest = json.load(f)
    held_out = manifest["holdout"]["test_groups"]
    self.assertEqual([v["name"] for v in result["volumes"]], held_out)
    # The references: the B volumes in their own recorded windows.
    algorithm, _ = sampling.load_algorithm(self.run_dir)
    pairs = paired_data.HeldOutPairs(data, manifest, "AtoB")
    for v in pairs.volumes:
      values = nib.load(os.path.join(self.root, "B", v.name, "anat",
                                     f"{v.name}_B.nii.gz")).get_fdata()
      slices = nifti.volume_to_slices(values, "axial")
      w = v.window
      self.assertEqual(w.to_json(), window_lib.Window.from_json(
          manifest["series"][f"B/{v.name}/anat/{v.name}_B"]["window"]).to_json())
      self.assertAllClose(v.reference, np.clip(slices, w.low, w.high),
                          atol=(w.high - w.low) / 65535)
    # The model's figures: its translation of the source codes, mapped back
    # through each reference's window, scored inside the auto mask.
    for v, row in zip(pairs.volumes, result["volumes"]):
      y = algorithm.translate(tf.constant(v.model_input)).numpy()[..., 0]
      want = fidelity.volume_figures(v.window.from_model(y), v.reference,
                                     v.window.high - v.window.low, v.mask)
      for k in fidelity.FIGURES:
        self.assertAllClose(row["model"][k], want[k], rtol=1e-4, msg=k)
      self.assertIsNotNone(row["model"]["ssim_3d"])  # 12 slices.
    # B = 200 - A: the lookup table is nearly exact, and two steps of pix2pix lose to it.
    lut = result["summary"][baselines.INTENSITY_MAPPING]
    self.assertLess(lut["mae"]["mean"], 0.01 * (pairs.volumes[0].window.high
                                                - pairs.volumes[0].window.low))
    self.assertEqual(result["beats"][baselines.INTENSITY_MAPPING],
                     {"mae": False, "ssim_2d": False})
    self.assertIn("skipped", result["baselines"][baselines.IDENTITY])  # Percentile windows.
    lines = paired.report_lines(result)
    self.assertIn("The model against intensity_mapping: loses to it on MAE; loses to it on SSIM",
                  lines)
    self.assertEqual(len(out["files"]["pictures"]), 2)

  @parameterized.parameters(0, 1)
  def test_identity_with_a_fixed_window(self, context):
    # C = A + 10 in one fixed window [0, 200]: identity is off by 10 everywhere.
    # With a 2.5-D context (3 channels of A), A's slice is the centre one.
    data = os.path.join(self.root, f"ac{context}")
    manifest = convert.run(convert.ConvertConfig(
        source=f"paired:nifti:{self.root}/A,{self.root}/C", output=data, image_size=32,
        num_workers=1, holdout=0.5, split_by="patient", window="100,200",
        context_slices=context))
    pairs = paired_data.HeldOutPairs(data, manifest, "AtoB", mask="none")
    self.assertEqual(pairs.volumes[0].model_input.shape, (12, 32, 32, 2 * context + 1))
    pairs.fit_baselines()
    predictions = {paired.MODEL: [v.reference for v in pairs.volumes], **pairs.baselines}
    result = paired.results(pairs.volumes, predictions, {"mask": "none"}, pairs.baseline_info)
    self.assertAllClose(result["summary"][baselines.IDENTITY]["mae"]["mean"], 10.0, atol=0.01)
    # The table's bins are 200 / 256 units wide: within half a bin.
    self.assertLess(result["summary"][baselines.INTENSITY_MAPPING]["mae"]["mean"], 0.4)
    self.assertEqual(result["beats"][baselines.IDENTITY], {"mae": True, "ssim_2d": True})
    # Fitted on the training pairs only: no held-out voxel.
    self.assertEqual(pairs.baseline_info[baselines.INTENSITY_MAPPING]["training_voxels"],
                     2 * 12 * 32 * 32)

  def test_refusals(self):
    data = os.path.join(self.root, "ab")
    with self.assertRaisesRegex(ValueError, "a folder of masks is for --pairs"):
      evaluate.run(evaluate.EvaluateConfig(model_dir=self.run_dir, real=data,
                                           mask=self.root))
    # Data without a held-out split; then data split another way.
    whole = os.path.join(self.root, "whole")
    with self.assertRaisesRegex(ValueError, "has no held-out split 'test'"):
      evaluate.run(evaluate.EvaluateConfig(model_dir=self.run_dir, real=whole))
    other = os.path.join(self.root, "other")
    convert.run(convert.ConvertConfig(source=f"paired:nifti:{self.root}/A,{self.root}/B",
                                      output=other, image_size=32, num_workers=1, holdout=0.5,
                                      split_by="patient", seed=7))
    with self.assertRaisesRegex(ValueError, "was trained on data split another way .* pass "
                                            "--trust_split"):
      evaluate.run(evaluate.EvaluateConfig(model_dir=self.run_dir, real=other))
    out = evaluate.run(evaluate.EvaluateConfig(model_dir=self.run_dir, real=other,
                                               trust_split=True))
    self.assertIn("model", out["paired"]["summary"])

  def test_during_training_and_keep_best(self):
    # A small feature network of the test's own for FID (Inception needs a download).
    tmp = self.create_tempdir().full_path
    features = os.path.join(tmp, "features.keras")
    keras.utils.set_random_seed(0)
    keras.Sequential([keras.layers.Input((32, 32, 1)), keras.layers.Conv2D(4, 3),
                      keras.layers.GlobalAveragePooling2D()]).save(features)
    run = os.path.join(tmp, "run")
    data = os.path.join(self.root, "ab")
    trainer.run(config_lib.TrainConfig(
        algo="pix2pix", data=data, model_dir=run, global_batch_size=2, base_channels=4,
        log_every=10, sample_every=1000, checkpoint_every=1000, shuffle_buffer=16,
        strategy="mirrored", deterministic=True, cpu_replicas=1, fresh=True, train_steps=4,
        steps_per_loop=2, eval_every=2, keep_best="mae", eval_features=features,
        eval_num_samples=10), during_training.DuringTraining)
    with open(os.path.join(run, "eval.jsonl"), encoding="utf-8") as f:
      lines = [json.loads(line) for line in f]
    self.assertEqual([line["step"] for line in lines], [2, 4])
    for line in lines:
      self.assertContainsSubset({"fid", "mae", "rmse", "psnr", "ssim", "ssim_3d"},
                                line["metrics"])
    best = min(lines, key=lambda line: line["metrics"]["mae"])
    with open(os.path.join(run, "checkpoints", "best", "best.json"), encoding="utf-8") as f:
      record = json.load(f)
    self.assertEqual((record["metric"], record["step"]), ("mae", best["step"]))
    # The figures equal pipeline.evaluate's for that checkpoint.
    out = evaluate.run(evaluate.EvaluateConfig(model_dir=run, real=data, checkpoint="best"))
    summary = out["paired"]["summary"]["model"]
    self.assertAllClose(summary["mae"]["mean"], best["metrics"]["mae"], rtol=1e-5)
    self.assertAllClose(summary["ssim_2d"]["mean"], best["metrics"]["ssim"], rtol=1e-5)
    with self.assertRaisesRegex(ValueError, r"--keep_best=mae is not computed here: .* are fid, "
                                            r"kid, precision, recall(, inception_score)?$"):
      trainer.run(config_lib.TrainConfig(
          algo="pix2pix", data=os.path.join(self.root, "whole"), model_dir=run + "2",
          global_batch_size=2, base_channels=4, train_steps=2, eval_every=2, keep_best="mae",
          eval_features=features, eval_num_samples=10, strategy="mirrored", cpu_replicas=1,
          deterministic=True), during_training.DuringTraining)


if __name__ == "__main__":
  tf.test.main()
