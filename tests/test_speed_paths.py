"""--xla and --precision: the compiled and mixed-precision paths compute what
the plain float32 path computes, and loss scaling is correct in the trainer.

Golden checks: XLA on equals XLA off (same noise, same weights to float
rounding), also on 2 replicas where the per-replica pass is compiled and the
all-reduce is not; mixed precision stays within half-precision rounding of
float32 on 1 and on 2 replicas; a float16 gradient penalty that underflows
without the loss scale is recovered with it; a resumed float16 run (loss scale
in the checkpoint) equals an uninterrupted one; one discriminator call on
[real; fake] gives the losses of two calls where D has no batch norm, and two
calls are kept where it has.
"""

import dataclasses
import os

from absl.testing import parameterized
import keras
import numpy as np
import pytest
import tensorflow as tf

import algorithms
from algorithms import base
from models import blocks
from models import penalties
from tests.test_train import tiny_config
from tests.test_translation import tiny_config as translation_config
from training import config as config_lib
from training import equivalence
from training import precision as precision_lib
from training import randomness
from training import run_dir
from training import trainer
from training.equivalence import weights


class JointDiscriminatorTest(tf.test.TestCase, parameterized.TestCase):
  """algorithms/gans.py's single D call on [real; fake] (bench/joint_d.py)."""

  def _algorithm(self, algo, **kwargs):
    info = base.DataInfo(kind="image", shape=(16, 16, 3), num_classes=3, name="t")
    config = algorithms.get(algo).resolve(
        config_lib.TrainConfig(algo=algo, z_dim=4, base_channels=4, global_batch_size=4,
                               **kwargs), info)
    algo = algorithms.get(algo)(config, info)
    algo.build()
    return algo

  @parameterized.parameters(
      ("sngan", {}), ("wgan_gp", {}), ("sngan", dict(arch="resnet", conditional=True)),
      ("sngan", dict(augment="diffaugment", penalty="r1")))
  def test_one_call_gives_the_losses_of_two(self, algo, kwargs):
    algo = self._algorithm(algo, **kwargs)
    self.assertTrue(algo._joint_d)  # pylint: disable=protected-access
    batch = {"image": tf.random.stateless_uniform([4, 16, 16, 3], [1, 2], -1, 1),
             "label": tf.constant([0, 1, 2, 0])}
    d = algo.phases()[0]

    def d_loss():
      rand = randomness.StepRandomness(tf.constant([5, 6], tf.int64), 4, 0, 4,
                                       step=tf.constant(1, tf.int64))
      with tf.GradientTape() as tape:
        per_example, metrics = algo.loss(d, batch, rand)
      grads = tape.gradient(per_example, algo.discriminator.trainable_variables)
      return per_example, metrics, grads

    joint = d_loss()
    algo._joint_d = False  # pylint: disable=protected-access
    separate = d_loss()
    self.assertAllClose(joint[0], separate[0], rtol=1e-5, atol=1e-6)
    for name in ("d_real", "d_fake"):
      self.assertAllClose(joint[1][name], separate[1][name], rtol=1e-5, atol=1e-6)
    self.assertNotAllClose(joint[1]["d_real"], joint[1]["d_fake"])
    for a, b in zip(joint[2], separate[2]):
      self.assertAllClose(a, b, rtol=1e-4, atol=1e-6)

  def test_batch_norm_discriminators_keep_two_calls(self):
    # DCGAN's D normalizes by the statistics of its batch: real and fake are
    # two batches, as in the paper.
    for algo in ("dcgan", "lsgan", "cdcgan"):
      self.assertFalse(self._algorithm(algo)._joint_d, algo)  # pylint: disable=protected-access
    self.assertFalse(blocks.per_example(self._algorithm("sngan").generator))
    self.assertTrue(blocks.per_example(self._algorithm("sngan", arch="resnet").discriminator))


