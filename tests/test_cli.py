"""The binaries end to end in subprocesses: train, sample, and multi_worker
from a TF_CONFIG with two worker processes on loopback."""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from tests import helpers
from tests import test_train

TINY = ["--global_batch_size=8", "--base_channels=4", "--z_dim=8", "--log_every=1",
        "--num_samples=8", "--shuffle_buffer=64", "--mlp_hidden=16,16"]


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _train(args, env=None):
  return subprocess.Popen([sys.executable, "-m", "pipeline.train", *args],
                          env=env or helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class TrainAndSampleTest(tf.test.TestCase):

  def test_train_then_sample_every_output_kind(self):
    tmp = self.create_tempdir().full_path
    run_dir = os.path.join(tmp, "run")
    proc = _train(["--algo=cdcgan", f"--data={test_train.small_data('shapes')}",
                   f"--model_dir={run_dir}", "--train_steps=3", *TINY])
    out, _ = proc.communicate(timeout=600)
    self.assertEqual(proc.returncode, 0, out[-3000:])
    self.assertIn("global batch 8, per-replica batch 8", out)
    self.assertRegex(out, r"step 3/3 \| d_loss .* img/s \| ETA")

    def sample(*args):
      return subprocess.run([sys.executable, "-m", "pipeline.sample", f"--model_dir={run_dir}",
                             *args], env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
                            capture_output=True, text=True, check=False, timeout=300)

    npz = os.path.join(tmp, "s.npz")
    proc = sample("--num=7", "--labels=2,0", f"--output={npz}")
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with np.load(npz) as data:
      self.assertEqual(data["x"].shape, (7, 16, 16, 3))
      self.assertAllInRange(data["x"], -1.0, 1.0)
      self.assertAllEqual(data["y"], [2, 0, 2, 0, 2, 0, 2])
    grid = os.path.join(tmp, "grid.png")
    self.assertEqual(sample("--num=4", f"--output={grid}").returncode, 0)
    self.assertEqual(Image.open(grid).size, (2 + 2 * 18, 2 + 2 * 18))
    folder = os.path.join(tmp, "pngs")
    self.assertEqual(sample("--num=3", f"--output={folder}").returncode, 0)
    self.assertEqual(sorted(os.listdir(folder)), ["00000.png", "00001.png", "00002.png"])
    bad = sample("--labels=5", f"--output={npz}")
    self.assertEqual(bad.returncode, 2)
    self.assertIn("outside 0..2", bad.stderr)
    bad = sample("--checkpoint=best", f"--output={npz}")
    self.assertEqual(bad.returncode, 2)
    self.assertIn("no best checkpoint", bad.stderr)

  @pytest.mark.slow
  def test_train_with_eval_then_sample_the_best(self):
    tmp = self.create_tempdir().full_path
    run_dir = os.path.join(tmp, "run")
    proc = _train(["--algo=gan", f"--data={test_train.small_data('ring2d')}",
                   f"--model_dir={run_dir}", "--train_steps=4", "--eval_every=2",
                   "--keep_best=high_quality", "--eval_num_samples=100", *TINY])
    out, _ = proc.communicate(timeout=600)
    self.assertEqual(proc.returncode, 0, out[-3000:])
    self.assertRegex(out, r"eval step 4 \| fid [0-9.e+-]+ kid .* modes \d+ .*high_quality")
    self.assertRegex(out, r"Best high_quality so far \([0-9.e+-]+ at step 2\)")
    npz = os.path.join(tmp, "best.npz")
    proc = subprocess.run([sys.executable, "-m", "pipeline.sample", f"--model_dir={run_dir}",
                           "--checkpoint=best", "--num=5", f"--output={npz}"],
                          env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT,
                          capture_output=True, text=True, check=False, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    with np.load(npz) as data:
      self.assertEqual(data["x"].shape, (5, 2))

  def test_bad_flags_and_data_exit_2_with_one_line(self):
    tmp = self.create_tempdir().full_path
    empty = os.path.join(tmp, "empty")
    os.makedirs(empty)
    cases = [
        (["--algo=nope"], "unknown --algo 'nope'; valid:"),
        (["--algo=pix2pix", "--gp_weight=10"],
         "--gp_weight=10.0 is not read by --algo=pix2pix; it is used by cdcgan, cgan, dcgan, "),
        (["--data=folder:/nonexistent"], "folder source '/nonexistent' does not exist"),
        ([f"--data=folder:{empty}"], f"source folder '{empty}' holds no images"),
        (["--mlp_hidden=8,x"], "--mlp_hidden must be a comma list of integers, got '8,x'"),
    ]
    env = helpers.subprocess_env()
    del env["TF_CPP_MIN_LOG_LEVEL"]  # What a user's shell has.
    for args, message in cases:
      proc = _train([*args, f"--model_dir={os.path.join(tmp, 'run')}",
                     f"--data_cache={os.path.join(tmp, 'cache')}"], env=env)
      out, _ = proc.communicate(timeout=300)
      self.assertEqual(proc.returncode, 2, out[-3000:])
      errors = [line for line in out.splitlines() if "error" in line.lower()]
      self.assertLen(errors, 1, out[-3000:])
      self.assertStartsWith(errors[0], f"train: error: {message}")
      self.assertNotIn("Traceback", out)


  def test_medical_sources_are_refused_with_the_conversion_command(self):
    # multi_worker with a peer that never comes: the refusal must come before
    # the strategy, which would wait --cluster_timeout for the cluster.
    tmp = self.create_tempdir().full_path
    scans, run_dir = os.path.join(tmp, "ct"), os.path.join(tmp, "run")
    os.makedirs(scans)
    cluster = [f"--cluster_workers=127.0.0.1:{_free_port()},127.0.0.1:{_free_port()}",
               "--task_index=0", "--cluster_timeout=120"]
    cases = [
        (f"dicom:{scans}", "a DICOM source", f"--source=dicom:{scans} --output={scans}-tfr",
         f"{scans}-tfr"),
        (f"paired:nifti:{tmp}/t1,{tmp}/t2", "a NIfTI source",
         f"--source=paired:nifti:{tmp}/t1,{tmp}/t2 --output={tmp}/t1-t2-tfr", f"{tmp}/t1-t2-tfr"),
    ]
    for data, what, command, converted in cases:
      proc = _train([f"--data={data}", f"--model_dir={run_dir}", "--strategy=multi_worker",
                     *cluster, f"--data_cache={os.path.join(tmp, 'cache')}"])
      out, _ = proc.communicate(timeout=100)
      self.assertEqual(proc.returncode, 2, out[-3000:])
      self.assertEqual(out.strip().splitlines()[-1],
                       f"train: error: --data {data!r} is {what}, which must be converted first "
                       "(its window and held-out patients are conversion settings): python -m "
                       f"pipeline.convert {command} --window=auto --holdout=0.1 (choose "
                       "--window: CENTER,WIDTH, a preset such as ct_brain, or "
                       f"percentile:LOW,HIGH), then --data={converted}")
      self.assertFalse(os.path.exists(run_dir))
      self.assertFalse(os.path.exists(os.path.join(tmp, "cache")))


class ConsoleTest(tf.test.TestCase):

  def test_the_console_shows_what_a_user_needs(self):
    env = helpers.subprocess_env()
    del env["TF_CPP_MIN_LOG_LEVEL"]  # What a user's shell has.
    run_dir = os.path.join(self.create_tempdir().full_path, "run")
    args = ["--algo=dcgan", f"--data={test_train.small_data('shapes')}",
            f"--model_dir={run_dir}", "--train_steps=2", *TINY]
    proc = _train(args, env=env)
    out, _ = proc.communicate(timeout=600)
    self.assertEqual(proc.returncode, 0, out[-3000:])
    # No C++ start-up or Grappler lines, no TensorFlow INFO lines.
    self.assertNotRegex(out, r"(?m)^[IWE]0000 ")
    for noise in ("absl::InitializeLog", "remapper", "cuInit", "Sharding callback",
                  "INFO:tensorflow"):
      self.assertNotIn(noise, out)
    self.assertRegex(out, r"(?m)XLA (on|off) \(--xla=auto\), precision \w+ "
                          r"\(--precision=auto\)$")
    self.assertNotIn("Why: XLA", out)
    # The reasons are in train.log, and on the console at -v 1.
    with open(os.path.join(run_dir, "train.log"), encoding="utf-8") as f:
      self.assertIn("Why: XLA: auto on CPU", f.read())
    proc = _train([*args, "-v", "1"], env=env)
    out, _ = proc.communicate(timeout=600)
    self.assertEqual(proc.returncode, 0, out[-3000:])
    self.assertIn("Why: XLA: auto on CPU", out)


class MultiWorkerTest(tf.test.TestCase):

  @pytest.mark.slow  # 30 s; the flags' path below stays in the main stage.
  def test_two_workers_from_tf_config(self):
    self._two_workers(from_flags=False)

  def test_two_workers_from_flags(self):
    self._two_workers(from_flags=True)

  def _two_workers(self, from_flags):
    tmp = self.create_tempdir().full_path
    run_dir = os.path.join(tmp, "run")
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    eval_flags = []
    if from_flags:  # Also: evaluation on the chief, the best checkpoint saved by all.
      features = os.path.join(tmp, "features.keras")
      keras.utils.set_random_seed(0)
      keras.Sequential([keras.layers.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
                        keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]
                       ).save(features)
      eval_flags = ["--eval_every=1", "--keep_best=fid", f"--eval_features={features}",
                    "--eval_num_samples=16"]
    procs = []
    for index in range(2):
      env = helpers.subprocess_env()
      env.pop("TF_CONFIG", None)
      cluster_flags = []
      if from_flags:
        cluster_flags = [f"--cluster_workers={','.join(cluster['worker'])}",
                         f"--task_index={index}"]
      else:
        env["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                       "task": {"type": "worker", "index": index}})
      procs.append(_train(["--algo=wgan_gp", "--strategy=multi_worker",
                           f"--data={test_train.small_data('shapes')}",
                           f"--model_dir={run_dir}", "--train_steps=2",
                           "--checkpoint_every=2", *cluster_flags, *eval_flags, *TINY],
                          env=env))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
      self.assertEqual(p.returncode, 0, out[-3000:])
    self.assertIn("2 replica(s) on 2 worker(s), global batch 8, per-replica batch 4, "
                  "per-worker batch 4", outs[0])
    # One clean run directory: only the chief's checkpoints, samples and config.
    evaluated = ["eval.jsonl", "eval_protocol.json"] if from_flags else []
    self.assertEqual(sorted(os.listdir(run_dir)),
                     ["checkpoints", "config.json", "data_info.json", *evaluated, "samples",
                      "tensorboard", "train.log"])
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    self.assertEqual(os.path.basename(state.model_checkpoint_path), "ckpt-2")
    if from_flags:
      with open(os.path.join(run_dir, "eval.jsonl"), encoding="utf-8") as f:
        self.assertEqual([json.loads(line)["step"] for line in f], [1, 2])
      self.assertRegex(outs[0], r"eval step 2 \| fid ")
      self.assertNotIn("eval step", outs[1])
      best = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints", "best"))
      self.assertRegex(os.path.basename(best.model_checkpoint_path), r"ckpt-[12]$")


if __name__ == "__main__":
  tf.test.main()
