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
Each fetch takes one per-replica batch per local replica, copied onto its
replica's device one fetch ahead (training/device_feed.py), and hands them
out with `experimental_distribute_values_from_function`. So replica r of a
one-worker job gets the r-th consecutive slice of the global batch, the same
examples a single replica would see in its batch of B.

Randomness: every draw is a function of (seed, step, phase, repeat, global
example index) (`training/randomness.py`), so N replicas draw what one
replica would, and a resumed run draws what the uninterrupted run would.

Failures, all at host-loop boundaries (every `steps_per_loop` steps at most):
- SIGTERM (preemption) saves a checkpoint at a boundary and raises
  `Preempted` (training/preemption.py).
- A lost peer (`multi_worker`): the collectives fail
  (`cluster.PEER_LOST_ERRORS`) and `TrainingError` says how to resume.

Around it: the run directory (training/run_dir.py), checkpoints
(training/checkpointing.py), XLA and precision (training/precision.py). The
evaluation during training is handed in by the caller (`run(config,
evaluator_factory)`), so the trainer imports no evaluation code.
"""

import contextlib
import dataclasses
import math
import os
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

import algorithms
from distribute import cluster as cluster_lib
from distribute import strategy as strategy_lib
from input import cache
from input import manifest as manifest_lib
from input import reader
from training import checkpointing
from training import config as config_lib
from training import data as data_lib
from training import device_feed
from training import precision as precision_lib
from training import preemption
from training import randomness
from training import run_dir
from training import samples as samples_lib
from training.errors import TrainingError


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


class _Trainer:
  """Holds the pieces of one run; `run()` below is the public entry point."""

  def __init__(self, config, evaluator_factory=None, exit_stack=None):
    """`exit_stack`: holds the run's train.log open (none without one)."""
    config.validate()
    algorithms.check_settings(config)  # Before resolve fills in the algorithm's defaults.
    algo_cls = algorithms.get(config.algo)
    spec = config.data or algo_cls.default_data
    cache.refuse_medical(spec)  # Before a multi_worker strategy waits for its cluster.
    try:
      self.strategy = strategy_lib.get_strategy(config.strategy, config.cpu_replicas,
                                                config.cluster_timeout, config.cluster_workers,
                                                config.task_index)
    except cluster_lib.ClusterError as e:
      raise TrainingError(str(e)) from None
    self.num_workers, self.worker_index, self.is_chief = strategy_lib.worker_info(
        self.strategy)
    data_dir = cache.resolve(spec, cache_dir=config.data_cache, image_size=config.image_size)
    self.manifest = manifest_lib.load(data_dir)
    self.data_dir = data_dir
    self.data = data_lib.describe(self.manifest, spec)
    replicas = self.strategy.num_replicas_in_sync
    if config.per_replica_batch_size:  # The global batch follows the replicas.
      config = dataclasses.replace(
          config, global_batch_size=config.per_replica_batch_size * replicas)
    config = algo_cls.resolve(dataclasses.replace(config, data=spec), self.data)
    if config.model_dir is None:
      config = dataclasses.replace(config, model_dir=os.path.join(
          "runs", f"{config.algo}-{self.data.name}"))
    self.config = config
    if config.global_batch_size % replicas:
      raise ValueError(f"--global_batch_size={config.global_batch_size} does not divide by "
                       f"the {replicas} replicas; use a multiple of {replicas}")
    self.global_batch = config.global_batch_size
    self.per_replica = self.global_batch // replicas
    self.num_local = len(strategy_lib.local_devices(self.strategy))
    run_dir.prepare(config, self.is_chief)
    if self.is_chief:
      run_dir.write_data_info(config.model_dir, self.data)
      if exit_stack is not None:
        exit_stack.enter_context(run_dir.LogFile(config.model_dir))
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
      self.precision, precision_reason = precision_lib.use_precision(
          config.precision, config.deterministic, self.strategy, self.algorithm,
          self.num_workers)
      precision_lib.build_in_policy(self.algorithm, self.precision)
      self.xla, xla_reason = precision_lib.use_xla(config.xla, config.deterministic,
                                                   self.strategy, self.algorithm)
      # One short line on the console; the reasons at -v 1 and in train.log.
      logging.info("XLA %s (--xla=%s), precision %s (--precision=%s)",
                   "on" if self.xla else "off", config.xla, self.precision, config.precision)
      logging.debug("Why: XLA: %s. Precision: %s.", xla_reason, precision_reason)
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
    self._build_loop()
    self.checkpointer = checkpointing.Checkpointer(
        config.model_dir,
        dict(step=self.step, **run_dir.trackable_items(self.algorithm.checkpoint_items())),
        self.iterator, lambda: iter(self.dataset), self.num_workers, self.worker_index,
        self.is_chief, self.per_replica, self.num_local, config.keep_checkpoints,
        self.sync_workers)
    self.checkpointer.restore_latest()
    # On the chief: the evaluator (its real statistics first, so that a
    # missing feature network fails now, not after hours).
    self.evaluator = None
    self.last_evaluation = None
    if config.eval_every and self.is_chief:
      if evaluator_factory is None:
        raise ValueError("--eval_every needs an evaluator: pipeline.train passes "
                         "evaluation.during_training.DuringTraining")
      self.evaluator = evaluator_factory(config, self.algorithm, self.data_dir, self.manifest,
                                         self.checkpointer.directory, int(self.step.numpy()))

  # -- input -----------------------------------------------------------------

  def _build_input(self):
    c = self.config
    requirements = reader.Requirements(**self.algorithm.data_requirements())
    reader_config = reader.ReaderConfig(
        self.data_dir, split="train",
        shuffle_buffer=c.shuffle_buffer or data_lib.auto_shuffle_buffer(self.manifest),
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
    self.feed = device_feed.DeviceFeed(self.strategy, strategy_lib.local_devices(self.strategy),
                                       lambda: self.iterator, self.dataset.element_spec)

  # -- the compiled loop -----------------------------------------------------

  def _replica_update(self, phase_index, batch, step, repeat):
    """One update of one phase on one replica; returns its reduced metrics."""
    phase = self.phases[phase_index]
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    seed = randomness.fold(tf.constant([self.config.seed, 0], tf.int64), step, phase_index,
                           repeat)
    self.algorithm.before_update(phase)  # Assigns (power iterations): not compiled.
    grads, metrics, state_rows = self._gradient_fns[phase_index](
        batch, seed, replica_id * self.per_replica, step)
    # Keras 3 sums the gradients over replicas inside apply_gradients (and,
    # under mixed_float16, unscales them and skips the step on every replica
    # if any replica's are non-finite: training/precision.py).
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
    docs/tf-facts.md; pinned in tests/test_tf_facts.py).
    """
    phase = self.phases[phase_index]
    optimizer = self.algorithm.optimizers[phase.name]
    scaled = isinstance(optimizer, precision_lib.LossScaleOptimizer)

    def gradients(batch, seed, offset, step):
      rand = randomness.StepRandomness(
          seed, self.global_batch, offset, self.per_replica,
          loss_scale=tf.convert_to_tensor(optimizer.dynamic_scale) if scaled else None,
          step=step)
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
      reduced = {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                 for name, value in out.items()}
      for name, value in reduced.items():
        self.metric_sums[name].assign_add(value)
      self.phase_counts[phase.name].assign_add(1.0)
      self.algorithm.after_update(phase, self.step, reduced)

    data_phases = [i for i, p in enumerate(phases) if p.needs_data]
    last_fetch_phase = data_phases[-1] if data_phases else None
    feed = self.feed

    def one_step(pending, last_step):
      """One generator step: every phase, n-critic repeats included (traced).

      `pending`: the fetched batch this step reads first (device_feed.py);
      returns the one after this step's last. `last_step`: whether this is the
      last step of the call, whose last fetch is skipped."""
      if decay:
        factor = lr_factor(self.step, self.config.train_steps, self.config.lr_decay_start)
        for name, opt in optimizers.items():
          opt.learning_rate = base_lr[name] * factor
      previous = None  # The batch of the phase before, for `Phase.reuse_batch`.
      for i, phase in enumerate(phases):
        last_phase = i == last_fetch_phase
        if phase.repeats == 1:
          batch = previous if phase.reuse_batch else None
          if phase.needs_data:
            batch = feed.distribute(pending)
            pending = feed.advance(last_step if last_phase else False)
          run_phase(i, phase, batch, 0)
          previous = batch
        else:
          for r in tf.range(phase.repeats):
            if phase.needs_data:
              current = pending
              pending = feed.advance(
                  tf.logical_and(last_step, r + 1 == phase.repeats) if last_phase else False)
              run_phase(i, phase, feed.distribute(current), r)
            else:
              run_phase(i, phase, None, r)
          previous = None
      self.step.assign_add(1)
      return pending

    # The loop is built from `one_step`, traced inside whatever tf.function
    # calls it; `train_loop` is the one the host loop calls (bench/steps_per_loop.py
    # groups `one_step` other ways to measure the choice).
    self.one_step = one_step

    @tf.function
    def train_loop(num_steps):
      """`num_steps` generator steps (`self.one_step`) in one call: the batch
      is fetched one step ahead, and the last step fetches none."""
      pending = feed.fetch() if data_phases else ()
      for i in tf.range(num_steps):
        pending = self.one_step(pending, i + 1 == num_steps)

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
    directory = os.path.join(c.model_dir, run_dir.SAMPLES_SUBDIR)
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
                         self.checkpointer.latest(), self.xla, self.precision)
    writer = (tf.summary.create_file_writer(os.path.join(c.model_dir, run_dir.TENSORBOARD_SUBDIR))
              if self.is_chief else tf.summary.create_noop_writer())
    try:
      with preemption.SigtermFlag() as sigterm:
        metrics = self._host_loop(writer, sigterm)
    except cluster_lib.PEER_LOST_ERRORS as e:
      if self.num_workers == 1:
        raise
      raise TrainingError(cluster_lib.peer_lost_message(
          e, self.strategy.cluster_resolver, int(self.step.numpy()), self.checkpointer.latest(),
          self.config.checkpoint_every)) from None
    finally:
      writer.flush()
    return TrainResult(c, c.model_dir, int(self.step.numpy()), self.algorithm, self.strategy,
                       metrics, self.checkpointer.path(self.checkpointer.saved_step),
                       self.xla, self.precision, self.last_evaluation)

  def _host_loop(self, writer, sigterm):
    """Calls the compiled loop until train_steps; returns the last metrics."""
    c = self.config
    step = int(self.step.numpy())
    watcher = preemption.PreemptionWatcher(self.strategy, c.model_dir, sigterm,
                                           self.checkpointer)
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
            f"{self.checkpointer.latest() or 'none'}. Lower the "
            "learning rates (--lr_g, --lr_d) or check the data")
      if step % c.log_every == 0 or done:
        metrics = self._read_metrics()
        elapsed = time.time() - interval_start
        steps_per_sec = interval_steps / max(elapsed, 1e-9)
        metrics["steps_per_sec"] = steps_per_sec
        metrics["images_per_sec"] = steps_per_sec * real_per_step
        for name, opt in self.algorithm.optimizers.items():
          metrics[f"lr_{name}"] = float(keras.ops.convert_to_numpy(opt.learning_rate))
          if isinstance(opt, precision_lib.LossScaleOptimizer):
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
        logging.info("Saved checkpoint %s", self.checkpointer.save())
      if c.eval_every and (step % c.eval_every == 0 or done):
        # --keep_best copies the checkpoint of this step: every worker saves it.
        checkpoint = self.checkpointer.save() if c.keep_best else None
        if self.evaluator is not None:
          self.last_evaluation = self.evaluator(step, writer, checkpoint)
      if not done:  # A SIGTERM during the last call: the run is complete anyway.
        watcher.check()
    return metrics

def lr_factor(step, train_steps, decay_start):
  """The learning-rate multiplier for generator step `step` (0-based): 1 until
  `decay_start * train_steps`, then linear decay reaching 1/(decay steps) at the
  last step (CycleGAN's schedule). `train_steps` may change on resume; the
  schedule follows the new value."""
  start = decay_start * train_steps
  step = tf.cast(step, tf.float32)
  return tf.minimum(1.0, (train_steps - step) / max(train_steps - start, 1.0))


def _duration(seconds):
  seconds = int(seconds)
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  if seconds >= 60:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds}s"


def run(config, evaluator_factory=None):
  """Trains (or resumes) according to `config`; returns a `TrainResult`.

  Args:
    config: a `TrainConfig`.
    evaluator_factory: with `--eval_every`, called on the chief as
      `evaluator_factory(config, algorithm, data_dir, manifest, checkpoint_dir,
      step)` once the run is built and restored; it returns a callable
      `(step, writer, checkpoint) -> metrics`
      (`evaluation.during_training.DuringTraining`).

  Raises:
    ValueError: bad flags (unknown algorithm or strategy, batch not divisible
      by the replicas, data that does not fit the model).
    TrainingError: non-finite losses, a model_dir holding another run, a
      multi-worker cluster that did not form or lost a worker.
    Preempted: a TrainingError: SIGTERM, and a checkpoint saved.
  """
  with contextlib.ExitStack() as exit_stack:  # Closes the run's train.log.
    return _Trainer(config, evaluator_factory, exit_stack).train()
