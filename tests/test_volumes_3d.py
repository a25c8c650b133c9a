"""Volumes on the one trainer (issue 31): rank-5 batches through the same
algorithms, with the gradient penalty, R1, augmentation and synchronized batch
norm; N replicas equal 1 replica and a resumed run equals an uninterrupted one,
at 16^3 on the CPU. Data: phantom subjects converted with --volumes."""

import os

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

import algorithms
from algorithms import translation
from input import convert
from input.medical import phantom_files
from training import config as config_lib
from tests import test_train
from training import trainer
from training.equivalence import weights

SIZE = 16
_DATA = {}


def small_phantom():
  """The phantom the volume tests convert (4 subjects, seed 0, 20 x 20 x 18
  voxels), written once per process; its folder."""
  phantom = os.path.join(tf.compat.v1.test.get_temp_dir(), "volume_phantom")
  if not os.path.isdir(phantom):
    phantom_files.run(phantom_files.PhantomConfig(output=phantom, subjects=4, seed=0,
                                                  size=(20, 20, 18)))
  return phantom


def volume_data(kind):
  """Phantom volumes converted with --volumes, shared by this process's tests.

  kind: `image` (T1w volumes at 16^3, for the sampling GANs) or `paired`
  (T1w -> T2w, 16^3 volumes, for pix2pix).
  """
  if kind not in _DATA:
    root = os.path.join(tf.compat.v1.test.get_temp_dir(), "volume_data")
    phantom = small_phantom()
    source = (f"nifti:{phantom}/T1w" if kind == "image"
              else f"paired:nifti:{phantom}/T1w,{phantom}/T2w")
    out = os.path.join(root, kind)
    if not os.path.isdir(out):
      convert.run(convert.ConvertConfig(source=source, output=out, volumes=True,
                                        volume_size=(SIZE,), num_workers=1, min_shards=2))
    _DATA[kind] = out
  return _DATA[kind]


def tiny_config(algo, model_dir, **kwargs):
  """A 3-D config small enough to train a few steps in seconds."""
  paired = algo in ("pix2pix", "cyclegan")
  defaults = dict(algo=algo, data=volume_data("paired" if paired else "image"),
                  model_dir=model_dir, global_batch_size=4, base_channels=4, train_steps=2,
                  log_every=1, sample_every=100, checkpoint_every=100, num_samples=4,
                  shuffle_buffer=16, strategy="mirrored", deterministic=True)
  if not paired:
    defaults.update(z_dim=8)
  defaults.update(kwargs)
  return config_lib.TrainConfig(**defaults)


class VolumeTrainingTest(tf.test.TestCase, parameterized.TestCase):

  def test_networks_are_three_dimensional(self):
    tmp = self.create_tempdir().full_path
    result = trainer.run(tiny_config("wgan_gp", tmp, train_steps=1, cpu_replicas=1))
    g = result.algorithm.generator
    out = g(tf.zeros([2, 8]), training=False)
    self.assertEqual(out.shape, (2, SIZE, SIZE, SIZE, 1))
    self.assertEqual(result.algorithm.discriminator(out).shape, (2,))
    self.assertTrue(np.isfinite(result.metrics["gradient_penalty"]).all())
    data = result.algorithm.data
    self.assertTrue(data.volumes)
    self.assertLen(data.voxel_spacing["image"], 3)
    # The plane of a [D, H, W] volume is H x W: its pixel spacing is H's and W's.
    self.assertEqual(data.pixel_spacing["image"], data.voxel_spacing["image"][1:])

  def test_patch_discriminator_depth(self):
    # Images keep the paper's 70x70 PatchGAN; a volume patch gets the most
    # stride-2 layers (<= 3) that leave a logit: side >= 3 * 2^n.
    self.assertEqual(translation.patch_layers((16, 16)), 3)
    self.assertEqual([translation.patch_layers((s,) * 3) for s in (8, 12, 16, 23, 24, 64)],
                     [1, 2, 2, 2, 3, 3])

  def test_mlp_and_cyclegan_refuse_volumes(self):
    tmp = self.create_tempdir().full_path
    with self.assertRaisesRegex(ValueError, "volumes .* take --arch=dcgan"):
      trainer.run(tiny_config("wgan_gp", tmp, arch="mlp"))
    with self.assertRaisesRegex(ValueError, "only pix2pix takes volumes"):
      trainer.run(tiny_config("cyclegan", tmp, data=volume_data("paired")))


