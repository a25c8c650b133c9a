"""pix2pix, CycleGAN and UNIT on the one trainer: N replicas equal 1, resume,
the image pool and the jitter against hand-computed values."""

import os
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from algorithms import translation_ops
from inference import translate
from input import convert
from tests import helpers
from training import config as config_lib
from training import trainer

ALGOS = {"pix2pix": "shapes_paired", "cyclegan": "shapes_unpaired", "unit": "shapes_unpaired"}
_DATA = {}


def small_data(name):
  """32-pixel paired/unpaired data (the PatchGAN needs at least 24 pixels)."""
  if name not in _DATA:
    out = os.path.join(tf.compat.v1.test.get_temp_dir(), "translation_data", name)
    if not os.path.isdir(out):
      convert.run(convert.ConvertConfig(source=f"builtin:{name}", output=out, image_size=32,
                                        max_examples=32, min_shards=2, num_workers=1))
    _DATA[name] = out
  return _DATA[name]


def tiny_config(algo, model_dir, **kwargs):
  defaults = dict(algo=algo, data=small_data(ALGOS[algo]), model_dir=model_dir,
                  global_batch_size=2, base_channels=4, train_steps=2, log_every=1,
                  sample_every=100, checkpoint_every=100, shuffle_buffer=16,
                  strategy="mirrored", deterministic=True)
  if algo != "pix2pix":  # pix2pix has no residual blocks (and refuses the setting).
    defaults["res_blocks"] = 1
  defaults.update(kwargs)
  return config_lib.TrainConfig(**defaults)


def all_weights(result):
  """Every model weight and every per-example state variable, by checkpoint name."""
  out = {}
  for name, item in result.algorithm.checkpoint_items().items():
    if hasattr(item, "weights") and not hasattr(item, "apply_gradients"):
      out.update({f"{name}/{v.path}": v.numpy() for v in item.weights})
  out.update({f"state/{k}": v.numpy() for k, v in result.algorithm.example_state.items()})
  return out


