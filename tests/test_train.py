"""The trainer: N replicas equal 1, resume equals uninterrupted, run directory."""

import json
import os
import subprocess
import sys

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

import algorithms
from input import convert
from tests import helpers
from training import checkpointing
from training import config as config_lib
from training import equivalence
from training import errors
from training import run_dir
from training import trainer
from training.equivalence import weights

IMAGE_ALGOS = ["dcgan", "cdcgan", "wgan", "wgan_gp", "sngan", "sn_wgan_gp", "lsgan"]
MLP_ALGOS = ["gan", "cgan"]
# Their pieces are covered in the main stage by other algorithms (batch-norm D:
# dcgan; spectral norm: sngan; gradient penalty: wgan_gp); these run in the
# slow stage to keep the main one under 15 minutes on a 2-core AVX2 CPU.
SLOW_REPLICA_ALGOS = ["wgan", "sn_wgan_gp", "lsgan"]

_DATA = {}


def small_data(name):
  """Small converted datasets shared by the tests of this process."""
  if name not in _DATA:
    root = os.path.join(tf.compat.v1.test.get_temp_dir(), "train_data")
    kwargs = dict(image_size=16) if name == "shapes" else {}
    _DATA[name] = os.path.join(root, name)
    if not os.path.isdir(_DATA[name]):
      convert.run(convert.ConvertConfig(source=f"builtin:{name}", output=_DATA[name],
                                        max_examples=256, min_shards=4, num_workers=1,
                                        **kwargs))
  return _DATA[name]


def tiny_config(algo, model_dir, **kwargs):
  """A config small enough to train a few steps in seconds."""
  data = small_data("ring2d" if algo in MLP_ALGOS else "shapes")
  defaults = dict(algo=algo, data=data, model_dir=model_dir, global_batch_size=8,
                  base_channels=4, mlp_hidden=(16, 16), z_dim=8, train_steps=2,
                  log_every=1, sample_every=100, checkpoint_every=100, num_samples=8,
                  shuffle_buffer=64, strategy="mirrored", deterministic=True)
  defaults.update(kwargs)
  return config_lib.TrainConfig(**defaults)


