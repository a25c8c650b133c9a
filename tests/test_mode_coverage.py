"""Golden values of the 2-D mode-coverage metric (evaluation/mode_coverage.py)."""

import numpy as np
import tensorflow as tf

from evaluation import mode_coverage
from input import builtin

CENTERS = np.array(dict(builtin.info("grid2d").extra)["centers"])
STD = 0.05


class ModeCoverageTest(tf.test.TestCase):

  def test_exact_samples_cover_everything(self):
    samples = np.repeat(CENTERS, 100, axis=0)  # 2,500 points, 100 on each mode
    stats = mode_coverage.mode_stats(samples, CENTERS, STD)
    self.assertEqual(stats["modes"], 25)
    self.assertEqual(stats["high_quality"], 1.0)

  def test_three_sigma_boundary(self):
    # 0.149 from a centre is within 3 sigma (0.15), 0.151 is not.
    samples = np.array([[0.149, 0.0], [0.151, 0.0], [0.0, -0.149], [1.0, 1.0]])
    stats = mode_coverage.mode_stats(samples, CENTERS, STD, min_count=1)
    self.assertAllClose(stats["high_quality"], 0.5)
    self.assertEqual(stats["modes"], 1)  # both good samples are on the (0, 0) mode

  def test_min_count(self):
    samples = np.concatenate([np.repeat(CENTERS[:1], 19, axis=0),
                              np.repeat(CENTERS[1:2], 20, axis=0)])
    self.assertEqual(mode_coverage.mode_stats(samples, CENTERS, STD)["modes"], 1)

  def test_true_data_passes_the_target(self):
    rng = np.random.default_rng(0)
    samples = CENTERS[rng.integers(25, size=2500)] + STD * rng.standard_normal((2500, 2))
    stats = mode_coverage.mode_stats(samples, CENTERS, STD)
    self.assertEqual(stats["modes"], 25)
    # Within 3 sigma in 2-D: 1 - exp(-9/2) = 98.9%.
    self.assertAllClose(stats["high_quality"], 1 - np.exp(-4.5), atol=0.01)


if __name__ == "__main__":
  tf.test.main()
