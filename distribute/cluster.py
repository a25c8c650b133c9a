"""The multi-worker cluster: where it comes from, how long its start-up may
take, and what its failures say.

`multi_worker` finds its cluster in `--cluster_workers` and `--task_index`
when given, else in TF_CONFIG when that is set (launch.local,
Kubeflow's TFJob, launch.k8s_tf_config), else in the environment of a Slurm
step (`srun`, see launch/slurm/train.sbatch): `slurm_cluster_spec`.

Failures of the cluster (measured with TF 2.21 on CPU workers on loopback):
- At start-up every worker registers with the coordination service on the
  chief. With TensorFlow's defaults a task whose peer never comes waits an
  hour (the chief in a barrier; both were still waiting after 15 minutes
  here); here the wait is bounded by `cluster_timeout` and ends in a
  `ClusterError` that names the peers that did not answer.
- When a worker dies, the survivors' current or next step raises
  `tf.errors.UnavailableError`: at once when a collective was using the dead
  worker's connection ("connection reset by peer"), else once its heartbeats
  have stopped for HEARTBEAT_TIMEOUT_S ("tasks are unhealthy (stopped sending
  heartbeats)"); 1 to 10 s after a SIGKILL here. The trainer turns these
  (`PEER_LOST_ERRORS`) into an error that says how to resume.
- No timeout is set on the collectives themselves: a worker legitimately
  waits in a collective while the chief writes a checkpoint or samples.
"""

import dataclasses
import json
import re
import socket

from absl import logging
import tensorflow as tf
# The node-list expansion behind tf.distribute.cluster_resolver.SlurmClusterResolver.
from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as slurm_lib
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.eager import context

# The port of the first task on each node of a Slurm step, as in TensorFlow's
# SlurmClusterResolver; GAN_PIPELINE_TF_PORT overrides it (two jobs sharing a
# node need different ports).
SLURM_PORT_BASE = 8888
SLURM_PORT_ENV = "GAN_PIPELINE_TF_PORT"

# How long workers wait for each other at start-up, unless told otherwise
# (--cluster_timeout): long enough for nodes or pods that start minutes apart.
DEFAULT_CLUSTER_TIMEOUT_S = 600.0
# A worker whose heartbeats stop for this long is declared dead (TF's default,
# set explicitly because the failure tests rely on it).
HEARTBEAT_TIMEOUT_S = 10

# What a collective or the coordination service raises when a peer is gone.
PEER_LOST_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                    tf.errors.AbortedError, tf.errors.CancelledError)


class ClusterError(RuntimeError):
  """The multi-worker cluster could not be formed."""


@dataclasses.dataclass(frozen=True)
class Cluster:
  """The multi-worker cluster this process belongs to.

  Attributes:
    source: where it came from: "flags", "TF_CONFIG" or "slurm".
    spec: {task type: ["host:port", ...]}, TF_CONFIG's "cluster".
    task_type: this process's task type ("worker", or "chief" in TF_CONFIG).
    task_index: this process's index within `task_type`.
  """
  source: str
  spec: dict
  task_type: str
  task_index: int

  @property
  def num_tasks(self):
    return sum(len(addresses) for addresses in self.spec.values())

  @property
  def leader(self):
    """The task that hosts the coordination service: the chief, else worker 0
    (as MultiWorkerMirroredStrategy chooses it)."""
    return ("chief", 0) if self.spec.get("chief") else ("worker", 0)

  def peers(self):
    """[(task_type, task_index, "host:port")] of every other task."""
    return [(job, i, address) for job, addresses in sorted(self.spec.items())
            for i, address in enumerate(addresses)
            if (job, i) != (self.task_type, self.task_index)]


def _slurm_var(env, *names, integer=False):
  """The first of SLURM_<names> that is set, else ValueError naming them."""
  for name in names:
    value = env.get(f"SLURM_{name}")
    if value:
      if not integer:
        return value
      try:
        return int(value)
      except ValueError:
        raise ValueError(f"SLURM_{name}={value!r} is not an integer") from None
  raise ValueError(f"SLURM_PROCID is set but not {' or '.join('SLURM_' + n for n in names)}; "
                   "start the training with srun inside the allocation")


