"""Issue 17 in the trainer: --arch=resnet with projection conditioning,
--augment and ADA, R1 (lazy too), the EMA's start. Each keeps the trainer's
guarantees: 2 replicas == 1, resume == uninterrupted, XLA on == off."""

import dataclasses
import os

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

import algorithms
from algorithms import base
from algorithms import gans
from models import augment as augment_lib
from tests.test_train import tiny_config
from tests.test_translation import tiny_config as translation_config
from training import config as config_lib
from training import equivalence
from training import randomness
from training import run_dir
from training import trainer
from training.equivalence import weights

# Everything at once, so that one run covers every new path: ResNets with
# conditional BN and projection, DiffAugment with ADA's p (ada_kimg=1 makes p
# move by 4 * 8 / 1000 every 4 steps), lazy R1, and an EMA that starts at 2.
SMALL_DATA = dict(arch="resnet", conditional=True, augment="diffaugment", ada_target=0.2,
                  ada_kimg=1, penalty="r1", r1_every=2, r1_gamma=1.0, ema_start=2)


def _data_info(num_classes=3):
  return base.DataInfo(kind="image", shape=(16, 16, 3), num_classes=num_classes, name="t")


def _resolved(algo="sngan", **kwargs):
  config = config_lib.TrainConfig(algo=algo, **kwargs)
  return algorithms.get(algo).resolve(config, _data_info())


