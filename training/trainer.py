"""The one trainer behind every algorithm: `run(config)`.

What lives here and only here: the strategy, the input distribution, the
reduction of per-example losses against the global batch, the compiled loop
(n-critic and `steps_per_loop` inside one `tf.function` call), checkpoints,
summaries, sample grids and console progress. Algorithms only provide
per-replica, per-example losses.

The reduction, in one place (`_replica_update`):
    loss = tf.nn.compute_average_loss(per_example, global_batch_size=B)
i.e. sum over this replica's examples / the global batch. Keras 3 optimizers,
called in replica context, all-reduce (SUM) the gradients themselves, so the
summed per-replica gradients are exactly the gradient of the global mean. No
manual all-reduce: it would count every gradient twice.

Data: each worker builds its own `tf.data` pipeline (reader.make_dataset_fn
with this worker's InputContext) and iterates it with a plain iterator, which,
unlike the strategy's distributed iterators, can be saved in a checkpoint.
Each step takes one per-replica batch per local replica and hands them out
with `experimental_distribute_values_from_function`. So replica r of a
one-worker job gets the r-th consecutive slice of the global batch, the same
examples a single replica would see in its batch of B.

Randomness: every draw is a function of (seed, step, phase, repeat, global
example index) (`training/randomness.py`), so N replicas draw what one
replica would, and a resumed run draws what the uninterrupted run would.

Failures, all at host-loop boundaries (every `steps_per_loop` steps at most):
- SIGTERM (preemption) during training saves a checkpoint at a boundary and
  raises `Preempted`. With `multi_worker`, TensorFlow's
  PreemptionCheckpointHandler makes every worker agree on the boundary (the
  next one after the signal reaches the cluster) and save there; with the
  other strategies the next boundary. The save goes through the same
  CheckpointManager as the periodic ones, so resuming is unchanged.
- A lost peer (`multi_worker`): the collectives fail
  (`strategy.PEER_LOST_ERRORS`) and `TrainingError` says how to resume.
"""

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import threading
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from input import manifest as manifest_lib
from input import reader
from training import algorithms
from training import config as config_lib
from training import data as data_lib
from training import loss_scale
from training import randomness
from training import samples as samples_lib
from training import strategy as strategy_lib
from training import translation  # Also registers the translation algorithms.

CHECKPOINT_SUBDIR = "checkpoints"
SAMPLES_SUBDIR = "samples"
TENSORBOARD_SUBDIR = "tensorboard"
DATA_INFO_NAME = "data_info.json"  # What sampling needs to rebuild the models.
EVAL_LOG_NAME = "eval.jsonl"  # --eval_every: one line {"step", "metrics", "seconds"} each.
EVAL_PROTOCOL_NAME = "eval_protocol.json"  # The protocol of the latest evaluation.


class TrainingError(RuntimeError):
  """Training stopped: non-finite losses, a run that cannot be resumed, a
  cluster that did not form, or a lost peer worker."""


class Preempted(TrainingError):
  """SIGTERM: a checkpoint was saved at a step boundary; re-running resumes.

  Attributes:
    step: the step of that checkpoint.
    checkpoint: its path (the chief's checkpoint, also on other workers).
  """

  def __init__(self, step, checkpoint):
    super().__init__(f"preempted (SIGTERM): saved checkpoint {checkpoint} at step {step}; "
                     "re-run the same command to resume")
    self.step = step
    self.checkpoint = checkpoint


@dataclasses.dataclass
class TrainResult:
  """What `run` returns: the resolved config and the trained algorithm."""
  config: config_lib.TrainConfig
  model_dir: str
  step: int
  algorithm: algorithms.Algorithm
  strategy: tf.distribute.Strategy
  metrics: dict
  checkpoint: str | None
  xla: bool = False  # Whether the per-replica gradients were XLA-compiled.
  precision: str = "float32"  # The dtype policy the networks ran in (--precision resolved).
  evaluation: dict | None = None  # The last --eval_every metrics of this call, if any.


