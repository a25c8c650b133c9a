"""Multi-worker training and its failures, with real worker processes on loopback.

- the data: every worker reads its own shard files, every example once per
  epoch across the cluster;
- start-up: a peer that never comes is named within --cluster_timeout;
- preemption: SIGTERM saves a checkpoint at a step boundary, the process
  exits 75, and the same command resumes to the weights of an uninterrupted
  run (one process, and two workers through TF's PreemptionCheckpointHandler);
- a worker killed (SIGKILL): the survivor exits non-zero within 60 s naming the
  lost peer, and the same command resumes from the last checkpoint;
- 2 workers with per-worker batch B equal 1 process with batch 2B, and they
  leave one clean run directory.

Runs that are compared start from one checkpoint, not from scratch. That was
needed while the conv nets' initializers were module-level objects seeded at
import (other weights in every process); since `models.blocks.init()` they
are seeded by --seed (tests/test_models.py), and starting from one checkpoint
stays as the stricter setup.
"""

import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from absl.testing import parameterized
import numpy as np
import pytest
import tensorflow as tf

from distribute import cluster as cluster_lib
from input import reader
from launch import common
from launch import local
from tests import helpers
from tests import test_cli
from tests import test_train
from tests import test_translation
from training import checkpointing
from training import config as config_lib
from training import trainer

TINY = test_cli.TINY + ["--deterministic"]


class _Process:
  """A subprocess whose merged output is read line by line in a thread."""

  def __init__(self, args, env=None):
    self.proc = subprocess.Popen(args, env=env or helpers.subprocess_env(),
                                 cwd=helpers.REPO_ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    self.lines = []
    self._queue = queue.Queue()
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self):
    for line in self.proc.stdout:
      self._queue.put(line.rstrip("\n"))
    self._queue.put(None)

  def wait_for(self, pattern, timeout=300):
    """Reads lines until one matches `pattern`; returns the match."""
    deadline = time.monotonic() + timeout
    for line in self.lines:
      if (match := re.search(pattern, line)):
        return match
    while True:
      line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
      if line is None:
        raise AssertionError(f"ended before a line matched {pattern!r}:\n" + self.text[-5000:])
      self.lines.append(line)
      if (match := re.search(pattern, line)):
        return match

  def finish(self, timeout=600):
    """The exit code, after reading every line."""
    code = self.proc.wait(timeout=timeout)
    while (line := self._queue.get(timeout=60)) is not None:
      self.lines.append(line)
    return code

  @property
  def text(self):
    return "\n".join(self.lines)


def _train(args, env=None):
  return _Process([sys.executable, "-m", "pipeline.train", *args], env)


def _launch(args, grace_seconds=10):
  return _Process([sys.executable, "-m", "launch.local", "--workers=2",
                   f"--grace_seconds={grace_seconds}", "--", *args])


def _worker_pids(launcher_pid):
  """{worker index: pid} of launch.local's children, from their TF_CONFIG."""
  children = []
  for tid in os.listdir(f"/proc/{launcher_pid}/task"):
    with open(f"/proc/{launcher_pid}/task/{tid}/children", encoding="ascii") as f:
      children += [int(pid) for pid in f.read().split()]
  out = {}
  for pid in children:
    with open(f"/proc/{pid}/environ", "rb") as f:
      env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
    out[json.loads(env[b"TF_CONFIG"])["task"]["index"]] = pid
  return out


