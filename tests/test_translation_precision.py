"""The translation networks under mixed_bfloat16, checked as the image GANs
were (tests/test_speed_paths.py, MixedPrecisionTest).

- pix2pix and cyclegan: the hidden layers compute in bfloat16; the last
  layers (`models.blocks.OUTPUT_DTYPE`), the images, the logits and every
  loss and metric are float32 and finite.
- pix2pix: after a few trainer steps, its weights follow float32's within
  `equivalence.MIXED_PRECISION_MAX_SHARE` of how far float32 moved them, the
  image GANs' measure. In pix2pix that distance is mostly batch norm's moving
  statistics (8.0 of the movement's norm after 4 steps, the trainable weights
  0.1), which would hide a lost generator update; so its translations of
  fixed inputs must follow float32's within the same share too. Measured
  2026-12-06 on the AVX512_BF16 EPYC, 16 steps: weights 0.9%, translations
  1.8-3.6% over seeds 0-2; the trainable weights alone 42% (dcgan's 4-9%),
  the deepest U-Net layers most, as far as float32 itself drifts from a copy
  of its initial weights rounded to bfloat16 (28%).
- cyclegan is not held to it: its weights (no batch norm statistics) came to
  37% of float32's movement and its translations to 15-21% (BUILD.md, "Mixed
  precision"), so `--precision=auto` keeps it in float32.

Whether bfloat16 is faster and leaves the translations unharmed is measured
in bench/ (BUILD.md, "Mixed precision"), not here.
"""

import os

from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from tests.test_translation import tiny_config
from training import equivalence
from training import randomness
from training import trainer

# pix2pix (U-Net, conditional PatchGAN, batch norm, dropout, jitter) and
# cyclegan (ResNet generators, instance norm, the image pool).
ALGOS = ("pix2pix", "cyclegan")
STEPS = 16


def model_weights(run):
  """{checkpoint name/path: numpy} of every network weight of a `TrainResult` or
  `_Trainer` (optimizer slots and the cyclegan pools left out)."""
  return {f"{name}/{v.path}": np.array(v.numpy())
          for name, item in run.algorithm.checkpoint_items().items()
          if isinstance(item, keras.Model) for v in item.weights}


class TranslationBfloat16Test(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(*ALGOS)
  def test_bfloat16_inside_float32_at_the_ends(self, algo):
    config = tiny_config(algo, self.create_tempdir().full_path, cpu_replicas=1,
                         precision="mixed_bfloat16")
    t = trainer._Trainer(config)  # pylint: disable=protected-access
    algorithm = t.algorithm
    self.assertEqual(t.precision, "mixed_bfloat16")
    networks = {name: item for name, item in algorithm.checkpoint_items().items()
                if isinstance(item, keras.Model)}
    self.assertLen(networks, 2 if algo == "pix2pix" else 4)
    for name, net in networks.items():
      layers = net._flatten_layers(include_self=False)  # pylint: disable=protected-access
      layers = [layer for layer in layers if layer.weights]
      self.assertNotEmpty([l for l in layers if l.compute_dtype == "bfloat16"], name)
      last = layers[-1]
      self.assertEqual(last.compute_dtype, "float32", f"{name}/{last.name}")
      for v in net.weights:
        self.assertEqual(v.dtype, "float32", f"{name}/{v.path}")

    shape = (2,) + tuple(algorithm.image_shape)
    batch = {key: tf.random.stateless_uniform(shape, [i, 7], -1.0, 1.0)
             for i, key in enumerate(("image_a", "image_b"))}
    self.assertEqual(algorithm.translate(batch["image_a"]).dtype, tf.float32)
    for phase in algorithm.phases():
      rand = randomness.StepRandomness(tf.constant([3, 4], tf.int64), 2, 0, 2)
      per_example, metrics = algorithm.loss(phase, batch, rand)[:2]
      for name, value in {"loss": per_example, **metrics}.items():
        self.assertEqual(value.dtype, tf.float32, f"{phase.name} {name}")
        self.assertEqual(value.shape, (2,), f"{phase.name} {name}")
        self.assertAllInRange(value, -1e6, 1e6)  # Finite, no NaN.

  def test_pix2pix_follows_float32(self):
    tmp = self.create_tempdir().full_path

    def config(name, **kwargs):
      return tiny_config("pix2pix", os.path.join(tmp, name), cpu_replicas=1,
                         train_steps=STEPS, **kwargs)

    init = trainer._Trainer(config("init"))  # pylint: disable=protected-access
    f32 = trainer.run(config("f32", precision="float32"))
    bf16 = trainer.run(config("bf16", precision="mixed_bfloat16"))
    self.assertEqual((f32.precision, bf16.precision), ("float32", "mixed_bfloat16"))
    self.assertEqual(bf16.step, STEPS)
    for name, value in bf16.metrics.items():
      self.assertTrue(np.isfinite(value), f"{name} = {value}")
    w0, w_f32, w_bf16 = (model_weights(r) for r in (init, f32, bf16))
    self.assertEqual(sorted(w_bf16), sorted(w_f32))
    for name, value in w_bf16.items():
      self.assertTrue(np.all(np.isfinite(value)), name)
    limit = equivalence.MIXED_PRECISION_MAX_SHARE
    share = equivalence.norm_diff(w_bf16, w_f32) / equivalence.norm_diff(w_f32, w0)
    self.assertLess(share, limit, f"weights: bfloat16 is {share:.1%} of float32's movement "
                    "away from it")
    x = tf.random.stateless_uniform((8,) + tuple(init.algorithm.image_shape), [1, 2], -1, 1)
    y0, y_f32, y_bf16 = (np.array(r.algorithm.translate(x)) for r in (init, f32, bf16))
    share = np.linalg.norm(y_bf16 - y_f32) / np.linalg.norm(y_f32 - y0)
    self.assertLess(share, limit, f"translations: bfloat16's are {share:.1%} of float32's "
                    "movement away from them")
