"""The trainer's checkpoints: what a run saves, where, and how it resumes.

A checkpoint holds the step counter, every model's weights by path
(`run_dir.trackable_items`), the optimizers, any per-example state and the
input pipeline's position. Every worker saves (TensorFlow's multi-worker
pattern); the non-chief ones into a temporary directory that is removed at
once.

With one input pipeline its position (the iterator) is part of the one
checkpoint. With several, every worker reads other files, and the chief's
checkpoint can hold only its own position; so each worker saves its iterator
in `checkpoints/input-worker<i>-of-<n>/`, and the chief's checkpoint holds
none.
"""

import os
import shutil

from absl import logging
import tensorflow as tf

from training import run_dir


class Checkpointer:
  """Saves and restores one run's checkpoints.

  Args:
    model_dir: the run directory.
    items: {name: trackable}: the step counter and the algorithm's items, in
      the `run_dir.trackable_items` format.
    iterator: this worker's input iterator.
    num_workers, worker_index, is_chief: this worker's place in the job.
    keep: checkpoints to keep (--keep_checkpoints).
    sync_workers: a function every worker calls together (a collective); it
      returns once every worker has reached it.
  """

  def __init__(self, model_dir, items, iterator, num_workers, worker_index, is_chief, keep,
               sync_workers):
    self.items = items
    self.step = items["step"]
    self.num_workers = num_workers
    self.worker_index = worker_index
    self.is_chief = is_chief
    self.sync_workers = sync_workers
    own_input = {"iterator": iterator} if num_workers == 1 else {}
    self.checkpoint = tf.train.Checkpoint(**items, **own_input)
    self.directory = os.path.join(model_dir, run_dir.CHECKPOINT_SUBDIR)
    directory = self.directory
    if not is_chief:  # TF's multi-worker pattern: others write to a temporary dir.
      directory = os.path.join(model_dir, f".worker{worker_index}_tmp")
      shutil.rmtree(directory, ignore_errors=True)  # Left by a worker killed while saving.
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep)
    self.input_manager = None
    if num_workers > 1:
      self.input_checkpoint = tf.train.Checkpoint(iterator=iterator)
      self.input_manager = tf.train.CheckpointManager(
          self.input_checkpoint,
          os.path.join(self.directory, f"input-worker{worker_index}-of-{num_workers}"),
          max_to_keep=keep)
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
    if self.num_workers == 1 and one_input:
      self.checkpoint.restore(latest).assert_consumed()
      return
    status = tf.train.Checkpoint(**self.items).restore(latest)
    if one_input:  # The position of one pipeline, not of this worker's.
      status.expect_partial().assert_existing_objects_matched()
    else:
      status.assert_consumed()
    step = int(self.step.numpy())
    own = (os.path.join(self.input_manager.directory, f"ckpt-{step}")
           if self.input_manager is not None else None)
    if own and tf.io.gfile.exists(own + ".index"):
      self.input_checkpoint.restore(own).assert_consumed()
    else:
      logging.warning(
          "%s holds no input position for worker %d of %d (it was saved by a run with "
          "another number of workers): this worker's input pipeline starts from the "
          "beginning. Training goes on, but not through the batches the earlier run "
          "would have seen.", latest, self.worker_index, self.num_workers)

  def save(self):
    """Saves this step unless it is saved already; returns the chief's path.

    With several workers each also saves its input position, kept.
    """
    step = int(self.step.numpy())
    if self.saved_step != step:
      if self.input_manager is not None:
        self.input_manager.save(checkpoint_number=step)
        # Every worker's input position is on disk before the chief's
        # checkpoint, which is what a restart resumes from, exists.
        self.sync_workers()
      self.manager.save(checkpoint_number=step)
      if not self.is_chief:
        shutil.rmtree(self.manager.directory, ignore_errors=True)
      self.saved_step = step
    return self.path(step)