class VolumeReplicaEquivalenceTest(tf.test.TestCase, parameterized.TestCase):
  """k steps on 2 replicas == k steps on 1, same global batch, at 16^3."""

  def test_two_replicas_equal_one(self):
    # The gradient penalty and 3-D translation + cutout on every volume D sees.
    self._check("wgan_gp", dict(augment="translation,cutout", n_critic=2))

  # Slow stage (about 2 minutes each on 2 loaded cores; the main stage keeps
  # the wgan_gp case above under 15 minutes in all).
  @parameterized.named_parameters(
      # Synchronized batch norm in 3-D, the U-Net's dropout, the 3-D mirror jitter.
      ("pix2pix", "pix2pix", {}),
      ("sngan_r1", "sngan", dict(penalty="r1")),  # 3-D spectral norm and R1.
      ("dcgan_resnet", "dcgan", dict(arch="resnet")),
  )
  @pytest.mark.slow
  def test_two_replicas_equal_one_slow_stage(self, algo, extra):
    self._check(algo, extra)

  def _check(self, algo, extra):
    test_train.check_two_replicas_equal_one(self, tiny_config, algo, extra)


class VolumeResumeTest(tf.test.TestCase, parameterized.TestCase):

  def test_resume_equals_uninterrupted(self):
    self._check("wgan_gp")

  @pytest.mark.slow
  def test_resume_equals_uninterrupted_slow_stage(self):
    self._check("pix2pix")

  def _check(self, algo):
    tmp = self.create_tempdir().full_path
    flags = dict(cpu_replicas=2, checkpoint_every=2)
    full = trainer.run(tiny_config(algo, os.path.join(tmp, "full"), train_steps=4, **flags))
    part = os.path.join(tmp, "part")
    self.assertEqual(trainer.run(tiny_config(algo, part, train_steps=2, **flags)).step, 2)
    resumed = trainer.run(tiny_config(algo, part, train_steps=4, **flags))
    self.assertEqual(resumed.step, 4)
    wf, wr = weights(full), weights(resumed)
    for name in wf:
      self.assertAllClose(wf[name], wr[name], rtol=1e-6, atol=1e-7, msg=name)


class VolumeMixedPrecisionTest(tf.test.TestCase):

  def test_mixed_bfloat16_trains_and_auto_keeps_float32(self):
    tmp = self.create_tempdir().full_path
    kw = dict(cpu_replicas=1, train_steps=3)
    bf16 = trainer.run(tiny_config("dcgan", os.path.join(tmp, "bf16"),
                                   precision="mixed_bfloat16", **kw))
    f32 = trainer.run(tiny_config("dcgan", os.path.join(tmp, "f32"), precision="float32", **kw))
    self.assertEqual(bf16.algorithm.generator.layers[-1].compute_dtype, "float32")
    self.assertIn("bfloat16", {l.compute_dtype for l in bf16.algorithm.generator.layers})
    for key in ("d_loss", "g_loss"):
      self.assertTrue(np.isfinite(bf16.metrics[key]).all(), key)
    # Same data and noise: bfloat16's losses stay near float32's over 3 steps.
    self.assertAllClose(bf16.metrics["d_loss"], f32.metrics["d_loss"], rtol=0.1, atol=0.05)
    # Volumes were never measured in bfloat16: auto stays float32 for them.
    self.assertFalse(bf16.algorithm.bfloat16_checked())
    self.assertTrue(algorithms.get("pix2pix").checked_in_bfloat16)