def check_two_replicas_equal_one(test, make_config, algo, extra):
  """Trains `algo` on 1 and on 2 replicas (same global batch and noise) and
  checks that every weight and the losses agree, and that training moved at
  least a third of the weights away from where a zero-rate step leaves them.

  Args:
    test: the `tf.test.TestCase` asserting.
    make_config: `(algo, model_dir, **kwargs) -> TrainConfig` (a tiny one).
    algo: the algorithm.
    extra: more settings for every run.
  """
  tmp = test.create_tempdir().full_path
  one = trainer.run(make_config(algo, os.path.join(tmp, "one"), cpu_replicas=1, **extra))
  two = trainer.run(make_config(algo, os.path.join(tmp, "two"), cpu_replicas=2, **extra))
  test.assertEqual(one.strategy.num_replicas_in_sync, 1)
  test.assertEqual(two.strategy.num_replicas_in_sync, 2)
  w1, w2 = weights(one), weights(two)
  test.assertEqual(sorted(w1), sorted(w2))
  init = trainer.run(make_config(algo, os.path.join(tmp, "init"), cpu_replicas=1,
                                 train_steps=1, lr_g=0.0, lr_d=0.0, **extra))
  w0 = weights(init)
  moved = 0
  for name in w1:
    test.assertAllClose(w1[name], w2[name], rtol=equivalence.REPLICAS_RTOL,
                        atol=equivalence.REPLICAS_ATOL, msg=name)
    moved += not np.allclose(w1[name], w0[name])
  test.assertGreater(moved, len(w1) // 3)  # Training did change the weights.
  for key in ("d_loss", "g_loss"):
    test.assertAllClose(one.metrics[key], two.metrics[key], rtol=equivalence.REPLICAS_RTOL,
                        atol=equivalence.REPLICAS_ATOL)


_THREE_REPLICAS = """
import json, sys
from absl import flags
flags.FLAGS.mark_as_parsed()
import numpy as np
from tests.test_train import tiny_config
from training import equivalence, trainer
tmp = sys.argv[1]
kw = dict(global_batch_size=6, train_steps=2)
three = trainer.run(tiny_config("sngan", tmp + "/three", cpu_replicas=3, **kw))  # First: 3 CPUs.
one = trainer.run(tiny_config("sngan", tmp + "/one", cpu_replicas=1, **kw))
init = trainer.run(tiny_config("sngan", tmp + "/init", cpu_replicas=1, train_steps=1, lr_g=0.0,
                               lr_d=0.0, global_batch_size=6))
w1, w3, w0 = (equivalence.weights(r) for r in (one, three, init))
close = all(np.allclose(w1[n], w3[n], rtol=equivalence.REPLICAS_RTOL,
                        atol=equivalence.REPLICAS_ATOL) for n in w1)
moved = sum(not np.allclose(w1[n], w0[n]) for n in w1) / len(w1)
print(json.dumps({"replicas": [three.strategy.num_replicas_in_sync,
                               one.strategy.num_replicas_in_sync],
                  "close": bool(close) and sorted(w1) == sorted(w3), "moved": moved}))
"""


class ReplicaEquivalenceTest(tf.test.TestCase, parameterized.TestCase):
  """k steps on 2 replicas (logical CPUs) == k steps on 1 replica, same global
  batch, same per-example noise. Batch norm is synchronized; spectral-norm u
  vectors are compared too (they are weights of D)."""

  @parameterized.named_parameters(
      *[(a, a, {}) for a in IMAGE_ALGOS + MLP_ALGOS if a not in SLOW_REPLICA_ALGOS],
      ("cgan_label_embedding", "cgan", dict(label_embedding=4)),
      ("cdcgan_label_embedding_ema", "cdcgan", dict(label_embedding=4, ema_decay=0.9)))
  def test_two_replicas_equal_one(self, algo, extra):
    self._check(algo, extra)

  @parameterized.named_parameters(*[(a, a) for a in SLOW_REPLICA_ALGOS])
  @pytest.mark.slow
  def test_two_replicas_equal_one_slow_stage(self, algo):
    self._check(algo, {})

  def _check(self, algo, extra):
    check_two_replicas_equal_one(self, tiny_config, algo, extra)

  @pytest.mark.slow
  def test_three_replicas_equal_one(self):
    # An odd replica count (issue 27: the all-reduce over an odd split). Three
    # logical CPUs need a fresh process: this one has two.
    tmp = self.create_tempdir().full_path
    done = subprocess.run([sys.executable, "-c", _THREE_REPLICAS, tmp], cwd=helpers.REPO_ROOT,
                          env=helpers.subprocess_env(), capture_output=True, text=True,
                          timeout=600, check=False)
    self.assertEqual(done.returncode, 0, done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    self.assertEqual(result["replicas"], [3, 1])
    self.assertTrue(result["close"], result)
    self.assertGreater(result["moved"], 0.3)

  def test_replica_copies_stay_equal(self):
    tmp = self.create_tempdir().full_path
    result = trainer.run(tiny_config("sngan", tmp, cpu_replicas=2, train_steps=3))
    for model in (result.algorithm.generator, result.algorithm.discriminator):
      for v in model.weights:
        copies = result.strategy.experimental_local_results(v.value)
        self.assertLen(copies, 2)
        self.assertAllEqual(copies[0], copies[1], msg=v.path)


class ResumeTest(tf.test.TestCase, parameterized.TestCase):

  def test_resume_equals_uninterrupted(self):
    self._check("wgan_gp")

  @parameterized.named_parameters(("sngan", "sngan"), ("cdcgan", "cdcgan"))
  @pytest.mark.slow
  def test_resume_equals_uninterrupted_slow_stage(self, algo):
    self._check(algo)

  def _check(self, algo):
    tmp = self.create_tempdir().full_path
    flags = dict(deterministic=True, cpu_replicas=2, checkpoint_every=2, log_every=1)
    full = trainer.run(tiny_config(algo, os.path.join(tmp, "full"), train_steps=4, **flags))
    part = os.path.join(tmp, "part")
    first = trainer.run(tiny_config(algo, part, train_steps=2, **flags))
    self.assertEqual(first.step, 2)
    resumed = trainer.run(tiny_config(algo, part, train_steps=4, **flags))
    self.assertEqual(resumed.step, 4)
    wf, wr = weights(full), weights(resumed)
    for name in wf:
      self.assertAllClose(wf[name], wr[name], rtol=1e-6, atol=1e-7, msg=name)

  def test_resume_without_iterator_state_would_differ(self):
    # Guards the test above: resuming with a fresh input pipeline changes the
    # result, so equality there proves the iterator position is restored.
    tmp = self.create_tempdir().full_path
    flags = dict(deterministic=True, cpu_replicas=1, checkpoint_every=2)
    full = trainer.run(tiny_config("sngan", os.path.join(tmp, "full"), train_steps=4, **flags))
    part = os.path.join(tmp, "part")
    trainer.run(tiny_config("sngan", part, train_steps=2, **flags))
    t = trainer._Trainer(tiny_config("sngan", part, train_steps=4, **flags))  # pylint: disable=protected-access
    self.assertEqual(int(t.step.numpy()), 2)
    t.iterator = iter(t.dataset)  # Weights and step restored; input from the start.
    resumed = t.train()
    wf, wr = weights(full), weights(resumed)
    self.assertFalse(all(np.allclose(wf[n], wr[n], rtol=1e-6, atol=1e-7) for n in wf))


class ResumeOnAnotherShapeTest(tf.test.TestCase):
  """Issue 27: a run resumed with another replica count (a requeue onto a node
  with another number of GPUs) goes on: weights, optimizers and step are
  restored, the input starts afresh with a warning; the same shape again
  resumes its own input position exactly."""

  def test_one_to_two_to_one_replicas(self):
    tmp = self.create_tempdir().full_path
    flags = dict(deterministic=True, checkpoint_every=10, log_every=10, steps_per_loop=10)
    run = os.path.join(tmp, "run")

    def train(steps, replicas):
      with self.assertLogs("absl", "INFO") as logs:
        result = trainer.run(tiny_config("wgan_gp", run, train_steps=steps,
                                         cpu_replicas=replicas, **flags))
      self.assertEqual(result.step, steps)
      for w in weights(result).values():
        self.assertTrue(np.all(np.isfinite(w)))
      return "\n".join(logs.output)

    train(10, 1)
    # Before, the iterator restored from the 1-replica run was used as is;
    # with batches of the old size still prefetched in it, the compiled loop
    # died (the README's command resumed with --cpu_replicas=2: "Incompatible
    # shapes at component 0: expected [16,32,32,3] but got [32,32,32,3]").
    text = train(20, 2)
    self.assertIn("at step 10", text)
    self.assertIn("another input shape than it was saved with", text)
    self.assertIn("holds no input position for worker 0 of 1 at 4 examples per replica", text)
    text = train(30, 2)  # The same shape again: its own position, no warning.
    self.assertIn("at step 20", text)
    self.assertNotIn("another input shape", text)
    text = train(40, 1)  # Back to 1: its position is from step 10, not 30.
    self.assertIn("at step 30", text)
    self.assertIn("another input shape", text)
    files = sorted(os.listdir(os.path.join(run, "checkpoints")))
    self.assertIn(checkpointing.input_key(0, 1, 8, 1), files)
    self.assertIn(checkpointing.input_key(0, 1, 4, 2), files)


class PerReplicaBatchTest(tf.test.TestCase):
  """Issue 27: --per_replica_batch_size scales the global batch with the replicas."""

  def test_the_global_batch_follows_the_replicas(self):
    run = self.create_tempdir().full_path
    result = trainer.run(tiny_config("wgan_gp", run, global_batch_size=None,
                                     per_replica_batch_size=3, cpu_replicas=2, train_steps=1))
    self.assertEqual(result.config.global_batch_size, 6)
    with open(os.path.join(run, "config.json"), encoding="utf-8") as f:
      stored = json.load(f)
    self.assertEqual((stored["global_batch_size"], stored["per_replica_batch_size"]), (6, 3))
    # The run keeps its global batch: another replica count is refused, named.
    with self.assertRaisesRegex(errors.TrainingError, "global_batch_size=6 there, 3 now"):
      trainer.run(tiny_config("wgan_gp", run, global_batch_size=None, per_replica_batch_size=3,
                              cpu_replicas=1, train_steps=2))

  def test_not_both(self):
    with self.assertRaisesRegex(ValueError, "give --global_batch_size or "
                                "--per_replica_batch_size, not both"):
      tiny_config("wgan_gp", "/tmp/unused", per_replica_batch_size=4).validate()


class EmaTest(tf.test.TestCase):

  def test_ema_golden(self):
    # e0 = g0; e_t = d e_{t-1} + (1 - d) g_t, so after 2 steps
    # e2 = d (d g0 + (1 - d) g1) + (1 - d) g2.
    tmp = self.create_tempdir().full_path
    d = 0.5
    runs = [trainer.run(tiny_config("wgan_gp", os.path.join(tmp, str(k)), train_steps=k,
                                    ema_decay=d))
            for k in (1, 2)]
    g1 = {v.path: v.numpy() for v in runs[0].algorithm.generator.trainable_variables}
    final = runs[1].algorithm
    g0 = trainer.run(tiny_config("wgan_gp", os.path.join(tmp, "0"), train_steps=1, lr_g=0.0,
                                 lr_d=0.0)).algorithm.generator
    g0 = {v.path: v.numpy() for v in g0.trainable_variables}
    for e, g in zip(final.ema_generator.trainable_variables,
                    final.generator.trainable_variables):
      expected = d * (d * g0[g.path] + (1 - d) * g1[g.path]) + (1 - d) * g.numpy()
      self.assertAllClose(e.numpy(), expected, rtol=1e-5, atol=1e-6, msg=g.path)
    z = tf.random.normal([2, 8])
    self.assertAllClose(final.sample(z), final.ema_generator(z))


class LearningRateDecayTest(tf.test.TestCase):

  def test_lr_factor_golden(self):
    # 10 steps, decay from step 6: steps 0-6 at 1, then (10 - s) / 4.
    got = [float(trainer.lr_factor(s, 10, 0.6)) for s in range(10)]
    self.assertAllClose(got, [1, 1, 1, 1, 1, 1, 1, 0.75, 0.5, 0.25])
    self.assertAllClose([float(trainer.lr_factor(s, 4, 1.0)) for s in range(4)], [1] * 4)

  def test_run_decays_both_learning_rates(self):
    # The lr in effect for the last of 4 steps, decaying from step 2, is 1/2 of
    # the base; the optimizers hold it afterwards and the resolved config says so.
    result = trainer.run(tiny_config("wgan_gp", self.create_tempdir().full_path,
                                     train_steps=4, lr_decay_start=0.5, lr_g=1e-3, lr_d=2e-3))
    self.assertAllClose(result.metrics["lr_g"], 0.5e-3)
    self.assertAllClose(result.metrics["lr_d"], 1e-3)
    self.assertEqual(result.config.lr_decay_start, 0.5)

  def test_resumed_run_decays_from_the_base_rate(self):
    # The checkpoint holds the decayed rate; the schedule must start from the
    # configured one: 0.5 x 1e-3 at the last of 4 steps, resumed after 3.
    tmp = self.create_tempdir().full_path
    flags = dict(lr_decay_start=0.5, lr_g=1e-3, lr_d=1e-3, checkpoint_every=1)
    trainer.run(tiny_config("gan", tmp, train_steps=3, **flags))
    resumed = trainer.run(tiny_config("gan", tmp, train_steps=4, **flags))
    self.assertAllClose(resumed.metrics["lr_g"], 0.5e-3)


class RunDirectoryTest(tf.test.TestCase):

  def test_outputs(self):
    tmp = self.create_tempdir().full_path
    result = trainer.run(tiny_config("cdcgan", tmp, train_steps=4, sample_every=2,
                                     checkpoint_every=2, keep_checkpoints=1, log_every=2))
    with open(os.path.join(tmp, "config.json")) as f:
      stored = json.load(f)
    self.assertEqual(stored["algo"], "cdcgan")
    self.assertEqual(stored["loss"], "bce")  # Resolved from the algorithm's defaults.
    self.assertEqual(stored["lr_d"], 2e-4)
    self.assertEqual(sorted(os.listdir(os.path.join(tmp, "samples"))),
                     ["step_0000002.png", "step_0000004.png"])
    ckpts = tf.train.get_checkpoint_state(os.path.join(tmp, "checkpoints"))
    self.assertEqual(os.path.basename(ckpts.model_checkpoint_path), "ckpt-4")
    self.assertLen(ckpts.all_model_checkpoint_paths, 1)  # --keep_checkpoints=1
    tags = set(run_dir.read_summaries(tmp))
    for tag in ("d_loss", "g_loss", "d_real", "d_fake", "images_per_sec", "lr_g", "lr_d",
                "samples"):
      self.assertIn(tag, tags)
    self.assertEqual(result.step, 4)

  def test_conflicting_config_refused_and_fresh_starts_over(self):
    tmp = self.create_tempdir().full_path
    trainer.run(tiny_config("sngan", tmp, checkpoint_every=2))
    with self.assertRaisesRegex(errors.TrainingError,
                                r"algo='sngan' there, 'wgan_gp' now.*--fresh"):
      trainer.run(tiny_config("wgan_gp", tmp))
    result = trainer.run(tiny_config("wgan_gp", tmp, fresh=True))
    self.assertEqual(result.step, 2)
    with open(os.path.join(tmp, "config.json")) as f:
      self.assertEqual(json.load(f)["algo"], "wgan_gp")

  def test_more_steps_resume_fewer_is_a_no_op(self):
    tmp = self.create_tempdir().full_path
    trainer.run(tiny_config("lsgan", tmp, train_steps=2, checkpoint_every=2))
    again = trainer.run(tiny_config("lsgan", tmp, train_steps=2))
    self.assertEqual(again.step, 2)

  def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(self):
    tmp = self.create_tempdir().full_path
    trainer.run(tiny_config("lsgan", tmp, train_steps=2, checkpoint_every=2))
    cls = algorithms.get("lsgan")
    original = cls.loss

    def diverging_loss(self, phase, batch, rand):
      per_example, metrics = original(self, phase, batch, rand)
      return per_example * np.float32("nan"), {k: v * np.float32("nan")
                                               for k, v in metrics.items()}

    cls.loss = diverging_loss
    try:
      with self.assertRaisesRegex(errors.TrainingError,
                                  r"non-finite .*d_loss.*stopped without saving.*ckpt-2"):
        trainer.run(tiny_config("lsgan", tmp, train_steps=6, checkpoint_every=2))
    finally:
      cls.loss = original
    state = tf.train.get_checkpoint_state(os.path.join(tmp, "checkpoints"))
    self.assertEqual(os.path.basename(state.model_checkpoint_path), "ckpt-2")
    resumed = trainer.run(tiny_config("lsgan", tmp, train_steps=2))
    for v in resumed.algorithm.generator.weights:
      self.assertTrue(np.all(np.isfinite(v.numpy())))


  def test_read_scalars_joins_event_files_in_step_order(self):
    # A resumed run writes a second event file: its curve is read after the first's,
    # whatever order the files list in.
    tmp = self.create_tempdir().full_path
    board = os.path.join(tmp, run_dir.TENSORBOARD_SUBDIR)
    for steps in ((3, 4), (1, 2)):
      writer = tf.summary.create_file_writer(board, filename_suffix=f".part{steps[0]}")
      with writer.as_default():
        for step in steps:
          tf.summary.scalar("d_loss", step / 4, step=step)
          tf.summary.image("samples", tf.zeros([1, 2, 2, 1]), step=step)
      writer.close()
    self.assertEqual(run_dir.read_scalars(tmp, "d_loss"),
                     [(1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0)])
    self.assertEqual(run_dir.read_scalars(tmp, "g_loss"), [])
    summaries = run_dir.read_summaries(tmp)
    self.assertEqual(sorted(summaries), ["d_loss", "samples"])
    self.assertEqual([s for s, _ in summaries["samples"]], [1, 2, 3, 4])


class ErrorsTest(tf.test.TestCase):

  def test_unknown_algo_lists_valid(self):
    with self.assertRaisesRegex(ValueError, "unknown --algo 'stylegan'; valid: cdcgan, cgan, "
                                "cyclegan, dcgan, gan, lsgan, pix2pix, sn_wgan_gp, sngan, "
                                "unit, wgan, wgan_gp"):
      trainer.run(tiny_config("stylegan", self.create_tempdir().full_path))

  def test_default_strategy_trains_like_one_device(self):
    tmp = self.create_tempdir().full_path
    default = trainer.run(tiny_config("sngan", os.path.join(tmp, "d"), strategy="default"))
    one = trainer.run(tiny_config("sngan", os.path.join(tmp, "o"), strategy="one_device"))
    self.assertEqual(default.step, 2)
    w1, w2 = weights(default), weights(one)
    for name in w1:
      self.assertAllClose(w1[name], w2[name], rtol=1e-5, atol=1e-6, msg=name)

  def test_batch_must_divide_by_replicas(self):
    with self.assertRaisesRegex(ValueError, r"--global_batch_size=9 does not divide by the 2 "
                                "replicas"):
      trainer.run(tiny_config("sngan", self.create_tempdir().full_path, global_batch_size=9,
                              cpu_replicas=2))

  def test_vector_data_needs_mlp(self):
    with self.assertRaisesRegex(ValueError, "cannot model"):
      trainer.run(tiny_config("sngan", self.create_tempdir().full_path,
                              data=small_data("ring2d"), arch="dcgan"))

  def test_conditional_needs_labels(self):
    tmp = self.create_tempdir().full_path
    np.savez(os.path.join(tmp, "x.npz"), x=np.zeros((16, 16, 16, 3), np.uint8))
    out = os.path.join(tmp, "nolabels")
    convert.run(convert.ConvertConfig(source=f"npz:{os.path.join(tmp, 'x.npz')}", output=out,
                                      num_workers=1))
    with self.assertRaisesRegex(ValueError, "no labels but the model is conditional"):
      trainer.run(tiny_config("cdcgan", os.path.join(tmp, "run"), data=out))


if __name__ == "__main__":
  tf.test.main()