class XlaTest(tf.test.TestCase):

  def test_compiled_equals_plain_wgan_gp(self):
    self._compiled_equals_plain("wgan_gp")

  @pytest.mark.slow
  def test_compiled_equals_plain_sngan(self):
    self._compiled_equals_plain("sngan")

  @pytest.mark.slow
  def test_compiled_equals_plain_pix2pix(self):
    self._compiled_equals_plain("pix2pix")

  def _compiled_equals_plain(self, algo):
    tmp = self.create_tempdir().full_path
    config = translation_config if algo == "pix2pix" else tiny_config
    extra = dict(jitter=False) if algo == "pix2pix" else {}  # CropAndResize: no XLA kernel.
    plain = trainer.run(config(algo, os.path.join(tmp, "off"), cpu_replicas=1, xla="off",
                               **extra))
    compiled = trainer.run(config(algo, os.path.join(tmp, "on"), cpu_replicas=1, xla="on",
                                  **extra))
    self.assertFalse(plain.xla)
    self.assertTrue(compiled.xla)
    w_off, w_on = weights(plain), weights(compiled)
    self.assertLess(equivalence.max_abs_diff(w_off, w_on), equivalence.XLA_MAX_ABS_DIFF)

  def test_two_compiled_replicas_equal_one_plain(self):
    # gan (MLPs, no batch norm): each replica's pass is compiled, Keras's
    # all-reduce and update run outside it.
    tmp = self.create_tempdir().full_path
    one = trainer.run(tiny_config("gan", os.path.join(tmp, "one"), cpu_replicas=1, xla="off"))
    two = trainer.run(tiny_config("gan", os.path.join(tmp, "two"), cpu_replicas=2, xla="on"))
    self.assertTrue(two.xla)
    self.assertLess(equivalence.max_abs_diff(weights(one), weights(two)),
                    equivalence.XLA_MAX_ABS_DIFF)

  def test_decisions(self):
    tmp = self.create_tempdir().full_path
    with self.assertRaisesRegex(ValueError, r"--xla=on cannot work here: 2 replicas and "
                                "synchronized batch norm"):
      trainer._Trainer(tiny_config("dcgan", tmp, cpu_replicas=2, xla="on"))  # pylint: disable=protected-access
    with self.assertRaisesRegex(ValueError, "--xla=on cannot work here: pix2pix's random "
                                "jitter uses CropAndResize"):
      trainer._Trainer(translation_config("pix2pix", os.path.join(tmp, "p"), xla="on"))  # pylint: disable=protected-access
    auto = trainer._Trainer(tiny_config("dcgan", os.path.join(tmp, "a"), cpu_replicas=1,  # pylint: disable=protected-access
                                        xla="auto", deterministic=False))
    self.assertEqual(auto.xla, precision_lib.XLA_AUTO["CPU"][0])
    det = trainer._Trainer(tiny_config("gan", os.path.join(tmp, "d"), cpu_replicas=1,  # pylint: disable=protected-access
                                       xla="auto", deterministic=True))
    self.assertFalse(det.xla)
    with self.assertRaisesRegex(ValueError, "--xla must be one of auto, on, off, got 'yes'"):
      trainer.run(tiny_config("gan", tmp, xla="yes"))
    with self.assertRaisesRegex(ValueError, "--precision must be one of auto, float32, "
                                "mixed_float16, mixed_bfloat16, got 'float16'"):
      trainer.run(tiny_config("gan", tmp, precision="float16"))


