"""The strategy factory: what it builds on CPU, and its pinned error messages."""

import os
import re
from unittest import mock

import tensorflow as tf

from distribute import cluster as cluster_lib
from distribute import strategy as strategy_lib


class StrategyFactoryTest(tf.test.TestCase):

  def test_builds_each_kind_on_cpu(self):
    self.assertIs(strategy_lib.get_strategy("default"), tf.distribute.get_strategy())
    one = strategy_lib.get_strategy("one_device")
    self.assertIsInstance(one, tf.distribute.OneDeviceStrategy)
    mirrored = strategy_lib.get_strategy("mirrored")
    self.assertEqual(mirrored.num_replicas_in_sync, 1)
    two = strategy_lib.get_strategy("mirrored", cpu_replicas=2)
    self.assertEqual(two.num_replicas_in_sync, 2)
    self.assertEqual(strategy_lib.worker_info(two), (1, 0, True))
    self.assertEqual(strategy_lib.cross_device_ops_name(two), "ReductionToOneDevice")
    self.assertEqual(strategy_lib.cross_device_ops_name(one), "none")

  def test_gpu_all_reduce(self):
    # NCCL between whole GPUs; over logical GPUs split from fewer visible ones
    # (NCCL is not supported there) HierarchicalCopyAllReduce for an even
    # count, ReductionToOneDevice for an odd one, which it would sum wrongly.
    expected = {1: tf.distribute.NcclAllReduce, 2: tf.distribute.HierarchicalCopyAllReduce,
                3: tf.distribute.ReductionToOneDevice, 4: tf.distribute.HierarchicalCopyAllReduce,
                8: tf.distribute.HierarchicalCopyAllReduce}
    for n, kind in expected.items():
      devices = [f"/device:GPU:{i}" for i in range(n)]
      with mock.patch.object(tf.config, "get_visible_devices", return_value=["gpu0"]):
        self.assertIsInstance(strategy_lib.gpu_cross_device_ops(devices), kind, msg=n)
      with mock.patch.object(tf.config, "get_visible_devices",
                             return_value=[f"gpu{i}" for i in range(n)]):
        self.assertIsInstance(strategy_lib.gpu_cross_device_ops(devices),
                              tf.distribute.NcclAllReduce, msg=n)

  def test_gpu_memory_grows_unless_told_or_split(self):
    gpus = ["gpu0", "gpu1", "gpu2"]
    split = {"gpu1": ["two logical"]}
    with mock.patch.object(tf.config.experimental, "set_memory_growth") as grow, \
         mock.patch.object(tf.config, "get_logical_device_configuration",
                           side_effect=lambda g: split.get(g)):
      self.assertEqual(strategy_lib.configure_gpu_memory(gpus, environ={}), ["gpu0", "gpu2"])
      self.assertEqual(grow.call_args_list, [mock.call("gpu0", True), mock.call("gpu2", True)])
      grow.reset_mock()
      self.assertEqual(strategy_lib.configure_gpu_memory(
          gpus, environ={strategy_lib.GROWTH_ENV: "false"}), [])
      grow.assert_not_called()
    self.assertEqual(strategy_lib.configure_gpu_memory([], environ={}), [])

  def test_pinned_errors(self):
    cases = [
        (("tpu",), {}, "unknown strategy 'tpu'; valid: default, one_device, mirrored, "
                       "multi_worker"),
        (("mirrored",), {"cpu_replicas": 0}, "--cpu_replicas must be >= 1, got 0"),
        (("one_device",), {"cpu_replicas": 2}, "--cpu_replicas=2 needs --strategy=mirrored"),
        (("mirrored",), {"cpu_replicas": 64},
         "--cpu_replicas=64 but TensorFlow already initialized 2 CPU device"),
        (("multi_worker",), {"cluster_timeout": 0}, "--cluster_timeout must be > 0 seconds, got 0"),
    ]
    for args, kwargs, message in cases:
      with self.subTest(message=message):
        with self.assertRaisesRegex(ValueError, re.escape(message)):
          strategy_lib.get_strategy(*args, **kwargs)

  def test_multi_worker_needs_tf_config(self):
    with mock.patch.dict(os.environ, {}, clear=False):
      os.environ.pop("TF_CONFIG", None)
      with self.assertRaisesRegex(ValueError, "--strategy=multi_worker needs the cluster in "
                                  "TF_CONFIG"):
        strategy_lib.get_strategy("multi_worker")
    with mock.patch.dict(os.environ, {"TF_CONFIG": "{not json"}):
      with self.assertRaisesRegex(ValueError, "TF_CONFIG is not valid JSON"):
        strategy_lib.get_strategy("multi_worker")


class ClusterFromFlagsTest(tf.test.TestCase):
  """--cluster_workers and --task_index: the cluster without TF_CONFIG or Slurm."""

  def test_flags_win_over_the_environment(self):
    workers = ("10.0.0.1:2222", "10.0.0.2:2222")
    env = {"TF_CONFIG": '{"cluster": {"worker": ["a:1"]}, "task": {"index": 0}}',
           "SLURM_PROCID": "0"}
    cluster = cluster_lib.resolve_cluster(env, workers, 1)
    self.assertEqual((cluster.source, cluster.task_type, cluster.task_index),
                     ("flags", "worker", 1))
    self.assertEqual(cluster.spec, {"worker": list(workers)})
    self.assertEqual(cluster.peers(), [("worker", 0, "10.0.0.1:2222")])

  def test_pinned_errors(self):
    cases = [
        ((("h:1", "h:2"), 2), "--task_index must be in 0..1 for the 2 --cluster_workers, got 2"),
        ((("h:1", "h:2"), None), "--task_index must be in 0..1 for the 2 --cluster_workers, "
                                 "got None"),
        (((), 0), "--task_index needs --cluster_workers"),
        ((("h:1", "h2"), 0), "--cluster_workers entries must be host:port, got 'h2'"),
    ]
    for (workers, index), message in cases:
      with self.assertRaisesRegex(ValueError, re.escape(message)):
        cluster_lib.resolve_cluster({}, workers, index)
    with self.assertRaisesRegex(ValueError, re.escape(
        "--cluster_workers and --task_index need --strategy=multi_worker, not mirrored")):
      strategy_lib.get_strategy("mirrored", cluster_workers=("h:1",), task_index=0)


if __name__ == "__main__":
  tf.test.main()
