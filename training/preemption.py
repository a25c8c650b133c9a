"""Preemption: SIGTERM during training saves a checkpoint at a step boundary
and raises `Preempted`.

With `multi_worker`, TensorFlow's PreemptionCheckpointHandler makes every
worker agree on the boundary (the next one after the signal reaches the
cluster) and save there; with the other strategies the next boundary. The
save goes through the run's `Checkpointer`, like the periodic ones, so
resuming is unchanged.
"""

import os
import signal
import threading

from absl import logging
import tensorflow as tf

from training.errors import Preempted


class SigtermFlag:
  """While active (a context manager), SIGTERM only sets `event`.

  The host loop acts on it at the next step boundary. Python runs signal
  handlers in the main thread only, so elsewhere (a training thread) nothing
  is installed. The handler in place before is put back on exit, or the
  default one when it was not set from Python (TensorFlow's multi-worker
  runtime sets its own in C++).
  """

  def __init__(self):
    self.event = threading.Event()
    self._previous = None
    self._installed = False

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
      self._installed = True
    return self

  def _on_sigterm(self, signum, frame):
    del signum, frame
    if not self.event.is_set():
      logging.warning("SIGTERM: saving a checkpoint at the next step boundary, then exiting")
    self.event.set()

  def __exit__(self, *exc_info):
    if self._installed:
      signal.signal(signal.SIGTERM,
                    signal.SIG_DFL if self._previous is None else self._previous)


class PreemptionWatcher:
  """Checks for SIGTERM at every host-loop boundary (`check`).

  Args:
    strategy: the run's strategy.
    model_dir: the run directory.
    sigterm: an active `SigtermFlag`.
    checkpointer: the run's `training.checkpointing.Checkpointer`.
  """

  def __init__(self, strategy, model_dir, sigterm, checkpointer):
    self.sigterm = sigterm
    self.checkpointer = checkpointer
    self._agreed = False
    self.handler = None
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
      self.handler = self._multi_worker_handler(strategy, model_dir)

  def _multi_worker_handler(self, strategy, model_dir):
    """TensorFlow's PreemptionCheckpointHandler under MultiWorkerMirroredStrategy.

    The signal is `sigterm` (polled by the handler every second); the
    checkpoint is saved by the Checkpointer, so it is the same checkpoint as
    the periodic ones. The handler counts its calls (one per host-loop
    boundary on every worker) to agree on the boundary to save at; it would
    add that count to the checkpoint it is given, so it is given a
    CheckpointManager of its own that never writes (`save_fn` does): every
    process counts from 0, and all workers restart together.
    """

    def on_saved():  # `exit_fn`: `check` raises Preempted after the handler returns.
      self._agreed = True

    counter_only = tf.train.CheckpointManager(
        tf.train.Checkpoint(), os.path.join(model_dir, ".preemption_counter"), max_to_keep=1)
    config = tf.distribute.experimental.TerminationConfig(
        termination_watcher_fn=self.sigterm.event.is_set, exit_fn=on_saved, grace_period=0,
        save_fn=self.checkpointer.save)
    return tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, counter_only, termination_config=config)

  def check(self):
    """At a host-loop boundary: on SIGTERM, save and raise `Preempted`."""
    if self.handler is None:
      if not self.sigterm.event.is_set():
        return
      checkpoint = self.checkpointer.save()
    else:
      self.handler.save_checkpoint_if_preempted()  # Saves through the Checkpointer when agreed.
      if not self._agreed:
        return
      # Every worker has saved; none exits before the chief's checkpoint is
      # written (a launcher may kill the rest when the first one exits).
      self.checkpointer.sync_workers()
      checkpoint = self.checkpointer.path(self.checkpointer.saved_step)
    logging.warning("Preempted: saved checkpoint %s", checkpoint)
    raise Preempted(self.checkpointer.saved_step, checkpoint)