def _pid_alive(pid):
  """True while `pid` runs (a zombie counts as gone)."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


def checkpoint_values(path):
  """{name: value} of every number in a checkpoint (not the input positions)."""
  ckpt = tf.train.load_checkpoint(path)
  return {name: ckpt.get_tensor(name)
          for name, dtype in ckpt.get_variable_to_dtype_map().items()
          if (dtype.is_floating or dtype.is_integer) and not name.startswith("save_counter")}


def _max_differences(a, b):
  """(max absolute, max relative) difference over the values of two checkpoints."""
  abs_diff = rel_diff = 0.0
  for name in a:
    d = np.abs(a[name].astype(np.float64) - b[name])
    abs_diff = max(abs_diff, float(d.max(initial=0.0)))
    rel_diff = max(rel_diff, float((d / (np.abs(b[name]) + 1e-12)).max(initial=0.0)))
  return abs_diff, rel_diff


def _mismatched_fraction(a, b):
  """The fraction of the values of two checkpoints that are not close."""
  bad = sum(int(np.sum(~np.isclose(a[n], b[n], rtol=1e-4, atol=1e-5))) for n in a)
  return bad / sum(a[n].size for n in a)


def _run_dir_files(run_dir):
  return sorted(os.path.relpath(os.path.join(root, name), run_dir)
                for root, dirs, files in os.walk(run_dir) for name in dirs + files)


class LostPeerNamesTest(tf.test.TestCase):

  def test_peers_named_in_the_errors_seen(self):
    # The messages TF 2.21 gave the survivor when worker 1, then worker 0 (the
    # chief, which hosts the coordination service), was killed.
    spec = {"worker": ["127.0.0.1:1111", "127.0.0.1:2222"]}
    heartbeat = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: Error reported from /job:worker/task:1: The following "
        "tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\n"
        "The tasks have crashed."))
    self.assertEqual(cluster_lib.lost_peers(heartbeat, spec, "worker", 0),
                     ["worker 1 at 127.0.0.1:2222"])
    reset = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error "
        "information from remote target /job:worker/replica:0/task:0 while calling "
        "/tensorflow.WorkerService/CompleteInstance"))
    self.assertEqual(cluster_lib.lost_peers(reset, spec, "worker", 1),
                     ["worker 0 at 127.0.0.1:1111"])
    self.assertEqual(cluster_lib.lost_peers(reset, spec, "worker", 0), [])  # Not oneself.


class DataShardingTest(tf.test.TestCase):

  def test_two_workers_read_disjoint_shards_and_every_example_once_an_epoch(self):
    # The pipelines the trainer builds (reader.make_dataset_fn with the
    # InputContext of worker i of 2; the runs below log "input pipeline i of 2"),
    # with keys: the first epoch of each worker's training stream.
    data = test_train.small_data("shapes")  # 4 shards of 64.
    config = reader.ReaderConfig(data, shuffle_buffer=64, seed=0, deterministic=True,
                                 with_keys=True)
    dataset_fn = reader.make_dataset_fn(config, global_batch_size=8)
    keys = []
    for index in range(2):
      ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=index,
                                       num_replicas_in_sync=2)
      batches = list(dataset_fn(ctx).take(128 // 4))  # 128 examples, batches of 4.
      self.assertEqual(batches[0]["image"].shape[0], 4)
      keys.append([k.decode() for b in batches for k in b["key"].numpy()])
    everything = [k.decode() for b in reader.make_dataset(
        reader.ReaderConfig(data, repeat=False, drop_remainder=False, with_keys=True), 64)
                  for k in b["key"].numpy()]
    self.assertLen(everything, 256)
    for worker_keys in keys:
      self.assertLen(set(worker_keys), 128)  # No example twice in an epoch.
    self.assertEmpty(set(keys[0]) & set(keys[1]))  # Disjoint...
    self.assertCountEqual(keys[0] + keys[1], everything)  # ...and all of them.


class ClusterStartupTest(tf.test.TestCase):

  def test_a_missing_peer_is_named_within_the_timeout(self):
    # Two clusters of 2 in which only one task starts: the chief (it hosts the
    # coordination service) and a worker (it waits for the chief).
    ports = local.free_ports(4)
    tmp = self.create_tempdir().full_path
    procs = {}
    start = time.monotonic()
    for index, hosts in ((0, ports[:2]), (1, ports[2:])):
      env = helpers.subprocess_env()
      env["TF_CONFIG"] = json.dumps(
          common.build_tf_config([f"127.0.0.1:{p}" for p in hosts], index))
      procs[index] = _train(["--algo=gan", f"--data={test_train.small_data('ring2d')}",
                             f"--model_dir={os.path.join(tmp, str(index))}",
                             "--strategy=multi_worker", "--cluster_timeout=5", *TINY], env)
    for index, proc in procs.items():
      code = proc.finish(timeout=120)
      self.assertLess(time.monotonic() - start, 60)
      self.assertEqual(code, 1, proc.text[-3000:])
      missing = 1 - index
      self.assertIn(
          "train: error: the cluster of 2 tasks (TF_CONFIG) did not form within "
          f"--cluster_timeout=5s; no answer from worker {missing} at "
          f"127.0.0.1:{ports[2 * index + missing]} (Connection refused)", proc.text)


class PreemptionTest(tf.test.TestCase):

  # Slow stage (40 s), with the two-worker and the real-Slurm preemptions.
  @pytest.mark.slow
  def test_sigterm_saves_at_a_boundary_and_resuming_equals_an_uninterrupted_run(self):
    # One process (mirrored, 1 replica), 4 steps per tf.function call. Both
    # runs continue one checkpoint (see the module docstring); the
    # uninterrupted one runs in this process.
    tmp = self.create_tempdir().full_path
    args = ["--algo=wgan_gp", f"--data={test_train.small_data('shapes')}", *TINY,
            "--steps_per_loop=4", "--log_every=4"]  # After TINY, which logs every step.
    base = os.path.join(tmp, "base")
    trainer.run(test_train.tiny_config("wgan_gp", base, train_steps=4, steps_per_loop=4,
                                       log_every=4))  # The flags above, in this process.
    interrupted, uninterrupted = os.path.join(tmp, "interrupted"), os.path.join(tmp, "whole")
    shutil.copytree(base, interrupted)
    shutil.copytree(base, uninterrupted)
    steps = 200
    command = [*args, f"--model_dir={interrupted}", f"--train_steps={steps}"]
    proc = _train(command)
    at = random.Random().randrange(8, 44, 4)  # A random step, reported on failure.
    proc.wait_for(rf"step {at}/{steps} ")
    proc.proc.send_signal(signal.SIGTERM)
    self.assertEqual(proc.finish(), 75, f"SIGTERM after step {at}:\n{proc.text[-3000:]}")
    saved = int(proc.wait_for(r"train: preempted \(SIGTERM\): saved checkpoint "
                              r"\S+ckpt-(\d+) at step \d+; re-run the same command").group(1))
    self.assertTrue(at <= saved < steps and saved % 4 == 0,
                    f"{saved} after {at}:\n{proc.text[-3000:]}")
    self.assertEqual(tf.train.latest_checkpoint(os.path.join(interrupted, "checkpoints")),
                     os.path.join(interrupted, "checkpoints", f"ckpt-{saved}"))
    resumed = _train(command)  # The same command.
    trainer.run(test_train.tiny_config("wgan_gp", uninterrupted, train_steps=steps,
                                       steps_per_loop=4, log_every=4))
    self.assertEqual(resumed.finish(), 0, resumed.text[-3000:])
    self.assertIn(f"Resumed from {interrupted}/checkpoints/ckpt-{saved} at step {saved}",
                  resumed.text)
    a = checkpoint_values(os.path.join(interrupted, "checkpoints", f"ckpt-{steps}"))
    b = checkpoint_values(os.path.join(uninterrupted, "checkpoints", f"ckpt-{steps}"))
    self.assertCountEqual(a, b)
    self.assertEqual(_max_differences(a, b), (0.0, 0.0), f"SIGTERM after step {at}")


class WorkerCountChangeTest(tf.test.TestCase):

  @pytest.mark.slow
  def test_two_workers_then_one_process_resumes(self):
    # Issue 27: a job requeued with fewer workers. The one process restores
    # the weights, optimizers and step; no position was saved for its shape
    # (worker 0 of 1, 8 a replica), so its input starts afresh with a warning.
    run = os.path.join(self.create_tempdir().full_path, "run")
    args = ["--algo=wgan_gp", f"--data={test_train.small_data('shapes')}", "--steps_per_loop=2",
            "--checkpoint_every=2", *TINY, f"--model_dir={run}"]
    launcher = _launch([*args, "--train_steps=4"])
    self.assertEqual(launcher.finish(), 0, launcher.text[-3000:])
    one = _train([*args, "--train_steps=8"])
    self.assertEqual(one.finish(), 0, one.text[-3000:])
    self.assertIn(f"Resumed from {run}/checkpoints/ckpt-4 at step 4", one.text)
    self.assertIn("holds no input position for worker 0 of 1 at 8 examples per replica",
                  one.text)
    files = _run_dir_files(run)
    self.assertIn(f"checkpoints/{checkpointing.input_key(0, 2, 4, 1)}/ckpt-4.index", files)
    self.assertIn(f"checkpoints/{checkpointing.input_key(0, 1, 8, 1)}/ckpt-8.index", files)
    self.assertIn("checkpoints/ckpt-8.index", files)


class MultiWorkerPreemptionTest(tf.test.TestCase):
  """Four two-worker runs (about 2.5 minutes on 2 cores): the slow stage."""

  @pytest.mark.slow
  def test_sigterm_to_one_worker_saves_everywhere_and_resuming_equals_uninterrupted(self):
    tmp = self.create_tempdir().full_path
    args = ["--algo=wgan_gp", f"--data={test_train.small_data('shapes')}", "--steps_per_loop=1",
            *TINY]
    base = os.path.join(tmp, "base")
    launcher = _launch([*args, f"--model_dir={base}", "--train_steps=2"])
    self.assertEqual(launcher.finish(), 0, launcher.text[-3000:])
    interrupted, uninterrupted = os.path.join(tmp, "interrupted"), os.path.join(tmp, "whole")
    shutil.copytree(base, interrupted)
    shutil.copytree(base, uninterrupted)
    steps = 24
    command = [*args, f"--model_dir={interrupted}", f"--train_steps={steps}"]
    launcher = _launch(command)
    at = random.Random().randrange(4, 12)
    launcher.wait_for(rf"^\[worker 1\] .*step {at}/{steps} ")
    os.kill(_worker_pids(launcher.proc.pid)[1], signal.SIGTERM)
    self.assertEqual(launcher.finish(), 75, f"SIGTERM after step {at}:\n{launcher.text[-5000:]}")
    saved = set()
    for index in range(2):  # Both saved at the step they agreed on, and exited 75.
      match = launcher.wait_for(rf"^\[worker {index}\] train: preempted \(SIGTERM\): saved "
                                r"checkpoint \S+ckpt-(\d+) at step")
      saved.add(int(match.group(1)))
    self.assertLen(saved, 1)
    saved = saved.pop()
    self.assertTrue(at <= saved < steps, f"{saved} after {at}")
    for index in range(2):  # TINY's global batch 8 over 2 workers of one replica each.
      self.assertIn(f"checkpoints/{checkpointing.input_key(index, 2, 4, 1)}/ckpt-{saved}.index",
                    _run_dir_files(interrupted))
    self.assertFalse([f for f in os.listdir(interrupted) if f.startswith(".")])

    resumed = _launch(command)  # The same command, while the reference runs.
    whole = _launch([*args, f"--model_dir={uninterrupted}", f"--train_steps={steps}"])
    self.assertEqual(resumed.finish(), 0, resumed.text[-3000:])
    self.assertEqual(whole.finish(), 0, whole.text[-3000:])
    for index in range(2):
      resumed.wait_for(rf"^\[worker {index}\] .*Resumed from \S+ckpt-{saved} at step {saved}")
    a = checkpoint_values(os.path.join(interrupted, "checkpoints", f"ckpt-{steps}"))
    b = checkpoint_values(os.path.join(uninterrupted, "checkpoints", f"ckpt-{steps}"))
    self.assertCountEqual(a, b)
    self.assertEqual(_max_differences(a, b), (0.0, 0.0), f"SIGTERM after step {at}")


class PeerLossTest(tf.test.TestCase):

  # Slow stage (45 s): tests/test_slurm.py loses a task on a real Slurm there too.
  @pytest.mark.slow
  def test_a_killed_worker_stops_the_survivor_and_the_same_command_resumes(self):
    tmp = self.create_tempdir().full_path
    run_dir = os.path.join(tmp, "run")
    every = 5
    command = ["--algo=gan", f"--data={test_train.small_data('ring2d')}",
               f"--model_dir={run_dir}", "--train_steps=500", "--steps_per_loop=1",
               f"--checkpoint_every={every}", *TINY]
    # A long grace: the survivor must stop by itself, not by the launcher's SIGKILL.
    launcher = _launch(command, grace_seconds=120)
    at = random.Random().randrange(2 * every, 3 * every)
    launcher.wait_for(rf"^\[worker 1\] .*step {at}/500 ")
    pids = _worker_pids(launcher.proc.pid)
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    while _pid_alive(pids[0]) and time.monotonic() - killed < 120:
      time.sleep(0.05)
    survivor_s = time.monotonic() - killed
    self.assertEqual(launcher.finish(), 128 + signal.SIGKILL, launcher.text[-5000:])
    print(f"survivor exited {survivor_s:.1f} s after SIGKILL at step {at}")
    self.assertLess(survivor_s, 60)
    message = launcher.wait_for(
        r"^\[worker 0\] train: error: lost a peer worker \(worker 1 at 127\.0\.0\.1:\d+\) "
        r"near step (\d+): UnavailableError: .* re-run the same command on all of them to "
        rf"resume from the last checkpoint \(\S+ckpt-(\d+)\), losing at most "
        rf"--checkpoint_every={every} steps")
    last = int(message.group(2))
    last_logged = max(int(m) for m in re.findall(r"\[worker 1\] .*step (\d+)/500",
                                                 launcher.text))
    # A worker logs step k before the checkpoint of step k is saved (a save
    # all workers take part in), and the kill can land between the two
    # (measured: killed on its "step 10" line, ckpt-5 was the last). So the
    # last checkpoint is k's or the one before, and the message names the
    # newest one on disk, which the same command resumes from below.
    logged_boundary = last_logged // every * every
    self.assertIn(last, (logged_boundary, logged_boundary - every))
    self.assertEqual(os.path.basename(tf.train.latest_checkpoint(
        os.path.join(run_dir, "checkpoints"))), f"ckpt-{last}")
    self.assertLessEqual(last_logged - last, every)

    again = _launch(command)  # The same command.
    for index in range(2):
      again.wait_for(rf"^\[worker {index}\] .*Resumed from \S+ckpt-{last} at step {last}")
      again.wait_for(rf"^\[worker {index}\] .*step {last + 1}/500 ")
    again.proc.send_signal(signal.SIGINT)  # Enough: stop the workers.
    self.assertEqual(again.finish(), 130, again.text[-3000:])
    self.assertFalse([f for f in os.listdir(run_dir) if f.startswith(".")])


class TwoWorkersEqualOneProcessTest(tf.test.TestCase, parameterized.TestCase):
  """2 workers (1 replica each, per-worker batch B) == 1 process (batch 2B).

  The data: the reader shards *files*, so worker w reads shards w and w+2 of
  4, shuffled by its own seed; one process reading all 4 shards would see
  other examples in every step. A one-process run naturally fed the same
  examples does not exist, so the one-process run here is fed exactly the
  union of the two workers' batches: the trainer's own `dataset_fn` with the
  InputContext of worker 0 and of worker 1 of 2 (as the workers build it),
  concatenated batch by batch, worker 0's rows first. That is the order the
  per-example randomness assumes: replica r of the cluster (worker r here)
  draws rows [r * B, (r + 1) * B) of the global batch. Equal weights then show
  that the workers read those pipelines, that gradients summed across workers
  equal the gradient of the global batch, and that the noise does not depend
  on the number of workers. DataShardingTest shows that the two pipelines are
  disjoint and cover each example once an epoch.

  Both runs start from one checkpoint at step 0 (see the module docstring),
  written by the one-process trainer and copied into the cluster's run
  directory; restoring it there also exercises the start of fresh input
  pipelines under a layout change (one pipeline then, two now).
  """

  def test_two_workers_equal_one_process_wgan_gp(self):
    self._check("wgan_gp", test_train.tiny_config, test_cli.TINY, guard=True)

  @pytest.mark.slow
  def test_two_workers_equal_one_process_sngan(self):
    self._check("sngan", test_train.tiny_config, test_cli.TINY)

  @pytest.mark.slow
  def test_two_workers_equal_one_process_cyclegan(self):
    args = ["--global_batch_size=2", "--base_channels=4", "--res_blocks=1", "--log_every=1",
            "--shuffle_buffer=16"]
    self._check("cyclegan", test_translation.tiny_config, args, guard=True, flips=True)

  def _check(self, algo, tiny_config, tiny_args, guard=False, flips=False):
    """Compares the two runs' checkpoints (weights, optimizer slots, state).

    Args:
      guard: also feed the one process worker 1's rows first, which must
        differ, so that the test sees the order of the examples.
      flips: allow 1% of the weights and optimizer values not to be close,
        and compare the per-example state (CycleGAN's pools of generated
        images in [-1, 1]) to 0.05. Adam moves a weight by about lr whatever
        the size of its gradient, so where instance norm makes a gradient
        nearly zero, rounding (a sum over 2 workers, or over 1 batch) can flip
        that element's update: seen in 3 of 8 runs here, in a few values of
        a kernel or its Adam moments (3 of 588 at most); the next fakes then
        differ slightly in every pixel (0.02 at most). Rows in the wrong order
        move whole images in the pools (1.5 measured).
    """
    tmp = self.create_tempdir().full_path
    config = tiny_config(algo, os.path.join(tmp, "one"), cpu_replicas=1)
    one = trainer._Trainer(config)  # pylint: disable=protected-access
    one.checkpointer.save()
    for name in ("two", "swapped") if guard else ("two",):
      shutil.copytree(os.path.join(tmp, "one", "checkpoints"),
                      os.path.join(tmp, name, "checkpoints"))
    cluster_dir = os.path.join(tmp, "two")
    launcher = _launch([f"--algo={algo}", f"--data={config.data}", f"--model_dir={cluster_dir}",
                        f"--train_steps={config.train_steps}", "--deterministic", *tiny_args])

    def feed_union(run, order):
      parts = [run.dataset_fn(tf.distribute.InputContext(num_input_pipelines=2,
                                                         input_pipeline_id=index,
                                                         num_replicas_in_sync=2))
               for index in order]
      union = tf.data.Dataset.zip(tuple(parts)).map(
          lambda a, b: tf.nest.map_structure(lambda x, y: tf.concat([x, y], 0), a, b))
      run.dataset, run.iterator = union, iter(union)

    feed_union(one, (0, 1))
    one.train()
    if guard:
      swapped = trainer._Trainer(  # pylint: disable=protected-access
          tiny_config(algo, os.path.join(tmp, "swapped"), cpu_replicas=1))
      feed_union(swapped, (1, 0))
      swapped.train()
    self.assertEqual(launcher.finish(), 0, launcher.text[-5000:])
    for index in range(2):
      launcher.wait_for(rf"^\[worker {index}\] .*Worker {index} of 2: input pipeline "
                        rf"{index} of 2, 1 local replica")
      launcher.wait_for(rf"^\[worker {index}\] .*2 replica\(s\) on 2 worker\(s\)")
    stored = [config_lib.load(os.path.join(tmp, name)) for name in ("one", "two")]
    self.assertEqual(config_lib.conflicts(*stored), [])  # The same run but for the cluster.

    steps = config.train_steps
    a = checkpoint_values(os.path.join(tmp, "one", "checkpoints", f"ckpt-{steps}"))
    b = checkpoint_values(os.path.join(cluster_dir, "checkpoints", f"ckpt-{steps}"))
    self.assertCountEqual(a, b)
    initial = checkpoint_values(os.path.join(tmp, "one", "checkpoints", "ckpt-0"))
    moved = [n for n in a if n in initial and not np.allclose(a[n], initial[n])]
    self.assertGreater(len(moved), len(a) // 3)  # Training did change the weights.
    if flips:
      state = [n for n in a if n.startswith("pools/")]
      learned = [n for n in a if n not in state]
    else:
      state, learned = [], list(a)
    mismatched = _mismatched_fraction({n: a[n] for n in learned}, {n: b[n] for n in learned})
    worst = sorted(((_mismatched_fraction({n: a[n]}, {n: b[n]}), n) for n in learned),
                   reverse=True)[:3]
    state_diff = max((float(np.abs(a[n] - b[n]).max()) for n in state), default=0.0)
    print(f"{algo}: 2 workers vs 1 process after {steps} steps: max |diff|, max relative "
          f"diff {_max_differences(b, a)}; weights and slots not close {mismatched:.2g} "
          f"(most in {worst}); per-example state max |diff| {state_diff:.2g}")
    if flips:
      self.assertLess(mismatched, 0.01, f"most mismatched: {worst}")
      self.assertLess(state_diff, 0.05)
    else:
      for name in a:
        self.assertAllClose(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    if guard:
      c = checkpoint_values(os.path.join(tmp, "swapped", "checkpoints", f"ckpt-{steps}"))
      swapped = _mismatched_fraction({n: c[n] for n in learned}, {n: b[n] for n in learned})
      swapped_state = max((float(np.abs(c[n] - b[n]).max()) for n in state), default=0.0)
      print(f"{algo}: worker 1's rows first: weights and slots not close {swapped:.2g}, "
            f"per-example state max |diff| {swapped_state:.2g}")
      if flips:  # CycleGAN's weights do not depend on the order; its pools do.
        self.assertGreater(swapped_state, 0.5)
      else:
        self.assertGreater(swapped, 0.1)

    # One clean run directory: the chief's files only, the workers' input
    # positions, no temporary directories; samples and summaries by the chief.
    files = _run_dir_files(cluster_dir)
    self.assertEqual([f for f in files if "/" not in f],
                     ["checkpoints", "config.json", "data_info.json", "samples", "tensorboard",
                      "train.log"])
    self.assertLen([f for f in files if f.startswith("tensorboard/")], 1)
    self.assertEqual([f for f in files if f.startswith("samples/")],
                     [f"samples/step_{steps:07d}.png"])
    self.assertTrue(re.search(r"^\[worker 0\] .*Wrote samples", launcher.text, re.M))
    self.assertFalse(re.search(r"^\[worker 1\] .*Wrote samples", launcher.text, re.M))
    for index in range(2):  # Each worker's position, keyed by its shape.
      self.assertTrue(any(re.fullmatch(rf"checkpoints/input-worker{index}-of-2-batch\d+x1/"
                                       rf"ckpt-{steps}\.index", f) for f in files), files)


if __name__ == "__main__":
  tf.test.main()