class PrecisionAutoTest(tf.test.TestCase):
  """`--precision=auto`: mixed_bfloat16 only for the DCGAN networks and pix2pix
  on one CPU worker with native bfloat16 and without --deterministic."""

  def test_cpu_flags(self):
    path = os.path.join(self.create_tempdir().full_path, "cpuinfo")
    with open(path, "w", encoding="utf-8") as f:
      f.write("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n"
              "processor\t: 1\nflags\t\t: fpu sse2 avx512f avx512_bf16\n")
    self.assertEqual(precision_lib.cpu_flags(path), {"fpu", "sse2", "avx512f", "avx512_bf16"})
    self.assertEqual(precision_lib.cpu_flags(path + ".missing"), frozenset())

  def test_decisions(self):
    tmp = self.create_tempdir().full_path
    bf16, none = {"avx512f", "avx512_bf16"}, {"avx512f", "avx2"}
    dcgan = trainer._Trainer(tiny_config("dcgan", os.path.join(tmp, "c"), cpu_replicas=1,  # pylint: disable=protected-access
                                         precision="float32", deterministic=False))
    gan = trainer._Trainer(tiny_config("gan", os.path.join(tmp, "m"), cpu_replicas=1,  # pylint: disable=protected-access
                                       precision="float32", deterministic=False))
    pix = trainer._Trainer(translation_config("pix2pix", os.path.join(tmp, "p"),  # pylint: disable=protected-access
                                              precision="float32", deterministic=False))
    cyc = trainer._Trainer(translation_config("cyclegan", os.path.join(tmp, "y"),  # pylint: disable=protected-access
                                              precision="float32", deterministic=False))

    def pick(t, flags, num_workers=1, **changes):
      config = dataclasses.replace(t.config, precision="auto", **changes)
      return precision_lib.use_precision(config.precision, config.deterministic, t.strategy,
                                         t.algorithm, num_workers, flags)[0]

    self.assertEqual(pick(dcgan, bf16), "mixed_bfloat16")
    self.assertEqual(pick(dcgan, none), "float32")  # Emulated bfloat16 is slower.
    self.assertEqual(pick(dcgan, bf16, deterministic=True), "float32")
    self.assertEqual(pick(dcgan, bf16, num_workers=2), "float32")
    self.assertEqual(pick(gan, bf16), "float32")  # MLPs on 2-D data: not checked.
    self.assertEqual(pick(pix, bf16), "mixed_bfloat16")  # Measured and checked (BUILD.md).
    self.assertEqual(pick(pix, none), "float32")
    self.assertEqual(pick(pix, bf16, deterministic=True), "float32")
    self.assertEqual(pick(cyc, bf16), "float32")  # Drifts from float32 (BUILD.md).
    self.assertEqual(precision_lib.use_precision(dcgan.config.precision,
                                                 dcgan.config.deterministic, dcgan.strategy,
                                                 dcgan.algorithm, 1, bf16),
                     ("float32", "set by the flag"))

  def test_resume_across_precisions_but_not_into_float16(self):
    base = config_lib.TrainConfig(algo="dcgan", precision="float32")
    for other in ("auto", "mixed_bfloat16"):
      self.assertEqual(config_lib.conflicts(base, dataclasses.replace(base, precision=other)),
                       [])
    self.assertEqual(
        config_lib.conflicts(base, dataclasses.replace(base, precision="mixed_float16")),
        [("precision", "float32", "mixed_float16")])
    self.assertEqual(config_lib.conflicts(dataclasses.replace(base, precision="mixed_float16"),
                                          dataclasses.replace(base, precision="auto")),
                     [("precision", "mixed_float16", "auto")])
    # A float32 checkpoint restores into mixed_bfloat16 networks (same variables).
    tmp = self.create_tempdir().full_path
    trainer.run(tiny_config("dcgan", tmp, cpu_replicas=1, checkpoint_every=2))
    resumed = trainer.run(tiny_config("dcgan", tmp, cpu_replicas=1, train_steps=4,
                                      precision="mixed_bfloat16"))
    self.assertEqual((resumed.step, resumed.precision), (4, "mixed_bfloat16"))

  def test_auto_builds_the_networks_it_picks(self):
    tmp = self.create_tempdir().full_path
    t = trainer._Trainer(tiny_config("dcgan", tmp, cpu_replicas=1, precision="auto",  # pylint: disable=protected-access
                                     deterministic=False))
    native = bool(precision_lib.cpu_flags() & set(precision_lib.BFLOAT16_CPU_FLAGS))
    self.assertEqual(t.precision, "mixed_bfloat16" if native else "float32")
    self.assertEqual(t.algorithm.generator.compute_dtype,
                     "bfloat16" if native else "float32")
    for v in t.algorithm.generator.weights:
      self.assertEqual(v.dtype, "float32")


