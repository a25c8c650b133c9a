"""A process killed (SIGKILL) in the middle of writing a checkpoint.

The child trains with `pipeline.train`'s library entry point and SIGKILLs
itself inside `CheckpointManager.save` of step 4, at the two moments a real
`kill -9` can hit: with the new checkpoint's files half written (a torn data
file, no index), and with them complete but the `checkpoint` state file not
yet updated. Either way the previous checkpoint (step 2) must stay the latest
and loadable, and re-running the same command must resume from it and finish.
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers
from tests import test_train
from training import run_dir as run_dir_lib

_CHILD = r'''
import glob, os, signal, sys
import tensorflow as tf
from training import config as config_lib, trainer

mode, model_dir, data = sys.argv[1:4]
real_save = tf.train.CheckpointManager.save


def save(self, checkpoint_number=None, **kwargs):
  if checkpoint_number == 4 and mode != "none":
    prefix = os.path.join(self.directory, "ckpt-4")
    self._checkpoint.write(prefix)  # The data and index files, not the state file.
    if mode == "torn":  # Killed while writing the data: half of it, no index.
      data_file = glob.glob(prefix + ".data-*")[0]
      with open(data_file, "r+b") as f:
        f.truncate(os.path.getsize(data_file) // 2)
      os.remove(prefix + ".index")
    print("KILLING", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
  return real_save(self, checkpoint_number=checkpoint_number, **kwargs)


tf.train.CheckpointManager.save = save
config = config_lib.TrainConfig(
    algo="wgan_gp", data=data, model_dir=model_dir, global_batch_size=8, base_channels=4,
    z_dim=8, train_steps=6, steps_per_loop=2, log_every=2, sample_every=100,
    checkpoint_every=2, shuffle_buffer=64, num_samples=8, strategy="mirrored",
    deterministic=True)
run = trainer._Trainer(config)  # What trainer.run does, with the resumed step printed.
print("START", int(run.step.numpy()), flush=True)
print("DONE", run.train().step, flush=True)
'''


class CrashDuringSaveTest(tf.test.TestCase):

  def _child(self, mode, model_dir):
    return subprocess.run(
        [sys.executable, "-c", _CHILD, mode, model_dir, test_train.small_data("shapes")],
        env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT, capture_output=True, text=True,
        timeout=600)

  def test_torn_data_file(self):
    self._check("torn")

  @pytest.mark.slow
  def test_state_file_not_updated(self):
    self._check("unlisted")

  def _check(self, mode):
    model_dir = os.path.join(self.create_tempdir().full_path, "run")
    killed = self._child(mode, model_dir)
    self.assertEqual(killed.returncode, -signal.SIGKILL, killed.stdout + killed.stderr[-3000:])
    self.assertIn("KILLING", killed.stdout)
    ckpt_dir = os.path.join(model_dir, run_dir_lib.CHECKPOINT_SUBDIR)
    latest = tf.train.latest_checkpoint(ckpt_dir)
    self.assertEqual(os.path.basename(latest), "ckpt-2")
    names = dict(tf.train.list_variables(latest))  # Loadable: its index and data read.
    self.assertIn("step/.ATTRIBUTES/VARIABLE_VALUE", names)
    self.assertEqual(int(tf.train.load_variable(latest, "step/.ATTRIBUTES/VARIABLE_VALUE")),
                     2)

    rerun = self._child("none", model_dir)  # The same command, no crash this time.
    self.assertEqual(rerun.returncode, 0, rerun.stderr[-3000:])
    self.assertIn("START 2", rerun.stdout)  # Resumed from ckpt-2.
    self.assertIn("DONE 6", rerun.stdout)
    final = tf.train.latest_checkpoint(ckpt_dir)
    self.assertEqual(os.path.basename(final), "ckpt-6")
    for name, _ in tf.train.list_variables(final):
      if "generator" in name and name.endswith("VARIABLE_VALUE"):
        self.assertTrue(np.all(np.isfinite(tf.train.load_variable(final, name))), name)
    # ckpt-4 was written anew by the resumed run, over the broken one.
    self.assertEqual(int(tf.train.load_variable(
        os.path.join(ckpt_dir, "ckpt-4"), "step/.ATTRIBUTES/VARIABLE_VALUE")), 4)


if __name__ == "__main__":
  tf.test.main()
