"""pipeline.sample: fixed seeds give the same samples; latent interpolation grids."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image
import tensorflow as tf

from inference import sampling
from tests import helpers
from tests import test_train
from training import trainer


class SlerpTest(tf.test.TestCase):

  def test_golden(self):
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    path = sampling.slerp(a, b, [0.0, 0.5, 1.0])[0]
    self.assertAllClose(path, [[1.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5)], [0.0, 1.0]])
    # Norms in between follow the endpoints' (here 2 and 2): no dip at the middle.
    path = sampling.slerp(2 * a, 2 * b, np.linspace(0, 1, 7))[0]
    self.assertAllClose(np.linalg.norm(path, axis=1), np.full(7, 2.0))
    # Parallel endpoints: linear interpolation.
    self.assertAllClose(sampling.slerp(a, 3 * a, [0.5])[0], [[2.0, 0.0]])


class SampleTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.run_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "sample_run")
    trainer.run(test_train.tiny_config("cdcgan", cls.run_dir, train_steps=1, checkpoint_every=1,
                                       cpu_replicas=1, fresh=True))
    cls.algorithm, _ = sampling.load_algorithm(cls.run_dir)

  def test_same_seed_same_samples(self):
    x1, y1 = sampling.sample(self.algorithm, 10, seed=3, batch_size=4)
    x2, y2 = sampling.sample(self.algorithm, 10, seed=3, batch_size=4)
    self.assertAllEqual(x1, x2)
    self.assertAllEqual(y1, y2)
    # Another batch size: the same latents; oneDNN's kernels may round differently.
    self.assertAllClose(sampling.sample(self.algorithm, 10, seed=3, batch_size=7)[0], x1,
                        atol=1e-6)
    self.assertAllEqual(y1, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    self.assertNotAllClose(x1, sampling.sample(self.algorithm, 10, seed=4)[0])
    batches = list(sampling.iter_samples(self.algorithm, 10, seed=3, batch_size=4))
    self.assertEqual([len(b) for b, _ in batches], [4, 4, 2])
    self.assertAllEqual(np.concatenate([b for b, _ in batches]), x1)

  def test_interpolation_rows_end_at_independent_samples(self):
    rows, steps = 3, 5
    x, y = sampling.interpolate(self.algorithm, rows, steps, labels=[2, 0], seed=1)
    self.assertEqual(x.shape, (rows * steps, 16, 16, 3))
    self.assertAllEqual(y, [2] * 5 + [0] * 5 + [2] * 5)  # One class per row.
    # The ends of row r are the samples of latents r and rows + r of the seed.
    z = tf.random.stateless_normal([2 * rows, self.algorithm.config.z_dim], seed=[1, 777],
                                   alg="philox")
    grid = x.reshape(rows, steps, 16, 16, 3)
    labels = tf.constant(y[::steps])
    self.assertAllClose(grid[:, 0], self.algorithm.sample(z[:rows], labels), atol=1e-6)
    self.assertAllClose(grid[:, -1], self.algorithm.sample(z[rows:], labels), atol=1e-6)
    with self.assertRaisesRegex(ValueError, "at least 2 steps per row, got 1"):
      sampling.interpolate(self.algorithm, 2, 1)

  def test_cli_seed_and_interpolation(self):
    tmp = self.create_tempdir().full_path

    def run(*args):
      done = subprocess.run([sys.executable, "-m", "pipeline.sample",
                             f"--model_dir={self.run_dir}", *args],
                            env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
      self.assertEqual(done.returncode, 0, done.stderr)
      return done

    out = [os.path.join(tmp, f"{i}.npz") for i in range(2)]
    run("--interpolate=4", "--rows=3", "--seed=5", f"--output={out[0]}")
    run("--interpolate=4", "--rows=3", "--seed=5", f"--output={out[1]}")
    with np.load(out[0]) as a, np.load(out[1]) as b:
      self.assertEqual(a["x"].shape, (12, 16, 16, 3))
      self.assertAllEqual(a["x"], b["x"])
      expected, _ = sampling.interpolate(self.algorithm, 3, 4, seed=5)
      self.assertAllClose(a["x"], expected, atol=1e-6)
    png = os.path.join(tmp, "grid.png")
    run("--interpolate=4", "--rows=3", f"--output={png}")
    # 4 columns and 3 rows of 16-pixel images with 2-pixel padding.
    self.assertEqual(Image.open(png).size, (4 * 18 + 2, 3 * 18 + 2))


if __name__ == "__main__":
  tf.test.main()