class MixedPrecisionTest(tf.test.TestCase):

  def test_close_to_float32_on_one_and_two_replicas_wgan_gp_fp16(self):
    self._close_to_float32("wgan_gp", "mixed_float16")

  @pytest.mark.slow
  def test_close_to_float32_on_one_and_two_replicas_sngan_fp16(self):
    self._close_to_float32("sngan", "mixed_float16")

  @pytest.mark.slow
  def test_close_to_float32_on_one_and_two_replicas_wgan_gp_bf16(self):
    self._close_to_float32("wgan_gp", "mixed_bfloat16")

  def _close_to_float32(self, algo, precision):
    tmp = self.create_tempdir().full_path
    init = trainer._Trainer(tiny_config(algo, os.path.join(tmp, "init"), cpu_replicas=1))  # pylint: disable=protected-access
    w0 = weights(init)
    f32 = weights(trainer.run(tiny_config(algo, os.path.join(tmp, "f32"), cpu_replicas=1)))
    one = trainer.run(tiny_config(algo, os.path.join(tmp, "one"), cpu_replicas=1,
                                  precision=precision))
    two = trainer.run(tiny_config(algo, os.path.join(tmp, "two"), cpu_replicas=2,
                                  precision=precision))
    for v in one.algorithm.generator.weights:  # The policy keeps variables float32.
      self.assertEqual(v.dtype, "float32")
    self.assertEqual(one.algorithm.generator.compute_dtype, precision.split("_")[1])
    # Half precision must follow float32's movement closely, on 1 and on 2
    # replicas (why the bound is relative: training/equivalence.py).
    moved = equivalence.norm_diff(f32, w0)
    limit = equivalence.MIXED_PRECISION_MAX_SHARE * moved
    self.assertLess(equivalence.norm_diff(weights(one), f32), limit)
    self.assertLess(equivalence.norm_diff(weights(two), f32), limit)
    if precision == "mixed_float16":
      for name in ("loss_scale_d", "loss_scale_g", "skipped_steps_d", "skipped_steps_g"):
        self.assertIn(name, one.metrics)
      # The scale may drop on 1 replica and not on 2 (each replica back-props
      # its share of the loss, so overflows depend on the split): only check
      # it is the initial 2^15 halved once per skipped step.
      for r in (one, two):
        for n in ("d", "g"):
          self.assertEqual(r.metrics[f"loss_scale_{n}"],
                           2.0**(15 - r.metrics[f"skipped_steps_{n}"]))
      self.assertIsInstance(one.algorithm.optimizers["d"], precision_lib.LossScaleOptimizer)
      tags = set(run_dir.read_summaries(os.path.join(tmp, "one")))
      self.assertContainsSubset({"loss_scale_d", "skipped_steps_d"}, tags)

  @pytest.mark.slow
  def test_float16_resume_equals_uninterrupted(self):
    tmp = self.create_tempdir().full_path
    flags = dict(cpu_replicas=2, checkpoint_every=2, precision="mixed_float16")
    full = trainer.run(tiny_config("wgan_gp", os.path.join(tmp, "full"), train_steps=4, **flags))
    part = os.path.join(tmp, "part")
    trainer.run(tiny_config("wgan_gp", part, train_steps=2, **flags))
    resumed = trainer.run(tiny_config("wgan_gp", part, train_steps=4, **flags))
    self.assertLess(equivalence.max_abs_diff(weights(full), weights(resumed)), 1e-6)
    for name in ("d", "g"):
      self.assertEqual(float(full.algorithm.optimizers[name].dynamic_scale.numpy()),
                       float(resumed.algorithm.optimizers[name].dynamic_scale.numpy()))

  def test_inf_on_one_replica_skips_the_step_in_the_trainer(self):
    # A generator loss that is inf for the examples of replica 1 only: the
    # generator step is skipped on both replicas and its scale halves.
    tmp = self.create_tempdir().full_path
    t = trainer._Trainer(tiny_config("sngan", tmp, cpu_replicas=2, train_steps=1,  # pylint: disable=protected-access
                                     precision="mixed_float16"))
    algo = t.algorithm
    original = algo.loss
    per_replica = t.per_replica

    def poisoned(phase, batch, rand):
      per_example, metrics = original(phase, batch, rand)
      if phase.name == "g":
        on_replica_1 = tf.fill(tf.shape(per_example), rand.offset >= per_replica)
        # inf times the loss: inf gradients on replica 1, untouched on 0.
        per_example = per_example * tf.where(on_replica_1, tf.constant(np.inf), 1.0)
      return per_example, metrics  # The metrics stay finite: the run goes on.

    algo.loss = poisoned

    def copies():
      return equivalence.replica_copies(t.strategy, algo.generator.trainable_variables)

    before = copies()
    t.train()
    after = copies()
    for b, a in zip(before, after):  # Neither replica's copy was touched.
      self.assertAllEqual(b[0], a[0])
      self.assertAllEqual(b[0], a[1])
    self.assertEqual(float(algo.optimizers["g"].dynamic_scale.numpy()), 2.0**14)
    self.assertEqual(float(algo.optimizers["g"].skipped_steps.numpy()), 1.0)
    self.assertEqual(float(algo.optimizers["d"].skipped_steps.numpy()), 0.0)
    self.assertEqual(float(algo.optimizers["d"].dynamic_scale.numpy()), 2.0**15)


