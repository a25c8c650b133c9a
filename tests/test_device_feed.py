"""training/device_feed.py: each replica's batch is copied to its device one
fetch ahead, the copy does not wait for the step and the step does not wait
for the copy, and the loop reads exactly the batches it uses.

The overlap itself needs a GPU (BUILD.md); here the traced loop is read: the
graph says what the executor may run concurrently."""

import collections

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tests.test_train import tiny_config
from training import trainer

# What the fetch of the next batch may depend on, and what may depend on it,
# inside the loop body: the loop counter's arithmetic, and the copies
# themselves. A Conv2D, MatMul, variable or collective here would mean the
# fetch waits for the step, or the step for the fetch.
FETCH_MAY_FOLLOW = {"ARG", "Const", "Equal", "LogicalAnd", "AddV2", "Less", "Identity"}
FETCH_MAY_FEED = {"Identity", "IdentityN", "NoOp"}


def _built(algo, model_dir, **kwargs):
  return trainer._Trainer(tiny_config(algo, model_dir, **kwargs))  # pylint: disable=protected-access


def _loop_graph(t):
  concrete = t.train_loop.get_concrete_function(tf.TensorSpec([], tf.int64))
  graph = concrete.graph
  return graph, {f.signature.name: f for f in graph.as_graph_def().library.function}


def _reads_iterator(library, name, seen=frozenset()):
  """Whether function `name` (or one it calls) runs IteratorGetNext."""
  for node in library[name].node_def:
    if node.op == "IteratorGetNext":
      return True
    for value in node.attr.values():
      called = value.func.name
      if called in library and called not in seen and _reads_iterator(
          library, called, seen | {name}):
        return True
  return False


def _closure(nodes, starts, forward):
  """Op types of the nodes reached from `starts` along data and control edges."""
  edges = collections.defaultdict(set)
  for node in nodes.values():
    for source in node.input:
      source = source.lstrip("^").split(":")[0]
      if forward:
        edges[source].add(node.name)
      else:
        edges[node.name].add(source)
  seen, stack = set(), list(starts)
  while stack:
    for other in edges[stack.pop()]:
      if other not in seen:
        seen.add(other)
        stack.append(other)
  return collections.Counter(nodes[n].op if n in nodes else "ARG" for n in seen - set(starts))


class DeviceFeedGraphTest(tf.test.TestCase, parameterized.TestCase):

  def test_the_first_fetch_is_copied_to_each_replica_device(self):
    t = _built("dcgan", self.create_tempdir().full_path, cpu_replicas=2)
    graph, _ = _loop_graph(t)
    copies = [op for op in graph.get_operations()
              if op.type == "Identity" and op.inputs and op.inputs[0].op.type == "IteratorGetNext"]
    devices = sorted({tf.DeviceSpec.from_string(op.device).device_index for op in copies})
    self.assertEqual(devices, [0, 1])  # Replica 0 on CPU:0, replica 1 on CPU:1.
    # One copy per feature per replica, from one read per replica.
    reads = [op for op in graph.get_operations() if op.type == "IteratorGetNext"]
    self.assertLen(reads, 2)
    self.assertLen(copies, 2 * len(reads[0].outputs))

  @parameterized.named_parameters(("dcgan", "dcgan"), ("wgan_gp_n_critic", "wgan_gp"))
  def test_the_next_fetch_neither_waits_for_nor_feeds_the_step(self, algo):
    t = _built(algo, self.create_tempdir().full_path, cpu_replicas=2)
    _, library = _loop_graph(t)
    checked = 0
    for fn in library.values():
      nodes = {n.name: n for n in fn.node_def}
      fetches = [n.name for n in fn.node_def if n.op in ("If", "StatelessIf") and (
          _reads_iterator(library, n.attr["then_branch"].func.name)
          or _reads_iterator(library, n.attr["else_branch"].func.name))]
      if not fetches:
        continue
      checked += 1
      # It feeds nothing but the loop's outputs: the step reads the batch before it.
      self.assertContainsSubset(set(_closure(nodes, fetches, forward=True)), FETCH_MAY_FEED)
      # It waits for nothing but the loop counter: not for this step's compute.
      self.assertContainsSubset(set(_closure(nodes, fetches, forward=False)), FETCH_MAY_FOLLOW)
    # dcgan: the step's loop; wgan_gp: the n-critic loop (its critic reads data).
    self.assertEqual(checked, 1)


class DeviceFeedReadsTest(tf.test.TestCase):

  def test_a_call_reads_exactly_the_batches_it_uses(self):
    """wgan_gp: 5 critic fetches per step, 2 replicas: 3 steps read 30 batches
    of the host iterator, not 31 (the prefetch stops at the call's end)."""
    t = _built("wgan_gp", self.create_tempdir().full_path, cpu_replicas=2, n_critic=5)
    next(t.iterator)  # A position saved before the first read would reshuffle on restore.
    start = tf.train.Checkpoint(iterator=t.iterator).write(
        self.create_tempdir().full_path + "/start")
    t.train_loop(tf.constant(3, tf.int64))
    self.assertEqual(int(t.step.numpy()), 3)
    after = next(t.iterator)
    tf.train.Checkpoint(iterator=t.iterator).read(start).assert_consumed()
    for _ in range(3 * 5 * 2):  # Steps x critic fetches x replicas.
      next(t.iterator)
    expected = next(t.iterator)
    for name in expected:
      np.testing.assert_array_equal(after[name].numpy(), expected[name].numpy(), err_msg=name)

if __name__ == "__main__":
  tf.test.main()
