"""The one factory that turns a strategy name into a `tf.distribute.Strategy`.

| name           | what                                                            |
|----------------|-----------------------------------------------------------------|
| `default`      | no distribution (`tf.distribute.get_strategy()`)                |
| `one_device`   | the first GPU, or the CPU                                       |
| `mirrored`     | every visible GPU (NCCL all-reduce), or the CPU devices         |
| `multi_worker` | MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG   |

`cpu_replicas=N` splits the CPU into N logical devices so that `mirrored`
runs N replicas on a machine without GPUs (tests, trying a config). It must
take effect before TensorFlow initializes its devices, so binaries call
`get_strategy` before anything else touches TensorFlow.
"""

import json
import os

from absl import logging
import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")


def configure_cpu_replicas(n):
  """Makes at least `n` logical CPU devices available.

  Raises:
    ValueError: n < 1, or TensorFlow already initialized fewer than n CPU
      devices (naming both numbers).
  """
  if n < 1:
    raise ValueError(f"--cpu_replicas must be >= 1, got {n}")
  cpus = tf.config.list_physical_devices("CPU")
  existing = tf.config.get_logical_device_configuration(cpus[0])
  if n == 1 or (existing and len(existing) >= n):
    return  # Never shrink: other strategies in this process may use the devices.
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
  except RuntimeError:  # Devices already initialized: fine if there are enough.
    have = len(tf.config.list_logical_devices("CPU"))
    if have < n:
      raise ValueError(
          f"--cpu_replicas={n} but TensorFlow already initialized {have} CPU device(s); "
          "the strategy must be built before anything else uses TensorFlow") from None


def get_strategy(name, cpu_replicas=None):
  """Builds the strategy `name`.

  Args:
    name: one of STRATEGIES.
    cpu_replicas: with no GPU, the number of logical CPU devices to mirror
      over (`mirrored`); None means one. Ignored where GPUs exist.

  Returns:
    A `tf.distribute.Strategy`.

  Raises:
    ValueError: unknown name (listing the valid ones), a bad `cpu_replicas`,
      or `multi_worker` without a cluster (TF_CONFIG) to join.
  """
  if name not in STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
  if cpu_replicas is not None:
    if cpu_replicas < 1:
      raise ValueError(f"--cpu_replicas must be >= 1, got {cpu_replicas}")
    if name in ("default", "one_device") and cpu_replicas > 1:
      raise ValueError(f"--cpu_replicas={cpu_replicas} needs --strategy=mirrored "
                       f"(or multi_worker), not {name}")
  gpus = tf.config.list_physical_devices("GPU")
  if cpu_replicas and not gpus:
    configure_cpu_replicas(cpu_replicas)
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  if name == "mirrored":
    if gpus:
      return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(gpus))])
    n = cpu_replicas or 1
    # NCCL is GPU only; on CPU reduce through one device.
    return tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(n)],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())
  # multi_worker
  tf_config = os.environ.get("TF_CONFIG")
  if not tf_config:
    raise ValueError("--strategy=multi_worker needs the cluster in TF_CONFIG (set by the "
                     "launchers in launch/, Kubeflow, or by hand)")
  try:
    cluster = json.loads(tf_config)["cluster"]
  except (ValueError, KeyError) as e:
    raise ValueError(f"TF_CONFIG is not valid JSON with a 'cluster' key: {e}") from None
  logging.info("multi_worker cluster: %s", cluster)
  communication = tf.distribute.experimental.CommunicationImplementation
  options = tf.distribute.experimental.CommunicationOptions(
      implementation=communication.NCCL if gpus else communication.RING)
  return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def worker_info(strategy):
  """(num_workers, worker_index, is_chief) of this process."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return 1, 0, True
  task_type, task_id = resolver.task_type, resolver.task_id
  workers = resolver.cluster_spec().as_dict().get("worker", [])
  chiefs = resolver.cluster_spec().as_dict().get("chief", [])
  num = len(workers) + len(chiefs)
  index = task_id + (len(chiefs) if task_type == "worker" else 0)
  is_chief = task_type == "chief" or (not chiefs and task_type == "worker" and task_id == 0)
  return num, index, is_chief
