"""Paired fidelity (issue 29): every figure of evaluation/fidelity.py against
values computed by hand on tiny volumes, SSIM against tf.image.ssim, the
masks; the baselines of evaluation/baselines.py; `pipeline.evaluate
--pairs` and `--model_dir` (evaluation/paired.py) on NIfTI volumes and a
tiny pix2pix run, with the refusals."""

import math

import numpy as np
import tensorflow as tf

from evaluation import fidelity


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


if __name__ == "__main__":
  tf.test.main()
