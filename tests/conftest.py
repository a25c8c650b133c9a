"""Test setup shared by every test.

The CPU is split into two logical devices before TensorFlow initializes, so
that tests can build a two-replica MirroredStrategy on this 2-core machine.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # pylint: disable=wrong-import-position

NUM_LOGICAL_CPUS = 2
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS)

# tf.test.TestCase reads absl flags (--test_tmpdir); pytest does not parse them.
from absl import flags  # pylint: disable=wrong-import-position

if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


def pytest_collection_modifyitems(items):
  """Drops tf.test.TestCase.test_session, a deprecated helper, not a test."""
  items[:] = [item for item in items if item.name != "test_session"]


_EXIT_STATUS = [0]


def pytest_sessionfinish(session, exitstatus):
  _EXIT_STATUS[0] = int(exitstatus)


def pytest_unconfigure(config):
  """Skips interpreter teardown once pytest has printed its summary.

  With the whole suite in one process, destroying the leftover tf.data
  iterators at interpreter shutdown has hung (a tf.data thread pool waiting in
  its destructor, seen once in ~340 s runs; each test file alone exits
  cleanly). Exiting here keeps a finished run from hanging CI.
  """
  del config
  import sys  # pylint: disable=import-outside-toplevel
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(_EXIT_STATUS[0])  # pylint: disable=protected-access
