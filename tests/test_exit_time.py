"""`python -m pipeline.train` exits at once after "Done", having written everything.

The process used to wait 1-10 s after "Done" (up to a minute in long runs)
while the interpreter's teardown destroyed the input iterator and waited for
its tf.data autotune thread (pipeline/train.py `_exit`; docs/tf-facts.md,
"Input pipelines"). The run here is pinned to one core, where that was seen
every time.
"""

import os
import shutil
import subprocess
import sys
import time

import tensorflow as tf

from tests import helpers
from tests import test_train
from training import run_dir as run_dir_lib

STEPS = 200

# Measured on one core (taskset -c 0) with this run, Done to exit: 1.3-2.1 s
# before the fix (2.0-3.7 s with another process busy on that core), of which
# 0.8-1.0 s is the interpreter's teardown of TensorFlow alone; 0.03-0.08 s
# after, with or without the busy process.
MAX_DONE_TO_EXIT_S = 0.5


def _one_core():
  """`taskset -c <one allowed core>` where taskset exists, else nothing."""
  if not shutil.which("taskset") or not hasattr(os, "sched_getaffinity"):
    return []
  return ["taskset", "-c", str(min(os.sched_getaffinity(0)))]


class ExitTimeTest(tf.test.TestCase):

  def test_exits_at_once_after_done_with_everything_written(self):
    model_dir = os.path.join(self.create_tempdir().full_path, "run")
    args = [*_one_core(), sys.executable, "-m", "pipeline.train", "--algo=sngan",
            f"--data={test_train.small_data('shapes')}", f"--model_dir={model_dir}",
            f"--train_steps={STEPS}", "--global_batch_size=8", "--base_channels=4",
            "--z_dim=8", "--num_samples=8", "--shuffle_buffer=64", f"--log_every={STEPS // 2}"]
    proc = subprocess.Popen(args, env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, done_at = [], None
    for line in proc.stdout:  # Until the process closes its output: its exit.
      lines.append(line)
      if done_at is None and "Done: step" in line:
        done_at = time.monotonic()
    proc.wait(timeout=60)
    exited_at = time.monotonic()
    out = "".join(lines)
    self.assertEqual(proc.returncode, 0, out[-3000:])
    self.assertIsNotNone(done_at, out[-3000:])
    self.assertLess(exited_at - done_at, MAX_DONE_TO_EXIT_S, out[-3000:])

    # Nothing lost: the last checkpoint, train.log, the summaries of the last
    # step and its samples.
    checkpoints = os.path.join(model_dir, run_dir_lib.CHECKPOINT_SUBDIR)
    self.assertEndsWith(tf.train.latest_checkpoint(checkpoints), f"ckpt-{STEPS}")
    with open(os.path.join(model_dir, run_dir_lib.LOG_NAME), encoding="utf-8") as f:
      self.assertIn(f"Saved checkpoint {checkpoints}/ckpt-{STEPS}", f.read())
    events = tf.io.gfile.glob(
        os.path.join(model_dir, run_dir_lib.TENSORBOARD_SUBDIR, "events.out.tfevents.*"))
    self.assertLen(events, 1)
    written = {(value.tag, event.step)
               for event in tf.compat.v1.train.summary_iterator(events[0])
               for value in event.summary.value}
    self.assertContainsSubset({("d_loss", STEPS), ("g_loss", STEPS), ("samples", STEPS)},
                              written)
    self.assertTrue(os.path.isfile(os.path.join(
        model_dir, run_dir_lib.SAMPLES_SUBDIR, f"step_{STEPS:07d}.png")))


if __name__ == "__main__":
  tf.test.main()