class ReplicaEquivalenceTest(tf.test.TestCase, parameterized.TestCase):
  """All in the slow stage: cyclegan and unit trace graphs of several networks
  (about 1.5 minutes a run on 2 cores), pix2pix took 38 s on a 2-core AVX2 CPU."""

  @pytest.mark.slow
  def test_two_replicas_equal_one_pix2pix(self):
    self._check("pix2pix")

  @pytest.mark.slow
  def test_two_replicas_equal_one_cyclegan(self):
    self._check("cyclegan")

  @pytest.mark.slow
  def test_two_replicas_equal_one_unit(self):
    self._check("unit")

  def _check(self, algo):
    tmp = self.create_tempdir().full_path
    initial = trainer._Trainer(  # pylint: disable=protected-access
        tiny_config(algo, os.path.join(tmp, "init"), cpu_replicas=1))
    w0 = {f"{name}/{v.path}": v.numpy()
          for name, item in initial.algorithm.checkpoint_items().items()
          if hasattr(item, "weights") and not hasattr(item, "apply_gradients")
          for v in item.weights}
    one = trainer.run(tiny_config(algo, os.path.join(tmp, "one"), cpu_replicas=1))
    two = trainer.run(tiny_config(algo, os.path.join(tmp, "two"), cpu_replicas=2))
    self.assertEqual(two.strategy.num_replicas_in_sync, 2)
    w1, w2 = all_weights(one), all_weights(two)
    self.assertEqual(sorted(w1), sorted(w2))
    # Adam moves every weight by about lr per step whatever the gradient's
    # size, so where a gradient element is nearly zero (instance norm over
    # flat image regions) float rounding between 1 and 2 replicas flips its
    # update. Hence: each variable's difference must be small against how far
    # training moved it. A wrong example, noise or loss mapping gives
    # differences as large as the movement itself.
    for name in w1:
      if name in w0:
        moved = np.linalg.norm(w1[name] - w0[name])
        self.assertLessEqual(np.linalg.norm(w1[name] - w2[name]), 0.05 * moved + 1e-6,
                             msg=f"{name}: moved {moved}")
      else:  # The pools: generator outputs in [-1, 1], from the weights just checked.
        # Measured: rounding moves a few of their 150k values by about 1e-5.
        self.assertAllClose(w1[name], w2[name], rtol=1e-4, atol=1e-4, msg=name)
    self.assertGreater(sum(not np.allclose(w1[n], w0[n]) for n in w0), len(w0) // 3)
    for key in ("d_loss", "g_loss"):
      self.assertAllClose(one.metrics[key], two.metrics[key], rtol=1e-3)
    if algo == "cyclegan":  # The pools hold the 2 steps' fakes of both replicas.
      self.assertAllEqual(w2["state/pool_count_a"], [2, 2])
      self.assertGreater(np.abs(w2["state/pool_b"][:, :2]).min(), 0.0)


class ResumeTest(tf.test.TestCase):

  @pytest.mark.slow
  def test_cyclegan_resume_equals_uninterrupted(self):
    # Pools and both optimizers resume. (The learning-rate schedule follows
    # --train_steps, which differs between the two parts here, so it is kept
    # constant; tests/test_train.py checks that a resumed decay starts from
    # the configured rate.)
    tmp = self.create_tempdir().full_path
    flags = dict(checkpoint_every=2, pool_size=2, lr_decay_start=1.0)
    full = trainer.run(tiny_config("cyclegan", os.path.join(tmp, "full"), train_steps=4,
                                   **flags))
    part = os.path.join(tmp, "part")
    trainer.run(tiny_config("cyclegan", part, train_steps=2, **flags))
    resumed = trainer.run(tiny_config("cyclegan", part, train_steps=4, **flags))
    wf, wr = all_weights(full), all_weights(resumed)
    self.assertAllEqual(wf["state/pool_count_b"], [1, 1])  # Pool of 2 over batch 2.
    for name in wf:
      self.assertAllClose(wf[name], wr[name], rtol=1e-6, atol=1e-6, msg=name)


class PoolTest(tf.test.TestCase):

  def test_pool_query_golden(self):
    # Two examples, pools of 2. Example 0 still filling: stores at slot 1 and
    # returns its fake. Example 1 full: use_old 0.3 < 0.5 returns slot
    # int(0.6 * 2) = 1 and stores the fake there.
    pool = tf.constant([[[1.0], [0.0]], [[2.0], [3.0]]])[:, :, None, None, :]  # [2, 2, 1, 1, 1]
    count = tf.constant([1, 2])
    fake = tf.constant([[7.0], [8.0]])[:, None, None, :]
    out, new_pool, new_count = translation_ops.pool_query(pool, count, fake,
                                                      use_old=tf.constant([0.9, 0.3]),
                                                      pick=tf.constant([0.0, 0.6]))
    self.assertAllEqual(tf.reshape(out, [-1]), [7.0, 3.0])
    self.assertAllEqual(tf.reshape(new_pool, [2, 2]), [[1.0, 7.0], [2.0, 8.0]])
    self.assertAllEqual(new_count, [2, 2])
    # Full and use_old >= 0.5: the fake passes through, the pool is unchanged.
    out, kept, _ = translation_ops.pool_query(new_pool, new_count, fake, tf.constant([0.5, 0.7]),
                                          tf.constant([0.0, 0.9]))
    self.assertAllEqual(tf.reshape(out, [-1]), [7.0, 8.0])
    self.assertAllEqual(kept, new_pool)


class _FixedRandom:
  """A stand-in for StepRandomness returning given values per stream."""

  def __init__(self, values):
    self.values = values

  def uniform(self, name, shape=(), minval=0.0, maxval=1.0):
    del shape
    return minval + (maxval - minval) * tf.constant(self.values[name], tf.float32)


class JitterTest(tf.test.TestCase):

  def test_boxes_and_crops(self):
    rand = _FixedRandom({"jitter_y": [0.0, 1.0], "jitter_x": [1.0, 0.0],
                         "jitter_mirror": [0.9, 0.1]})
    boxes = translation_ops.jitter_boxes(rand, scale=1.25)
    # Window 0.8; offsets at the extremes of [0, 0.2]; example 1 mirrored.
    self.assertAllClose(boxes, [[0.0, 0.2, 0.8, 1.0], [0.2, 0.8, 1.0, 0.0]])
    image = tf.reshape(tf.range(16, dtype=tf.float32), [1, 4, 4, 1])
    images = tf.concat([image, image], axis=0)
    same = translation_ops.apply_boxes(images, tf.constant([[0.0, 0.0, 1.0, 1.0],
                                                        [0.0, 1.0, 1.0, 0.0]]))
    self.assertAllClose(same[0], image[0])
    self.assertAllClose(same[1], image[0, :, ::-1])  # x1 > x2 mirrors.


class TranslateTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.run_dir = os.path.join(tf.compat.v1.test.get_temp_dir(), "translate_run")
    cls.trained = trainer.run(tiny_config("cyclegan", cls.run_dir, train_steps=1,
                                          checkpoint_every=1, fresh=True))

  def _folder(self):
    root = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(root, "sub"))
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), np.uint8)).save(
        os.path.join(root, "square.png"))
    Image.fromarray(rng.integers(0, 255, (21, 30), np.uint8)).save(
        os.path.join(root, "gray_odd.png"))
    Image.fromarray(rng.integers(0, 255, (40, 52, 3), np.uint8)).save(
        os.path.join(root, "sub", "photo.jpg"))
    with open(os.path.join(root, "broken.jpg"), "wb") as f:
      f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root

  def test_mixed_sizes_and_a_broken_file(self):
    src, out = self._folder(), os.path.join(self.create_tempdir().full_path, "out")
    result = translate.run(translate.TranslateConfig(self.run_dir, src, out))
    sizes = {os.path.relpath(p, out): Image.open(p).size for p in result.written}
    self.assertEqual(sizes, {"gray_odd.png": (30, 21), "square.png": (32, 32),
                             os.path.join("sub", "photo.png"): (52, 40)})
    self.assertEqual([os.path.basename(p) for p, _ in result.skipped], ["broken.jpg"])
    # An image already a multiple of the stride: exactly the generator's output.
    x = np.asarray(Image.open(os.path.join(src, "square.png")), np.float32) / 127.5 - 1.0
    expected = self.trained.algorithm.gen_ab(x[None], training=False)[0].numpy()
    expected = np.round((expected + 1.0) * 127.5)
    got = np.asarray(Image.open(os.path.join(out, "square.png")), np.float32)
    self.assertAllClose(got, expected, atol=1.0)
    # The reverse direction uses the other generator.
    back = os.path.join(self.create_tempdir().full_path, "back")
    translate.run(translate.TranslateConfig(self.run_dir, src, back, direction="BtoA"))
    self.assertNotAllClose(np.asarray(Image.open(os.path.join(back, "square.png")), np.float32),
                           got)

  def test_cli_exit_codes(self):
    src, out = self._folder(), os.path.join(self.create_tempdir().full_path, "out")
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "pipeline.translate", *args], env=helpers.subprocess_env(),
        cwd=helpers.REPO_ROOT, capture_output=True, text=True, timeout=300)
    done = run(f"--model_dir={self.run_dir}", f"--input={src}", f"--output={out}")
    self.assertEqual(done.returncode, 1, done.stderr)  # One file skipped.
    self.assertIn("Translated 3 image(s)", done.stdout)
    self.assertRegex(done.stdout, r"skipped .*broken.jpg: ")
    bad = run(f"--model_dir={self.run_dir}", f"--input={src}", f"--output={src}/x")
    self.assertEqual(bad.returncode, 2)
    self.assertIn("must not be inside --input", bad.stderr)


class ErrorsTest(tf.test.TestCase):

  def test_wrong_data_kind(self):
    with self.assertRaisesRegex(ValueError, "pix2pix needs paired data .*got unpaired"):
      trainer.run(tiny_config("pix2pix", self.create_tempdir().full_path,
                              data=small_data("shapes_unpaired")))


if __name__ == "__main__":
  tf.test.main()
