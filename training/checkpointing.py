"""The trainer's checkpoints: what a run saves, where, and how it resumes.

A checkpoint holds the step counter, every model's weights by path
(`run_dir.trackable_items`), the optimizers and any per-example state. Every
worker saves (TensorFlow's multi-worker pattern); the non-chief ones into a
temporary directory that is removed at once.

The input pipeline's position is saved apart, by every worker, in
`checkpoints/input-worker<i>-of-<n>-batch<b>x<r>/`: keyed by what shapes it,
the worker's place in the job, the per-replica batch b and the local replica
count r. The same command resumes exactly where it stopped. A job resumed
with another shape (a requeue onto a node with another number of GPUs,
`--cpu_replicas` changed, fewer workers) has no position under its key: its
weights, optimizers and step are restored, and its input starts from the
beginning of its data with a logged warning. A restored iterator of another
shape would yield batches the compiled loop cannot take ("Incompatible
shapes ... expected [16,...] but got [32,...]").

Checkpoints written before the key (the position inside the chief's
checkpoint, or in `input-worker<i>-of-<n>/`) are restored when a trial
iterator restored from them yields batches of this run's shape.
"""

import os
import shutil

from absl import logging
import tensorflow as tf

from training import run_dir


def input_key(worker_index, num_workers, per_replica_batch, num_local):
  """The directory name of one worker's input positions, by what shapes them."""
  return (f"input-worker{worker_index}-of-{num_workers}-batch{per_replica_batch}x"
          f"{num_local}")


class Checkpointer:
  """Saves and restores one run's checkpoints.

  Args:
    model_dir: the run directory.
    items: {name: trackable}: the step counter and the algorithm's items, in
      the `run_dir.trackable_items` format.
    iterator: this worker's input iterator.
    new_iterator: makes a fresh iterator of the same pipeline (to try a
      position saved before the key existed).
    num_workers, worker_index, is_chief: this worker's place in the job.
    per_replica_batch, num_local: the shape of this worker's input.
    keep: checkpoints to keep (--keep_checkpoints).
    sync_workers: a function every worker calls together (a collective); it
      returns once every worker has reached it.
  """

  def __init__(self, model_dir, items, iterator, new_iterator, num_workers, worker_index,
               is_chief, per_replica_batch, num_local, keep, sync_workers):
    self.items = items
    self.step = items["step"]
    self.new_iterator = new_iterator
    self.num_workers = num_workers
    self.worker_index = worker_index
    self.is_chief = is_chief
    self.per_replica_batch = per_replica_batch
    self.sync_workers = sync_workers
    self.checkpoint = tf.train.Checkpoint(**items)
    self.directory = os.path.join(model_dir, run_dir.CHECKPOINT_SUBDIR)
    directory = self.directory
    if not is_chief:  # TF's multi-worker pattern: others write to a temporary dir.
      directory = os.path.join(model_dir, f".worker{worker_index}_tmp")
      shutil.rmtree(directory, ignore_errors=True)  # Left by a worker killed while saving.
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)
    self.input_checkpoint = tf.train.Checkpoint(iterator=iterator)
    self.input_manager = tf.train.CheckpointManager(
        self.input_checkpoint,
        os.path.join(self.directory,
                     input_key(worker_index, num_workers, per_replica_batch, num_local)),
        max_to_keep=keep)
    # Before the key: this worker's positions of a job with the same workers.
    self.legacy_input_dir = (os.path.join(self.directory,
                                          f"input-worker{worker_index}-of-{num_workers}")
                             if num_workers > 1 else None)
    self.saved_step = None  # The step of the newest checkpoint, once one exists.

  def latest(self):
    """The newest checkpoint of the run (the chief's), or None."""
    return tf.train.latest_checkpoint(self.directory)

  def path(self, step):
    return os.path.join(self.directory, f"ckpt-{step}")

  def restore_latest(self):
    """Restores the newest checkpoint, if any; returns its step or None."""
    latest = self.latest()
    if not latest:
      return None
    self._restore(latest)
    self.saved_step = int(self.step.numpy())
    logging.info("Resumed from %s at step %d", latest, self.saved_step)
    return self.saved_step

  def _restore(self, latest):
    """Restores the chief's checkpoint `latest`, then this worker's input position."""
    one_input = any(name.startswith("iterator/") for name, _ in tf.train.list_variables(latest))
    status = tf.train.Checkpoint(**self.items).restore(latest)
    if one_input:  # Written before the key: the position is inside, restored below.
      status.expect_partial().assert_existing_objects_matched()
    else:
      status.assert_consumed()
    step = int(self.step.numpy())
    own = os.path.join(self.input_manager.directory, f"ckpt-{step}")
    if tf.io.gfile.exists(own + ".index"):
      self.input_checkpoint.restore(own).assert_consumed()
      return
    legacy = latest if one_input and self.num_workers == 1 else (
        os.path.join(self.legacy_input_dir, f"ckpt-{step}") if self.legacy_input_dir else None)
    if legacy and tf.io.gfile.exists(legacy + ".index"):
      found = self._batch_size_at(legacy)
      if found == self.per_replica_batch:
        self.input_checkpoint.restore(legacy).expect_partial()
        return
      why = (f"its input position yields batches of {found} per replica, and this run takes "
             f"{self.per_replica_batch}")
    else:
      why = (f"it holds no input position for worker {self.worker_index} of "
             f"{self.num_workers} at {self.per_replica_batch} examples per replica")
    logging.warning(
        "Resuming %s with another input shape than it was saved with (%s; another number of "
        "replicas, GPUs or workers): the weights, optimizers and step are restored, and this "
        "worker's input pipeline starts from the beginning of its data. Training goes on, but "
        "not through the batches the earlier run would have seen.", latest, why)

  def _batch_size_at(self, path):
    """The per-replica batch that an input position saved at `path` yields."""
    trial = self.new_iterator()
    tf.train.Checkpoint(iterator=trial).restore(path).expect_partial()
    return int(tf.nest.flatten(next(trial))[0].shape[0])

  def save(self):
    """Saves this step unless it is saved already; returns the chief's path.

    Every worker also saves its input position, under its key.
    """
    step = int(self.step.numpy())
    if self.saved_step != step:
      self.input_manager.save(checkpoint_number=step)
      if self.num_workers > 1:
        # Every worker's input position is on disk before the chief's
        # checkpoint, which is what a restart resumes from, exists.
        self.sync_workers()
      self.manager.save(checkpoint_number=step)
      if not self.is_chief:
        shutil.rmtree(self.manager.directory, ignore_errors=True)
      self.saved_step = step
    return self.path(step)