def _auto_shuffle_buffer(manifest):
  """About 64 MB of records, 1,000 to 10,000: the buffer is saved in every
  checkpoint (it is part of the input iterator's position)."""
  total = 0
  for f in manifest["features"].values():
    n = math.prod(f["shape"])
    total += n * (4 if f["dtype"] == "float32" else np.dtype(f["dtype"]).itemsize)
  return int(min(10_000, max(1_000, 64e6 // max(total, 1))))


def _prepare_model_dir(config, is_chief):
  """Refuses an incompatible stored run, applies --fresh, writes config.json."""
  model_dir = config.model_dir
  stored = config_lib.load(model_dir)
  if config.fresh and os.path.isdir(model_dir):
    if is_chief:
      logging.warning("--fresh: removing the previous run in %s", model_dir)
      for name in (CHECKPOINT_SUBDIR, SAMPLES_SUBDIR, TENSORBOARD_SUBDIR):
        shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)
      for name in (config_lib.CONFIG_NAME, EVAL_LOG_NAME, EVAL_PROTOCOL_NAME):
        if os.path.exists(os.path.join(model_dir, name)):
          os.remove(os.path.join(model_dir, name))
    stored = None
  if stored is not None:
    diffs = config_lib.conflicts(stored, config)
    if diffs:
      text = "; ".join(f"{name}={old!r} there, {new!r} now" for name, old, new in diffs)
      raise TrainingError(
          f"--model_dir {model_dir!r} holds a run with a different config ({text}). "
          "Re-run with the same flags to resume, pass --fresh to start over, or choose "
          "another --model_dir")
  if is_chief:
    os.makedirs(model_dir, exist_ok=True)
    manifest_lib.write_json_atomic(os.path.join(model_dir, config_lib.CONFIG_NAME),
                                   json.loads(config.to_json()))


class _Trainer:
  """Holds the pieces of one run; `run()` below is the public entry point."""

  def __init__(self, config):
    config.validate()
    try:
      self.strategy = strategy_lib.get_strategy(config.strategy, config.cpu_replicas,
                                                config.cluster_timeout, config.cluster_workers,
                                                config.task_index)
    except strategy_lib.ClusterError as e:
      raise TrainingError(str(e)) from None
    self.num_workers, self.worker_index, self.is_chief = strategy_lib.worker_info(
        self.strategy)
    algo_cls = algorithms.get(config.algo)
    spec = config.data or algo_cls.default_data
    data_dir = data_lib.resolve(spec, cache_dir=config.data_cache, image_size=config.image_size)
    self.manifest = manifest_lib.load(data_dir)
    self.data_dir = data_dir
    self.data = data_lib.describe(self.manifest, spec, data_dir)
    config = algo_cls.resolve(dataclasses.replace(config, data=spec), self.data)
    if config.model_dir is None:
      config = dataclasses.replace(config, model_dir=os.path.join(
          "runs", f"{config.algo}-{self.data.name}"))
    self.config = config
    replicas = self.strategy.num_replicas_in_sync
    if config.global_batch_size % replicas:
      raise ValueError(f"--global_batch_size={config.global_batch_size} does not divide by "
                       f"the {replicas} replicas; use a multiple of {replicas}")
    self.global_batch = config.global_batch_size
    self.per_replica = self.global_batch // replicas
    self.num_local = len(strategy_lib.local_devices(self.strategy))
    _prepare_model_dir(config, self.is_chief)
    if self.is_chief:
      manifest_lib.write_json_atomic(os.path.join(config.model_dir, DATA_INFO_NAME),
                                     dataclasses.asdict(self.data))
    logging.info(
        "Training %s on %s (%s, %s%s): %d replica(s) on %d worker(s), global batch %d, "
        "per-replica batch %d, per-worker batch %d; model_dir %s", config.algo, spec,
        self.data.kind, "x".join(map(str, self.data.shape)),
        f", {self.data.num_classes} classes" if self.data.num_classes else "", replicas,
        self.num_workers, self.global_batch, self.per_replica,
        self.per_replica * self.num_local, config.model_dir)
    if config.deterministic:
      tf.config.experimental.enable_op_determinism()

    with self.strategy.scope():
      keras.utils.set_random_seed(config.seed)  # Same initial weights for any replica count.
      self.algorithm = algo_cls(config, self.data)
      self.precision, precision_reason = use_precision(config, self.strategy, self.algorithm,
                                                       self.num_workers)
      previous_policy = keras.config.dtype_policy()
      keras.config.set_dtype_policy(self.precision)  # Layers keep the policy they got.
      try:
        self.algorithm.build()
      finally:
        keras.config.set_dtype_policy(previous_policy)
      if self.precision == "mixed_float16":
        # Built on the built inner optimizers (Adam and RMSprop build once).
        self.algorithm.optimizers = {
            name: loss_scale.LossScaleOptimizer(opt, name=f"{name}_loss_scale")
            for name, opt in self.algorithm.optimizers.items()}
        for phase in self.algorithm.phases():
          self.algorithm.optimizers[phase.name].build(self.algorithm.variables(phase))
      self.xla, xla_reason = use_xla(config, self.strategy, self.algorithm)
      logging.info("XLA %s (--xla=%s: %s); precision %s (--precision=%s: %s)",
                   "on" if self.xla else "off", config.xla, xla_reason, self.precision,
                   config.precision, precision_reason)
      # Before any restore: a checkpoint holds the decayed learning rates.
      self.base_lr = {name: float(keras.ops.convert_to_numpy(opt.learning_rate))
                      for name, opt in self.algorithm.optimizers.items()}
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                              aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.phases = self.algorithm.phases()
    for previous, phase in zip([None] + self.phases, self.phases):
      if phase.reuse_batch and (previous is None or not previous.needs_data
                                or previous.repeats != 1):
        raise ValueError(f"phase {phase.name!r} reuses the batch of the phase before it, "
                         "which must read data once per step")
    self._build_input()
    self._build_checkpoint()
    self._build_loop()
    self._build_evaluation()

  # -- input -----------------------------------------------------------------

  def _build_input(self):
    c = self.config
    requirements = reader.Requirements(**self.algorithm.data_requirements())
    reader_config = reader.ReaderConfig(
        self.data_dir, split="train",
        shuffle_buffer=c.shuffle_buffer or _auto_shuffle_buffer(self.manifest),
        random_flip=c.random_flip, seed=c.seed, deterministic=c.deterministic,
        skip_corrupt=c.skip_corrupt, normalize=False)  # Normalized on the device.
    # One input pipeline per worker, reading its own shard files.
    self.dataset_fn = reader.make_dataset_fn(reader_config, self.global_batch, requirements)
    ctx = tf.distribute.InputContext(num_input_pipelines=self.num_workers,
                                     input_pipeline_id=self.worker_index,
                                     num_replicas_in_sync=self.strategy.num_replicas_in_sync)
    if self.num_workers > 1:
      logging.info("Worker %d of %d: input pipeline %d of %d, %d local replica(s)",
                   self.worker_index, self.num_workers, ctx.input_pipeline_id,
                   ctx.num_input_pipelines, self.num_local)
    self.dataset = self.dataset_fn(ctx)
    self.iterator = iter(self.dataset)

  def _next_batch(self):
    """One per-replica batch for each local replica, as a distributed value."""
    parts = [next(self.iterator) for _ in range(self.num_local)]
    num_local = self.num_local
    return self.strategy.experimental_distribute_values_from_function(
        lambda ctx: parts[ctx.replica_id_in_sync_group % num_local])

  # -- checkpoints -----------------------------------------------------------

  def _build_checkpoint(self):
    """The chief's checkpoint, and with several workers each worker's input position.

    With one input pipeline its position (the iterator) is part of the one
    checkpoint. With several, every worker reads other files, and the chief's
    checkpoint can hold only its own position; so each worker saves its
    iterator in `checkpoints/input-worker<i>-of-<n>/`, and the chief's
    checkpoint holds none.
    """
    c = self.config
    items = dict(step=self.step, **trackable_items(self.algorithm.checkpoint_items()))
    own_input = {"iterator": self.iterator} if self.num_workers == 1 else {}
    self.checkpoint = tf.train.Checkpoint(**items, **own_input)
    self.checkpoint_dir = os.path.join(c.model_dir, CHECKPOINT_SUBDIR)
    directory = self.checkpoint_dir
    if not self.is_chief:  # TF's multi-worker pattern: others write to a temporary dir.
      directory = os.path.join(c.model_dir, f".worker{self.worker_index}_tmp")
      shutil.rmtree(directory, ignore_errors=True)  # Left by a worker killed while saving.
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                              max_to_keep=c.keep_checkpoints)
    self.input_manager = None
    if self.num_workers > 1:
      self.input_checkpoint = tf.train.Checkpoint(iterator=self.iterator)
      self.input_manager = tf.train.CheckpointManager(
          self.input_checkpoint,
          os.path.join(self.checkpoint_dir,
                       f"input-worker{self.worker_index}-of-{self.num_workers}"),
          max_to_keep=c.keep_checkpoints)
    latest = tf.train.latest_checkpoint(self.checkpoint_dir)
    self._saved_step = None  # The step of the newest checkpoint, once one exists.
    if latest:
      self._restore(latest, items)
      self._saved_step = int(self.step.numpy())
      logging.info("Resumed from %s at step %d", latest, self._saved_step)

  def _restore(self, latest, items):
    """Restores the chief's checkpoint `latest`, then this worker's input position."""
    one_input = any(name.startswith("iterator/") for name, _ in tf.train.list_variables(latest))
    if self.num_workers == 1 and one_input:
      self.checkpoint.restore(latest).assert_consumed()
      return
    status = tf.train.Checkpoint(**items).restore(latest)
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

  def _save(self):
    """Saves this step unless it is saved already; returns the chief's path.

    Every worker saves (TensorFlow's multi-worker pattern), the non-chief
    ones into their temporary directory, removed at once; with several
    workers each also saves its input position, kept.
    """
    step = int(self.step.numpy())
    if self._saved_step != step:
      if self.input_manager is not None:
        self.input_manager.save(checkpoint_number=step)
        # Every worker's input position is on disk before the chief's
        # checkpoint, which is what a restart resumes from, exists.
        self.sync_workers()
      self.manager.save(checkpoint_number=step)
      if not self.is_chief:
        shutil.rmtree(self.manager.directory, ignore_errors=True)
      self._saved_step = step
    return os.path.join(self.checkpoint_dir, f"ckpt-{step}")

  # -- evaluation (--eval_every, --keep_best) --------------------------------

  def _build_evaluation(self):
    """On the chief: the evaluator (real statistics first, so that a missing
    feature network fails now, not after hours) and the best-checkpoint keeper."""
    c = self.config
    self.evaluator = self.best = None
    self.last_evaluation = None
    if not c.eval_every or not self.is_chief:
      return
    from training import best as best_lib  # pylint: disable=import-outside-toplevel
    from training import evaluate  # pylint: disable=import-outside-toplevel
    self.evaluator = evaluate.DuringTraining(
        c, self.data_dir, self.manifest, isinstance(self.algorithm, translation.Translation))
    if c.keep_best:
      self.best = best_lib.BestKeeper(self.checkpoint_dir, c.keep_best, self.evaluator.key)
    # Lines past the checkpoint resumed from were evaluated by a run that
    # crashed before saving again; they are evaluated again below.
    path = os.path.join(c.model_dir, EVAL_LOG_NAME)
    if os.path.isfile(path):
      step = int(self.step.numpy())
      with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
      kept = []
      for line in lines:
        try:
          if json.loads(line)["step"] <= step:
            kept.append(line)
        except (ValueError, KeyError):  # A line torn by a crash.
          pass
      if len(kept) != len(lines):
        manifest_lib.write_text_atomic(path, "".join(kept))

  def _evaluate(self, writer, checkpoint):
    """The chief's evaluation at this step: TensorBoard `eval/*`, a line of
    eval.jsonl, the console, and the best checkpoint."""
    c = self.config
    step = int(self.step.numpy())
    start = time.time()
    out = self.evaluator.evaluate(self.algorithm, step)
    seconds = time.time() - start
    values = {k: float(v) for k, v in out["metrics"].items()}
    with writer.as_default():
      for k, v in values.items():
        tf.summary.scalar(f"eval/{k}", v, step=step)
    writer.flush()
    with open(os.path.join(c.model_dir, EVAL_LOG_NAME), "a", encoding="utf-8") as f:
      f.write(json.dumps({"step": step, "metrics": values, "seconds": round(seconds, 1)}) + "\n")
      f.flush()
      os.fsync(f.fileno())
    manifest_lib.write_json_atomic(os.path.join(c.model_dir, EVAL_PROTOCOL_NAME),
                                   out["protocol"])
    logging.info("eval step %d | %s | %.1f s", step,
                 " ".join(f"{k} {v:.4g}" for k, v in values.items()), seconds)
    if self.best is not None:
      self.best.consider(step, values, checkpoint)
    self.last_evaluation = values

  # -- the compiled loop -----------------------------------------------------

  def _replica_update(self, phase_index, batch, step, repeat):
    """One update of one phase on one replica; returns its reduced metrics."""
    phase = self.phases[phase_index]
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = randomness.fold(tf.constant([self.config.seed, 0], tf.int64), step, phase_index,
                           repeat)
    self.algorithm.before_update(phase)  # Assigns (power iterations): not compiled.
    grads, metrics, state_rows = self._gradient_fns[phase_index](
        batch, seed, replica_id * self.per_replica)
    # Keras 3 sums the gradients over replicas inside apply_gradients (and,
    # under mixed_float16, unscales them and skips the step on every replica
    # if any replica's are non-finite: training/loss_scale.py).
    self.algorithm.optimizers[phase.name].apply_gradients(
        zip(grads, self.algorithm.variables(phase)))
    if state_rows:
      # Per-example state (e.g. CycleGAN's image pools): every replica computed
      # the rows of its own examples; gather them in replica order (the order
      # of the global batch) so that every copy holds the whole state.
      ctx = tf.distribute.get_replica_context()
      for name, rows in state_rows.items():
        self.algorithm.example_state[name].assign(ctx.all_gather(rows, axis=0))
    return metrics

  def _make_gradient_fn(self, phase_index):
    """The per-replica forward and backward pass of one phase.

    Returns (gradients, reduced metrics, per-example state rows). Under
    `--xla` this is what XLA compiles: everything but the collectives (the
    all-reduce inside apply_gradients, the state gather), which XLA cannot
    compile on CPU and which stay outside on every device (see
    ../shared/notes/tf-distribute-facts.md; pinned in tests/test_tf_facts.py).
    """
    phase = self.phases[phase_index]
    optimizer = self.algorithm.optimizers[phase.name]
    scaled = isinstance(optimizer, loss_scale.LossScaleOptimizer)

    def gradients(batch, seed, offset):
      rand = randomness.StepRandomness(
          seed, self.global_batch, offset, self.per_replica,
          loss_scale=tf.convert_to_tensor(optimizer.dynamic_scale) if scaled else None)
      if batch is not None:
        batch = reader.normalize_batch(batch)  # uint8 -> [-1, 1] on this replica's device.
      variables = self.algorithm.variables(phase)
      with tf.GradientTape() as tape:
        per_example, metrics, *state_rows = self.algorithm.loss(phase, batch, rand)
        # THE reduction: this replica's sum over the global batch size.
        loss = tf.nn.compute_average_loss(tf.cast(per_example, tf.float32),
                                          global_batch_size=self.global_batch)
        if scaled:
          loss = optimizer.scale_loss(loss)
      grads = tape.gradient(loss, variables)
      metrics = {k: tf.nn.compute_average_loss(tf.cast(v, tf.float32),
                                               global_batch_size=self.global_batch)
                 for k, v in metrics.items()}
      return grads, metrics, (state_rows[0] if state_rows else {})

    return tf.function(gradients, jit_compile=True) if self.xla else gradients

  def _build_loop(self):
    self._gradient_fns = [self._make_gradient_fn(i) for i in range(len(self.phases))]
    self.metric_sums = {m: tf.Variable(0.0, trainable=False) for p in self.phases
                        for m in p.metrics}
    self.phase_counts = {p.name: tf.Variable(0.0, trainable=False) for p in self.phases}
    strategy, phases = self.strategy, self.phases
    optimizers = self.algorithm.optimizers
    base_lr = self.base_lr
    decay = self.config.lr_decay_start is not None and self.config.lr_decay_start < 1.0

    def run_phase(i, phase, batch, repeat):
      out = strategy.run(self._replica_update, args=(i, batch, self.step, repeat))
      for name, value in out.items():
        self.metric_sums[name].assign_add(
            strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None))
      self.phase_counts[phase.name].assign_add(1.0)
      self.algorithm.after_update(phase)

    @tf.function
    def train_loop(num_steps):
      for _ in tf.range(num_steps):
        if decay:
          factor = lr_factor(self.step, self.config.train_steps, self.config.lr_decay_start)
          for name, opt in optimizers.items():
            opt.learning_rate = base_lr[name] * factor
        previous = None  # The batch of the phase before, for `Phase.reuse_batch`.
        for i, phase in enumerate(phases):
          if phase.repeats == 1:
            batch = (self._next_batch() if phase.needs_data
                     else previous if phase.reuse_batch else None)
            run_phase(i, phase, batch, 0)
            previous = batch
          else:
            for r in tf.range(phase.repeats):
              run_phase(i, phase, self._next_batch() if phase.needs_data else None, r)
            previous = None
        self.step.assign_add(1)

    self.train_loop = train_loop

    @tf.function
    def sync_workers():
      """A collective every worker must reach: after it, every worker is past
      whatever it did before (the chief's checkpoint write, say)."""
      return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, tf.constant(1.0)))

    self.sync_workers = sync_workers

    self.preview_fn = tf.function(
        lambda inputs: tf.cast(self.algorithm.preview(inputs), tf.float32))
    self._preview_inputs = None

  def _read_metrics(self):
    out = {}
    for phase in self.phases:
      n = float(self.phase_counts[phase.name].numpy())
      for m in phase.metrics:
        out[m] = float(self.metric_sums[m].numpy()) / max(n, 1.0)
    for v in list(self.metric_sums.values()) + list(self.phase_counts.values()):
      v.assign(0.0)
    return out

  # -- samples ---------------------------------------------------------------

  def _preview_examples(self, n):
    """The first n examples of the algorithm's preview split, normalized."""
    split = self.algorithm.preview_split
    if split not in self.manifest["splits"] and split + "A" not in self.manifest["splits"]:
      split = "train"
    ds = reader.make_dataset(reader.ReaderConfig(self.data_dir, split=split, repeat=False,
                                                 drop_remainder=False), n)
    return {k: v.numpy() for k, v in next(iter(ds)).items() if k != "key"}

  def write_samples(self, writer):
    c = self.config
    if self._preview_inputs is None:  # Fixed for the whole run.
      n = max(c.num_samples, 1000) if self.data.kind == "vector" else c.num_samples
      examples = self._preview_examples(n) if self.algorithm.preview_split else None
      self._preview_inputs = self.algorithm.preview_inputs(n, c.seed, examples)
    out = self.preview_fn(self._preview_inputs).numpy()
    step = int(self.step.numpy())
    if self.data.kind == "vector":
      picture = samples_lib.scatter(out, reference=self._reference_points())
    else:
      picture = samples_lib.image_grid(out, columns=self.algorithm.preview_columns(len(out)))
    directory = os.path.join(c.model_dir, SAMPLES_SUBDIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"step_{step:07d}.png")
    samples_lib.save_png(path, picture)
    with writer.as_default():
      tf.summary.image("samples", picture[None], step=step)
    return path

  def _reference_points(self):
    centers = self.manifest.get("builtin", {}).get("centers")
    return np.asarray(centers) if centers else None

  # -- the host loop ---------------------------------------------------------

  def train(self):
    c = self.config
    step = int(self.step.numpy())
    if step >= c.train_steps:
      logging.info("Already trained %d of %d steps; nothing to do", step, c.train_steps)
      return TrainResult(c, c.model_dir, step, self.algorithm, self.strategy, {},
                         tf.train.latest_checkpoint(self.checkpoint_dir), self.xla,
                         self.precision)
    writer = (tf.summary.create_file_writer(os.path.join(c.model_dir, TENSORBOARD_SUBDIR))
              if self.is_chief else tf.summary.create_noop_writer())
    try:
      with _SigtermFlag() as sigterm:
        metrics = self._host_loop(writer, sigterm)
    except strategy_lib.PEER_LOST_ERRORS as e:
      if self.num_workers == 1:
        raise
      raise TrainingError(self._peer_lost_message(e)) from None
    finally:
      writer.flush()
    return TrainResult(c, c.model_dir, int(self.step.numpy()), self.algorithm, self.strategy,
                       metrics, os.path.join(self.checkpoint_dir, f"ckpt-{self._saved_step}"),
                       self.xla, self.precision, self.last_evaluation)

  def _peer_lost_message(self, error):
    resolver = self.strategy.cluster_resolver
    peers = strategy_lib.lost_peers(error, resolver.cluster_spec().as_dict(),
                                    resolver.task_type, resolver.task_id)
    lines = [line.strip() for line in (error.message or "").splitlines()]
    # The line that says what happened, e.g. "... tasks are unhealthy (stopped
    # sending heartbeats):" or "... Connection reset by peer".
    cause = next((line for line in lines if re.search(
        r"unhealthy|aborted by|reset by peer|unavailable|heartbeat", line, re.I)),
                 next((line for line in lines if line), type(error).__name__))
    last = tf.train.latest_checkpoint(self.checkpoint_dir)
    return (f"lost a peer worker ({', '.join(peers) or 'not named'}) near step "
            f"{int(self.step.numpy())}: {type(error).__name__}: {cause} The job cannot go "
            "on without it: stop every worker, then re-run the same command on all of them "
            f"to resume from the last checkpoint ({last or 'none yet: from step 0'}), losing "
            f"at most --checkpoint_every={self.config.checkpoint_every} steps")

  def _host_loop(self, writer, sigterm):
    """Calls the compiled loop until train_steps; returns the last metrics."""
    c = self.config
    step = int(self.step.numpy())
    preemption = self._preemption_handler(sigterm)
    real_per_step = self.global_batch * sum(p.repeats for p in self.phases if p.needs_data)
    metrics = {}
    interval_start, interval_steps = time.time(), 0
    run_start, run_start_step = time.time(), step
    while step < c.train_steps:
      boundaries = [c.train_steps, (step // c.log_every + 1) * c.log_every,
                    (step // c.sample_every + 1) * c.sample_every,
                    (step // c.checkpoint_every + 1) * c.checkpoint_every]
      if c.eval_every:
        boundaries.append((step // c.eval_every + 1) * c.eval_every)
      n = min(c.steps_per_loop, min(boundaries) - step)
      self.train_loop(tf.constant(n, tf.int64))
      step = int(self.step.numpy())
      interval_steps += n
      done = step >= c.train_steps
      # Checked after every call, so that no checkpoint ever holds diverged weights.
      sums = {k: float(v.numpy()) for k, v in self.metric_sums.items()}
      bad = sorted(k for k, v in sums.items() if not math.isfinite(v))
      if bad:
        raise TrainingError(
            f"non-finite {', '.join(bad)} between steps {step - n} and {step}; stopped "
            "without saving. The last good checkpoint is "
            f"{tf.train.latest_checkpoint(self.checkpoint_dir) or 'none'}. Lower the "
            "learning rates (--lr_g, --lr_d) or check the data")
      if step % c.log_every == 0 or done:
        metrics = self._read_metrics()
        elapsed = time.time() - interval_start
        steps_per_sec = interval_steps / max(elapsed, 1e-9)
        metrics["steps_per_sec"] = steps_per_sec
        metrics["images_per_sec"] = steps_per_sec * real_per_step
        for name, opt in self.algorithm.optimizers.items():
          metrics[f"lr_{name}"] = float(keras.ops.convert_to_numpy(opt.learning_rate))
          if isinstance(opt, loss_scale.LossScaleOptimizer):
            metrics[f"loss_scale_{name}"] = float(opt.dynamic_scale.numpy())
            metrics[f"skipped_steps_{name}"] = float(opt.skipped_steps.numpy())
        with writer.as_default():
          for k, v in metrics.items():
            tf.summary.scalar(k, v, step=step)
        total_rate = (step - run_start_step) / max(time.time() - run_start, 1e-9)
        eta = (c.train_steps - step) / max(total_rate, 1e-9)
        logging.info("step %d/%d | %s | %.0f img/s | ETA %s", step, c.train_steps,
                     " ".join(f"{k} {v:.4g}" for k, v in metrics.items()
                              if not k.startswith(("lr_", "steps_", "images_"))),
                     metrics["images_per_sec"], _duration(eta))
        interval_start, interval_steps = time.time(), 0
      if self.is_chief and (step % c.sample_every == 0 or done):
        path = self.write_samples(writer)
        logging.info("Wrote samples %s", path)
      if step % c.checkpoint_every == 0 or done:
        logging.info("Saved checkpoint %s", self._save())
      if c.eval_every and (step % c.eval_every == 0 or done):
        # --keep_best copies the checkpoint of this step: every worker saves it.
        checkpoint = self._save() if c.keep_best else None
        if self.evaluator is not None:
          self._evaluate(writer, checkpoint)
      if not done:  # A SIGTERM during the last call: the run is complete anyway.
        self._maybe_preempt(sigterm, preemption)
    return metrics

  # -- preemption ------------------------------------------------------------

  def _preemption_handler(self, sigterm):
    """TensorFlow's PreemptionCheckpointHandler under MultiWorkerMirroredStrategy.

    The signal is `sigterm` (polled by the handler every second); the
    checkpoint is saved by `_save`, i.e. by our CheckpointManager, so it is
    the same checkpoint as the periodic ones. The handler counts its calls
    (one per host-loop boundary on every worker) to agree on the boundary to
    save at; it would add that count to the checkpoint it is given, so it is
    given a CheckpointManager of its own that never writes (`save_fn` does):
    every process counts from 0, and all workers restart together.

    Returns:
      The handler, or None for the other strategies.
    """
    if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return None
    self._agreed_preemption = False

    def on_saved():  # `exit_fn`: the host loop raises Preempted after the handler returns.
      self._agreed_preemption = True

    counter_only = tf.train.CheckpointManager(
        tf.train.Checkpoint(), os.path.join(self.config.model_dir, ".preemption_counter"),
        max_to_keep=1)
    config = tf.distribute.experimental.TerminationConfig(
        termination_watcher_fn=sigterm.event.is_set, exit_fn=on_saved, grace_period=0,
        save_fn=self._save)
    return tf.distribute.experimental.PreemptionCheckpointHandler(
        self.strategy.cluster_resolver, counter_only, termination_config=config)

  def _maybe_preempt(self, sigterm, preemption):
    """At a host-loop boundary: on SIGTERM, save and raise `Preempted`."""
    if preemption is None:
      if not sigterm.event.is_set():
        return
      checkpoint = self._save()
    else:
      preemption.save_checkpoint_if_preempted()  # Saves through `_save` when agreed.
      if not self._agreed_preemption:
        return
      # Every worker has saved; none exits before the chief's checkpoint is
      # written (a launcher may kill the rest when the first one exits).
      self.sync_workers()
      checkpoint = os.path.join(self.checkpoint_dir, f"ckpt-{self._saved_step}")
    logging.warning("Preempted: saved checkpoint %s", checkpoint)
    raise Preempted(self._saved_step, checkpoint)


class _SigtermFlag:
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


# What `--xla=auto` picks per device type, and where each choice comes from.
XLA_AUTO = {
    "CPU": (False, "bench/train_step.py on a 2-core AVX-512 CPU, 2026-12-02: the compiled "
                   "step ran at 0.70-0.96x of the plain one (wgan_gp, sngan, dcgan at 28 and "
                   "32 px; bench/results/train_step-2026-12-02.md)"),
    "GPU": (True, "TensorFlow's GPU performance guide (XLA fuses the elementwise work of "
                  "conv nets); not measured on a GPU here (BUILD.md)"),
}


def use_xla(config, strategy, algorithm):
  """Whether to XLA-compile the per-replica gradients: (bool, reason).

  Never where the algorithm uses an op XLA cannot compile
  (`Algorithm.xla_unsupported`), nor with several replicas and batch norm: synchronized batch norm
  all-reduces inside the forward pass, which XLA cannot compile on CPU and
  which is not proven on GPUs (../shared/notes/tf-distribute-facts.md); then
  `--xla=on` is refused and `auto` is off. Otherwise `--xla=auto` takes
  `XLA_AUTO` for the strategy's device type, except under `--deterministic`
  (XLA makes no bit-reproducibility promise; Keras turns its own automatic
  XLA off there too).

  Raises:
    ValueError: `--xla=on` where it cannot work.
  """
  unsupported = algorithm.xla_unsupported()
  if unsupported:
    if config.xla == "on":
      raise ValueError(f"--xla=on cannot work here: {unsupported}")
    return False, unsupported
  norms = [layer.path for model in algorithm.checkpoint_items().values()
           if isinstance(model, keras.Model)
           for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
           if isinstance(layer, keras.layers.BatchNormalization)]
  if norms and strategy.num_replicas_in_sync > 1:
    reason = (f"{strategy.num_replicas_in_sync} replicas and synchronized batch norm "
              f"({norms[0]}...), whose all-reduce XLA cannot compile")
    if config.xla == "on":
      raise ValueError(f"--xla=on cannot work here: {reason}; use --xla=auto or off, or one "
                       "replica")
    return False, reason
  if config.xla != "auto":
    return config.xla == "on", "set by the flag"
  if config.deterministic:
    return False, "auto, off under --deterministic"
  device = tf.DeviceSpec.from_string(strategy_lib.local_devices(strategy)[0]).device_type
  device = device or "CPU"
  on, reason = XLA_AUTO.get(device, (False, f"no measurement for {device} devices"))
  return on, f"auto on {device}: {reason}"


# `--precision=auto`: the CPU flags of native bfloat16 arithmetic (oneDNN's
# bfloat16 kernels; without them bfloat16 is emulated and slower than float32).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
PRECISION_AUTO_BFLOAT16 = (
    "bench/train_step.py on a 2-core AVX512_BF16 CPU, 2026-12-02: the trainer ran "
    "1.09-1.40x faster in mixed_bfloat16 than in float32 (wgan_gp, sngan, dcgan at 28 and "
    "32 px; bench/results/train_step-2026-12-02.md); samples checked in "
    "bench/results/quality-2026-12-03.md")


def cpu_flags(path="/proc/cpuinfo"):
  """The CPU's feature flags (Linux's /proc/cpuinfo), or an empty set."""
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          return frozenset(line.partition(":")[2].split())
  except OSError:
    pass
  return frozenset()


def use_precision(config, strategy, algorithm, num_workers=1, flags=None):
  """The Keras dtype policy to build the networks with: (policy, reason).

  `--precision=auto` is mixed_bfloat16 only where it was measured faster and
  its samples checked: one worker, CPU replicas on a CPU with native bfloat16
  (`BFLOAT16_CPU_FLAGS`), networks whose `Algorithm.bfloat16_checked`, and no
  `--deterministic` (a reproducible run must not depend on the machine's
  CPU flags). Everywhere else, GPUs included (not measured here; BUILD.md),
  it is float32. `flags`: the CPU flags (default `cpu_flags()`).
  """
  if config.precision != "auto":
    return config.precision, "set by the flag"
  if config.deterministic:
    return "float32", "auto, float32 under --deterministic"
  device = tf.DeviceSpec.from_string(strategy_lib.local_devices(strategy)[0]).device_type
  device = device or "CPU"
  if device != "CPU":
    return "float32", (f"auto on {device}: bfloat16 not measured on a {device} here; "
                       "--precision=mixed_bfloat16 on A100/H100 (BUILD.md)")
  if num_workers > 1:
    return "float32", "auto with several workers: their CPUs may differ"
  if not algorithm.bfloat16_checked():
    return "float32", "auto on CPU: bfloat16 checked only for the convolutional networks"
  flags = cpu_flags() if flags is None else flags
  if not flags & set(BFLOAT16_CPU_FLAGS):
    return "float32", "auto on CPU: no native bfloat16 (avx512_bf16 or amx_bf16)"
  return "mixed_bfloat16", f"auto on a CPU with native bfloat16: {PRECISION_AUTO_BFLOAT16}"


def lr_factor(step, train_steps, decay_start):
  """The learning-rate multiplier for generator step `step` (0-based): 1 until
  `decay_start * train_steps`, then linear decay reaching 1/(decay steps) at the
  last step (CycleGAN's schedule). `train_steps` may change on resume; the
  schedule follows the new value."""
  start = decay_start * train_steps
  step = tf.cast(step, tf.float32)
  return tf.minimum(1.0, (train_steps - step) / max(train_steps - start, 1.0))


def trackable_items(items):
  """Checkpoint items with every Keras model replaced by {variable path: variable}.

  Keras 3 models do not expose layers held in Python lists to
  tf.train.Checkpoint: their trainable weights are saved only through the
  optimizer, and their non-trainable ones (batch-norm statistics, spectral-norm
  vectors, the whole EMA generator) not at all. Saving every model's weights
  by path makes the checkpoint complete and independent of Keras tracking.
  """
  out = {}
  for name, obj in items.items():
    if isinstance(obj, keras.Model):
      weights = {v.path.replace("/", "."): v for v in obj.weights}
      if len(weights) != len(obj.weights):
        raise ValueError(f"model {name!r} has weights with duplicate paths; name its layers")
      out[name] = weights
    else:
      out[name] = obj
  return out


def _duration(seconds):
  seconds = int(seconds)
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  if seconds >= 60:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds}s"


def run(config):
  """Trains (or resumes) according to `config`; returns a `TrainResult`.

  Raises:
    ValueError: bad flags (unknown algorithm or strategy, batch not divisible
      by the replicas, data that does not fit the model).
    TrainingError: non-finite losses, a model_dir holding another run, a
      multi-worker cluster that did not form or lost a worker.
    Preempted: a TrainingError: SIGTERM, and a checkpoint saved.
  """
  return _Trainer(config).train()