def slurm_cluster_spec(env):
  """The cluster of a Slurm job step, from its environment alone.

  What `tf.distribute.cluster_resolver.SlurmClusterResolver` computes, with
  three differences that matter for one task per node:

  - Tasks are listed in Slurm's node order, the order in which Slurm numbers
    them (SLURM_PROCID, block distribution). SlurmClusterResolver sorts the
    host names as strings: on `node[9-10]` it makes rank 0, which runs on
    node9, worker 0 at node10's address, so the two processes each take the
    other's place.
  - It never looks for GPUs: SlurmClusterResolver runs `nvidia-smi` (absent on
    CPU nodes) unless told the count, fails with 0 GPUs per node, and rewrites
    CUDA_VISIBLE_DEVICES after TensorFlow has already listed the devices. Here
    every task keeps the GPUs Slurm gave it.
  - The step's variables fall back to the job's (SLURM_STEP_NODELIST to
    SLURM_JOB_NODELIST, SLURM_STEP_NUM_TASKS to SLURM_NTASKS,
    SLURM_STEP_TASKS_PER_NODE to SLURM_TASKS_PER_NODE).

  Node lists (`node[01-02,05]`) are expanded in Python by TensorFlow's own
  `expand_hostlist`; `scontrol` is not needed. Task k on a node listens on
  port GAN_PIPELINE_TF_PORT (default 8888) + k. All tasks form one `worker`
  job, so worker 0 is the chief.

  Args:
    env: a mapping like `os.environ` with SLURM_PROCID set.

  Returns:
    A `Cluster` with source "slurm".

  Raises:
    ValueError: a variable missing or malformed, task counts that do not add
      up, or a task that runs on another node than its index says
      (SLURMD_NODENAME, when set), naming the values.
  """
  rank = _slurm_var(env, "PROCID", integer=True)
  num_tasks = _slurm_var(env, "STEP_NUM_TASKS", "NTASKS", integer=True)
  port_text = env.get(SLURM_PORT_ENV) or str(SLURM_PORT_BASE)
  if not port_text.isdigit():
    raise ValueError(f"{SLURM_PORT_ENV}={port_text!r} is not a port number")
  port_base = int(port_text)
  # Both raise ValueError naming the text.
  hosts = slurm_lib.expand_hostlist(_slurm_var(env, "STEP_NODELIST", "JOB_NODELIST"))
  per_node_text = _slurm_var(env, "STEP_TASKS_PER_NODE", "TASKS_PER_NODE")
  per_node = slurm_lib.expand_tasks_per_node(per_node_text)
  if len(per_node) != len(hosts) or sum(per_node) != num_tasks:
    raise ValueError(f"Slurm environment: {len(hosts)} node(s) {hosts} with tasks per node "
                     f"{per_node_text!r} do not make {num_tasks} task(s)")
  if not 0 <= rank < num_tasks:
    raise ValueError(f"SLURM_PROCID={rank} is outside 0..{num_tasks - 1}")
  workers = [f"{host}:{port_base + k}" for host, n in zip(hosts, per_node) for k in range(n)]
  node = env.get("SLURMD_NODENAME")
  if node and workers[rank].rpartition(":")[0] != node:
    raise ValueError(f"SLURM_PROCID={rank} runs on {node}, but Slurm's node order puts task "
                     f"{rank} on {workers[rank]}; use the default block distribution "
                     "(no --distribution) or set TF_CONFIG yourself")
  return Cluster(source="slurm", spec={"worker": workers}, task_type="worker", task_index=rank)


def resolve_cluster(env, workers=(), task_index=None):
  """The multi-worker cluster of this process: the flags, else TF_CONFIG, else Slurm.

  Args:
    env: a mapping like `os.environ`.
    workers: `--cluster_workers`: every worker's "host:port", worker 0 the
      chief; empty to look in the environment.
    task_index: `--task_index`: this process's index in `workers`.

  Returns:
    A `Cluster`.

  Raises:
    ValueError: bad flags (a task index out of range or missing, an address
      without a port), neither flags nor TF_CONFIG nor SLURM_PROCID, TF_CONFIG
      not JSON with a "cluster" and a "task", or a bad Slurm environment.
  """
  if workers or task_index is not None:
    workers = list(workers)
    if not workers:
      raise ValueError("--task_index needs --cluster_workers (every worker's host:port)")
    if task_index is None or not 0 <= task_index < len(workers):
      raise ValueError(f"--task_index must be in 0..{len(workers) - 1} for the "
                       f"{len(workers)} --cluster_workers, got {task_index}")
    bad = [w for w in workers if not re.fullmatch(r"\S+:\d+", w)]
    if bad:
      raise ValueError(f"--cluster_workers entries must be host:port, got {bad[0]!r}")
    if env.get("TF_CONFIG"):
      logging.warning("--cluster_workers given: ignoring TF_CONFIG")
    return Cluster(source="flags", spec={"worker": workers}, task_type="worker",
                   task_index=task_index)
  tf_config = env.get("TF_CONFIG")
  if tf_config:
    try:
      parsed = json.loads(tf_config)
      spec = parsed["cluster"]
      task = parsed.get("task", {})
      return Cluster(source="TF_CONFIG", spec=spec, task_type=task.get("type", "worker"),
                     task_index=int(task.get("index", 0)))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
      raise ValueError(f"TF_CONFIG is not valid JSON with a 'cluster' key: {e}") from None
  if env.get("SLURM_PROCID"):
    return slurm_cluster_spec(env)
  raise ValueError("--strategy=multi_worker needs the cluster in TF_CONFIG (set by the "
                   "launchers in launch/, Kubeflow, or by hand) or a Slurm step "
                   "(srun, SLURM_PROCID)")