class ResolveTest(tf.test.TestCase, parameterized.TestCase):

  def test_defaults(self):
    c = _resolved()
    self.assertEqual((c.arch, c.conditional, c.augment, c.penalty, c.ema_decay),
                     ("dcgan", False, "none", "none", 0.0))
    # The first run's widths and batch on images (README, "The first run").
    self.assertEqual((c.base_channels, c.global_batch_size), (32, 32))
    self.assertEqual(_resolved(arch="cnn").base_channels, 32)
    self.assertEqual(_resolved(base_channels=64, global_batch_size=64).base_channels, 64)
    c = _resolved(arch="resnet")
    self.assertEqual(c.ema_decay, gans.RESNET_EMA_DECAY)  # On by default for ResNets.
    self.assertEqual(c.base_channels, 64)  # mimicry's width.
    c = _resolved("cdcgan")
    self.assertTrue(c.conditional)
    c = _resolved("wgan_gp")
    self.assertEqual((c.penalty, c.gp_weight), ("wgan_gp", 10.0))
    c = _resolved("wgan_gp", penalty="r1")  # R1 replaces the algorithm's GP.
    self.assertEqual((c.penalty, c.gp_weight, c.r1_gamma), ("r1", 0.0, gans.R1_GAMMA))
    c = _resolved(ada_target=0.6)  # ADA without a policy adapts every op.
    self.assertEqual(c.augment, "color,translation,cutout")
    c = _resolved(augment="cutout,color")
    self.assertEqual(c.augment, "cutout,color")
    c = _resolved(gp_weight=5.0)  # As before --penalty: a weight turns the GP on.
    self.assertEqual((c.penalty, c.gp_weight), ("wgan_gp", 5.0))

  @parameterized.parameters(
      (dict(r1_gamma=1.0), "--r1_gamma and --r1_every need --penalty=r1"),
      (dict(r1_every=4), "--r1_gamma and --r1_every need --penalty=r1"),
      (dict(penalty="r1", gp_weight=10.0), "--gp_weight weights the wgan_gp penalty"),
      (dict(penalty="none", gp_weight=10.0), "--gp_weight=10.0 with --penalty=none"),
      (dict(augment="flip"), "unknown augmentation 'flip'"),
      (dict(arch="resnet", conditional=True, label_embedding=8),
       "--arch=resnet conditions by projection"),
      (dict(label_embedding=8), "this run is not --conditional"),
      (dict(arch="vit"), "unknown --arch 'vit'"),
  )
  def test_refusals(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      _resolved(**kwargs)

  def test_vector_data_takes_no_augmentation(self):
    config = config_lib.TrainConfig(algo="gan", augment="color")
    info = base.DataInfo(kind="vector", shape=(2,), num_classes=0, name="ring")
    with self.assertRaisesRegex(ValueError, "augments images"):
      algorithms.get("gan").resolve(config, info)

  @parameterized.parameters("cyclegan", "unit")
  def test_unpaired_translation_refuses_augmentation(self, algo):
    with self.assertRaisesRegex(ValueError, f"--augment=color is not read by --algo={algo}"):
      algorithms.check_settings(config_lib.TrainConfig(algo=algo, augment="color"))
    with self.assertRaisesRegex(ValueError, f"--ada_target=0.6 is not read by --algo={algo}"):
      algorithms.check_settings(config_lib.TrainConfig(algo=algo, ada_target=0.6))

  def test_old_run_configs_resume(self):
    # A config.json written before --conditional, --penalty and --augment.
    old = dataclasses.replace(_resolved(), conditional=None, penalty=None, augment=None)
    self.assertEqual(config_lib.conflicts(old, _resolved()), [])
    self.assertNotEqual(config_lib.conflicts(_resolved(augment="color"), _resolved()), [])


class AdaTest(tf.test.TestCase):
  """p's schedule by hand, on the algorithm outside the trainer."""

  def test_p_moves_by_the_sign_of_r_t_minus_the_target_every_interval(self):
    config = _resolved(ada_target=0.6, ada_kimg=1, global_batch_size=10, n_critic=2)
    algo = algorithms.get("sngan")(config, _data_info())
    algo.build()
    d = algo.phases()[0]
    step = tf.Variable(0, dtype=tf.int64)
    # One interval = 4 steps x 2 D updates = 8 updates of 10 images:
    # p moves by 80 / 1000 = 0.08 at the 8th update.
    ps = []
    for r_t in [1.0] * 8 + [0.5] * 8 + [0.9, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0] + [1.0] * 7:
      algo.after_update(d, step, {"r_t": tf.constant(r_t)})
      ps.append(float(algo.ada["p"].numpy()))
    expected = [0.0] * 7 + [0.08] * 8 + [0.0] * 16
    # Interval 2: mean 0.5 < 0.6, p -> max(0, 0.08 - 0.08) = 0 at update 16.
    # Interval 3: mean 0.225 < 0.6, clipped at 0. Interval 4: unfinished.
    self.assertAllClose(ps, expected)
    self.assertEqual(float(algo.ada["updates"].numpy()), 7.0)
    self.assertAllClose(float(algo.ada["sign_sum"].numpy()), 7.0)
    for name in ("ada_p", "ada_sign_sum", "ada_updates"):
      self.assertIn(name, algo.checkpoint_items())

  def test_p_gates_each_op_per_example(self):
    config = _resolved(augment="cutout", ada_target=0.6)
    algo = algorithms.get("sngan")(config, _data_info())
    algo.build()
    x = tf.ones([8, 16, 16, 3])
    rand = randomness.StepRandomness(tf.constant([3, 4], tf.int64), 8, 0, 8)
    algo.ada["p"].assign(0.0)
    self.assertAllEqual(algo._augment(x, rand, "real"), x)  # pylint: disable=protected-access
    algo.ada["p"].assign(1.0)
    cut = algo._augment(x, rand, "real")  # pylint: disable=protected-access
    # Every image lost an 8 x 8 square, clipped at the border to no less
    # than 4 x 4: between 1/16 and 1/4 of its pixels.
    self.assertAllInRange(tf.reduce_mean(cut, axis=[1, 2, 3]), 0.75, 1 - 1 / 16)
    algo.ada["p"].assign(0.5)
    half = algo._augment(x, rand, "real")  # pylint: disable=protected-access
    applies = rand.uniform(f"augment/real/{augment_lib.APPLY}", (1,))[:, 0] < 0.5
    changed = tf.reduce_any(half != x, axis=[1, 2, 3])
    self.assertAllEqual(changed, applies)


class LazyR1Test(tf.test.TestCase):

  def test_penalty_on_every_kth_step_at_k_times_the_weight(self):
    config = _resolved(penalty="r1", r1_gamma=3.0, r1_every=4, z_dim=4, base_channels=4,
                       global_batch_size=4)
    algo = algorithms.get("sngan")(config, _data_info(0))
    algo.build()
    d = algo.phases()[0]
    batch = {"image": tf.random.stateless_uniform([4, 16, 16, 3], [1, 2], -1, 1)}

    def d_loss(step):
      rand = randomness.StepRandomness(tf.constant([5, 6], tf.int64), 4, 0, 4,
                                       step=tf.constant(step, tf.int64))
      per_example, metrics = algo.loss(d, batch, rand)
      return per_example, metrics["d_loss"], metrics["gradient_penalty"]

    for step in (1, 2, 3):
      total, plain, gp = d_loss(step)
      self.assertAllEqual(gp, tf.zeros([4]))
      self.assertAllClose(total, plain)
    total, plain, gp = d_loss(8)
    self.assertAllGreater(gp, 0.0)
    self.assertAllClose(total, plain + 3.0 / 2 * 4 * gp, rtol=1e-5)


  def test_lazy_r1_trains_under_mixed_float16(self):
    # The loss-scaled path: R1 applies on every other step (zero between) and
    # every weight stays finite.
    tmp = self.create_tempdir().full_path
    result = trainer.run(tiny_config("sngan", tmp, precision="mixed_float16", penalty="r1",
                                     r1_every=2, train_steps=4, steps_per_loop=1))
    self.assertEqual(result.precision, "mixed_float16")
    penalty = [v for _, v in run_dir.read_scalars(tmp, "gradient_penalty")]
    self.assertLen(penalty, 4)
    self.assertEqual([v > 0 for v in penalty], [v > 0 for v in penalty[:2]] * 2)
    self.assertEqual(sum(v > 0 for v in penalty), 2)
    for w in weights(result).values():
      self.assertTrue(np.all(np.isfinite(w)))


class SmallDataTrainingTest(tf.test.TestCase):

  def test_two_replicas_equal_one(self):
    tmp = self.create_tempdir().full_path
    runs = [trainer.run(tiny_config("sngan", os.path.join(tmp, str(n)), cpu_replicas=n,
                                    train_steps=8, **SMALL_DATA)) for n in (1, 2)]
    one, two = runs
    self.assertEqual(two.strategy.num_replicas_in_sync, 2)
    w1, w2 = weights(one), weights(two)
    self.assertEqual(sorted(w1), sorted(w2))
    for name in w1:
      self.assertAllClose(w1[name], w2[name], rtol=equivalence.REPLICAS_RTOL,
                          atol=equivalence.REPLICAS_ATOL, msg=name)
    for key in ("d_loss", "g_loss", "r_t", "gradient_penalty", "augment_p"):
      self.assertAllClose(one.metrics[key], two.metrics[key], rtol=equivalence.REPLICAS_RTOL,
                          atol=equivalence.REPLICAS_ATOL, msg=key)
    self.assertEqual(float(one.algorithm.ada["p"].numpy()),
                     float(two.algorithm.ada["p"].numpy()))
    # The projection and conditional batch norm are there, and trained.
    self.assertIsNotNone(one.algorithm.discriminator.embed)

  @pytest.mark.slow
  def test_resume_equals_uninterrupted_and_restores_p(self):
    # p starts at 0.5 in both runs (set before training), so that a resume
    # that lost p (StyleGAN2-ADA's issues #81 and #30) would augment less.
    # The checkpoint at step 6 falls inside an ADA interval (4..8).
    tmp = self.create_tempdir().full_path
    flags = dict(cpu_replicas=2, checkpoint_every=3, log_every=1, **SMALL_DATA)

    def start(model_dir, steps, p=None):
      t = trainer._Trainer(tiny_config("sngan", model_dir, train_steps=steps, **flags))  # pylint: disable=protected-access
      if p is not None:
        t.algorithm.ada["p"].assign(p)
      t.train()
      return t

    full = start(os.path.join(tmp, "full"), 8, p=0.5)
    part = os.path.join(tmp, "part")
    start(part, 6, p=0.5)
    resumed = start(part, 8)
    wf, wr = weights(full), weights(resumed)
    for name in wf:
      self.assertAllClose(wf[name], wr[name], rtol=1e-6, atol=1e-7, msg=name)
    for name, var in full.algorithm.ada.items():
      self.assertEqual(float(var.numpy()), float(resumed.algorithm.ada[name].numpy()), name)
    # p moved twice, by 4 steps x 8 images / 1000 each time.
    self.assertIn(round(float(full.algorithm.ada["p"].numpy()), 6), (0.436, 0.5, 0.564))

  def test_xla_on_equals_off(self):
    tmp = self.create_tempdir().full_path
    off, on = [trainer.run(tiny_config("sngan", os.path.join(tmp, xla), cpu_replicas=1, xla=xla,
                                       train_steps=4, **SMALL_DATA)) for xla in ("off", "on")]
    self.assertTrue(on.xla)
    self.assertLess(equivalence.max_abs_diff(weights(off), weights(on)),
                    equivalence.XLA_MAX_ABS_DIFF)

  def test_ema_is_a_copy_before_ema_start(self):
    tmp = self.create_tempdir().full_path
    kwargs = dict(cpu_replicas=1, arch="resnet", ema_decay=0.5)
    before = trainer.run(tiny_config("sngan", os.path.join(tmp, "b"), train_steps=2,
                                     ema_start=3, **kwargs)).algorithm
    for e, g in zip(before.ema_generator.weights, before.generator.weights):
      self.assertAllEqual(e.numpy(), g.numpy())
    after = trainer.run(tiny_config("sngan", os.path.join(tmp, "a"), train_steps=4,
                                    ema_start=3, **kwargs)).algorithm
    self.assertFalse(all(np.array_equal(e.numpy(), g.numpy()) for e, g in
                         zip(after.ema_generator.trainable_variables,
                             after.generator.trainable_variables)))

  @pytest.mark.slow
  def test_wgan_gp_resnet_and_conditional_dcgan_with_augmentation(self):
    # The GP through augmented interpolates with a plain (no-SN) ResNet
    # critic; --conditional on an algorithm whose paper is unconditional.
    tmp = self.create_tempdir().full_path
    for algo, extra in (("wgan_gp", dict(arch="resnet", augment="translation,cutout")),
                        ("lsgan", dict(conditional=True, augment="color"))):
      one, two = [trainer.run(tiny_config(algo, os.path.join(tmp, f"{algo}{n}"),
                                          cpu_replicas=n, **extra)) for n in (1, 2)]
      self.assertLess(equivalence.max_abs_diff(weights(one), weights(two)), 1e-4, algo)


class Pix2PixAugmentTest(tf.test.TestCase):

  @pytest.mark.slow
  def test_pair_shares_the_transform_and_replicas_agree(self):
    tmp = self.create_tempdir().full_path
    one, two = [trainer.run(translation_config("pix2pix", os.path.join(tmp, str(n)),
                                               cpu_replicas=n, augment="translation,cutout"))
                for n in (1, 2)]
    self.assertLess(equivalence.max_abs_diff(weights(one), weights(two)), 1e-4)
    algo = one.algorithm
    x = tf.random.stateless_uniform([4, 32, 32, 1], [1, 1], -1, 1)
    rand = randomness.StepRandomness(tf.constant([7, 7], tf.int64), 4, 0, 4)
    t = algo._pair_augment(rand)  # pylint: disable=protected-access
    # The same draws for two images of a pair: the same shift and cut on each.
    self.assertAllEqual(tf.equal(t(x), 0.0), tf.equal(t(x * 0.5), 0.0))