class PenaltyLossScaleTest(tf.test.TestCase):

  def test_float16_penalty_needs_and_gets_the_scale(self):
    # A linear critic whose input gradient (2e-8 per pixel) underflows in
    # float16 (smallest subnormal 6e-8): the norm is lost without the scale and
    # recovered with it. Golden: ||grad|| = 2e-8 * sqrt(16) = 8e-8.
    keras.config.set_dtype_policy("mixed_float16")
    try:
      critic = keras.layers.Dense(1, use_bias=False, kernel_initializer=keras.initializers
                                  .Constant(2e-8))
      critic.build((None, 16))
    finally:
      keras.config.set_dtype_policy("float32")
    real, fake = tf.ones([3, 16]), tf.zeros([3, 16])
    alpha = tf.constant([0.1, 0.5, 0.9])
    d = lambda x: tf.squeeze(critic(x), -1)  # noqa: E731
    _, lost = penalties.wasserstein_gradient_penalty(d, real, fake, alpha, epsilon=0.0)
    _, kept = penalties.wasserstein_gradient_penalty(d, real, fake, alpha, epsilon=0.0,
                                                     loss_scale=tf.constant(2.0**15))
    self.assertAllClose(lost, [0.0] * 3)
    self.assertAllClose(kept, [8e-8] * 3, rtol=1e-2)

  def test_scale_does_not_change_a_float32_penalty(self):
    w = tf.constant([[0.5], [-1.0], [2.0]])
    d = lambda x: tf.squeeze(tf.matmul(x, w), -1)  # noqa: E731
    real, fake = tf.ones([2, 3]), tf.zeros([2, 3])
    alpha = tf.constant([0.3, 0.7])
    plain = penalties.wasserstein_gradient_penalty(d, real, fake, alpha)
    scaled = penalties.wasserstein_gradient_penalty(d, real, fake, alpha,
                                                    loss_scale=tf.constant(1024.0))
    self.assertAllClose(plain, scaled)
    # (||w|| - 1)^2 = (sqrt(5.25) - 1)^2
    self.assertAllClose(plain[0], [(np.sqrt(5.25) - 1.0) ** 2] * 2, rtol=1e-5)


if __name__ == "__main__":
  tf.test.main()