def _tcp_error(address, timeout_s=2.0):
  """Why "host:port" refuses a TCP connection now, or None if it accepts one."""
  host, _, port = address.rpartition(":")
  try:
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
      return None
  except (OSError, ValueError) as e:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def tasks_named(message):
  """{(task_type, task_index)} of the tasks a TensorFlow error message names."""
  return {(job, int(i)) for job, i in
          re.findall(r"/job:(\w+)(?:/replica:\d+)?/task:(\d+)", message or "")}


def lost_peers(error, cluster_spec, task_type, task_id):
  """The peers a collective or coordination error blames, as
  ["worker 1 at host:port", ...], from the task names in its message.

  Args:
    error: a `tf.errors.OpError` (PEER_LOST_ERRORS).
    cluster_spec: {task type: ["host:port", ...]}.
    task_type, task_id: this task, left out.
  """
  out = []
  for job, i in sorted(tasks_named(error.message)):
    addresses = cluster_spec.get(job, [])
    if (job, i) != (task_type, task_id) and i < len(addresses):
      out.append(f"{job} {i} at {addresses[i]}")
  return out


def cluster_error(cluster, timeout_s, error):
  """A `ClusterError` naming the peers that did not join, from what TensorFlow
  said (the chief's barrier names the tasks that never registered) and from a
  TCP probe of every peer (a non-chief only learns that the chief timed out)."""
  named = tasks_named(error.message)
  missing = []
  for job, i, address in cluster.peers():
    reason = _tcp_error(address)
    if reason is not None:
      missing.append(f"{job} {i} at {address} ({reason})")
    elif (job, i) in named:
      missing.append(f"{job} {i} at {address} (listening, but did not register)")
  first_line = error.message.strip().splitlines()[0] if error.message.strip() else ""
  return ClusterError(
      f"the cluster of {cluster.num_tasks} tasks ({cluster.source}) did not form within "
      f"--cluster_timeout={timeout_s:g}s; no answer from "
      f"{'; '.join(missing) if missing else 'a peer'}. Start every task of the cluster "
      f"(or raise --cluster_timeout). TensorFlow: {type(error).__name__}: {first_line}")


def configure_coordination_service(cluster, timeout_s):
  """What MultiWorkerMirroredStrategy would configure, with bounded waits.

  `cluster_register_with_barrier` makes the chief's own registration wait
  for all tasks with the same timeout; without it the chief's start-up waits
  in TensorFlow's device-propagation barrier, whose timeout is an hour.
  """
  jobs = [coordination_config_pb2.CoordinatedJob(name=job, num_tasks=len(cluster.spec[job]))
          for job in ("chief", "worker") if cluster.spec.get(job)]
  leader_job, leader_index = cluster.leader
  context.context().configure_coordination_service(
      service_type="standalone",
      service_leader=f"/job:{leader_job}/replica:0/task:{leader_index}",
      cluster_register_timeout_in_ms=int(timeout_s * 1000),
      heartbeat_timeout_in_ms=HEARTBEAT_TIMEOUT_S * 1000,
      coordinated_jobs=jobs)
  context.context().coordination_service.cluster_register_with_barrier = True


def peer_lost_message(error, resolver, step, last_checkpoint, checkpoint_every):
  """What to tell the user when a peer worker is lost (`PEER_LOST_ERRORS`).

  Args:
    error: the `tf.errors.OpError`.
    resolver: the strategy's cluster resolver.
    step: the step training had reached.
    last_checkpoint: the newest checkpoint a restart resumes from, or None.
    checkpoint_every: --checkpoint_every, the most steps that can be lost.
  """
  peers = lost_peers(error, resolver.cluster_spec().as_dict(), resolver.task_type,
                     resolver.task_id)
  lines = [line.strip() for line in (error.message or "").splitlines()]
  # The line that says what happened, e.g. "... tasks are unhealthy (stopped
  # sending heartbeats):" or "... Connection reset by peer".
  cause = next((line for line in lines if re.search(
      r"unhealthy|aborted by|reset by peer|unavailable|heartbeat", line, re.I)),
               next((line for line in lines if line), type(error).__name__))
  return (f"lost a peer worker ({', '.join(peers) or 'not named'}) near step {step}: "
          f"{type(error).__name__}: {cause} The job cannot go on without it: stop every "
          "worker, then re-run the same command on all of them to resume from the last "
          f"checkpoint ({last_checkpoint or 'none yet: from step 0'}), losing at most "
          f"--checkpoint_every={checkpoint_every} steps")
