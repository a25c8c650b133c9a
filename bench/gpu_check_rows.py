"""The rows of bench/gpu_check.py, each measured in a child process of it: the
correctness checks, one speed measurement, and the NCCL probe.

Every function returns a row: a dict with `status` (PASS or FAIL for a
correctness row), `measured`, `limit` and `notes`; a speed row adds its
figures. bench/gpu_check.py decides what runs where and writes the table.

Devices. The correctness rows run on two logical devices: the first GPU split
in two (`tf.config.set_logical_device_configuration`), or with `cpu=True` two
logical CPUs. One-replica runs use `one_device` (the first of the two), and
two-replica runs `mirrored` over both, through the one strategy factory
(`distribute/strategy.py`), which picks the all-reduce. TF32 is off there, so
that the tolerances measured in float32 on CPU (`training/equivalence.py`)
apply. The speed rows run on the whole first GPU.
"""

import math
import os
import shutil
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # pylint: disable=no-name-in-module

import algorithms
from bench import loops
from distribute import strategy as strategy_lib
from input import builtin
from input import cache
from training import config as config_lib
from training import equivalence
from training import precision as precision_lib
from training import trainer

# The correctness rows on two logical devices, in the order they run: the rows
# whose verdicts set defaults first (1: XLA_AUTO; 2: the float16
# recommendation and the loss scale; 4: what `auto` resolves to), then the
# replica claim. id -> what is checked.
CORRECTNESS = {
    "1a": "XLA on == off after 2 steps, against XLA off twice: wgan_gp (nested GP tape)",
    "1b": "XLA on == off after 2 steps, against XLA off twice: sngan",
    "1c": "XLA on == off after 2 steps, against XLA off twice: pix2pix --nojitter",
    "2a": "mixed_float16 follows float32: wgan_gp, 1 and 2 replicas",
    "2b": "loss scale: halves on inf, doubles after 2,000 finite steps",
    "2c": "inf on replica 1 only: the step is skipped on every replica",
    "4": "--xla=auto and --precision=auto resolve as BUILD.md says; the run trains",
    "3a": "2 replicas == 1 replica after 2 steps: sngan",
    "3b": "2 replicas == 1 replica after 2 steps: wgan_gp",
}

# The correctness rows over every whole GPU (two or more), as `--strategy=mirrored`
# runs there (NcclAllReduce). With --cpu_smoke they run on the two logical
# CPUs, so that their code is known to work before a GPU is lent.
WHOLE_GPUS = {
    "5a": "every whole GPU == 1 GPU after 2 steps: sngan (synchronized batch norm)",
    "5b": "inf on the last GPU only: the step is skipped on every GPU (all-reduced finite check)",
}

# XLA on is judged against the differences that XLA off shows between two runs
# of the same command, non-deterministic as the defaults run (cuDNN's atomics
# on a GPU): it passes at or below max(XLA_MAX_ABS_DIFF, XLA_NOISE_FACTOR x
# that floor). An XLA fault moves weights by the size of an update (1e-3 and
# more after 2 steps at these learning rates), far above either.
XLA_NOISE_FACTOR = 10.0

# Memory of each of the two logical GPUs of the correctness rows (MiB): the
# networks there are tiny, and a GPU of 8 GB holds both.
SPLIT_MEMORY_MIB = 2048

# What BUILD.md ("Speed on NVIDIA GPUs") says `--xla=auto` and
# `--precision=auto` give for one replica of sngan, by device type. On CPU the
# precision is mixed_bfloat16 with native bfloat16 (precision.BFLOAT16_CPU_FLAGS),
# else float32. A changed rule changes BUILD.md and this table together.
EXPECTED_AUTO = {"GPU": ("on", "float32"), "CPU": ("off", None)}

# BUILD.md: "the scale doubles after 2,000 finite steps"; it starts at 2^15.
DOCUMENTED_GROWTH_STEPS = 2000
INITIAL_SCALE = 2.0**15


def configure_devices(cpu, split, every_gpu=False):
  """Before TensorFlow initializes: the devices of this child process.

  Args:
    cpu: use CPU devices only (`--cpu_smoke`).
    split: two logical devices (the first GPU split in two, or two CPUs);
      otherwise the whole first GPU (or the CPU).
    every_gpu: every GPU, whole (the NCCL probe and the whole-GPU rows); on
      CPU, with `split`, the two logical CPUs stand in.
  """
  gpus = tf.config.list_physical_devices("GPU")
  if cpu:
    tf.config.set_visible_devices([], "GPU")
    if split:
      strategy_lib.configure_cpu_replicas(2)
  elif gpus and every_gpu:
    tf.config.set_visible_devices(gpus, "GPU")
  elif gpus:
    tf.config.set_visible_devices(gpus[0], "GPU")
    if split:
      tf.config.set_logical_device_configuration(
          gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=SPLIT_MEMORY_MIB)] * 2)
  if split or every_gpu:
    # TF32 rounds float32 matmuls and convolutions to 10 mantissa bits on
    # Ampere and later: the float32 tolerances would not apply.
    tf.config.experimental.enable_tensor_float_32_execution(False)


def num_devices(cpu):
  """The replicas a `mirrored` run of this child gets: its GPUs, or the 2 CPUs."""
  return 2 if cpu else len(tf.config.list_logical_devices("GPU"))


def judge_xla(diff, floor):
  """Row 1's verdict: max |dw| XLA on vs off (`diff`) against XLA off vs off
  (`floor`)."""
  limit = max(equivalence.XLA_MAX_ABS_DIFF, XLA_NOISE_FACTOR * floor)
  if not diff:
    margin = "identical"
  elif diff <= limit:
    margin = f"{limit / diff:.3g}x under the limit"
  else:
    margin = f"{diff / limit:.3g}x over the limit"
  return _row(diff <= limit,
              f"max |dw| {diff:.2g} (on vs off), noise floor {floor:.2g} (off vs off); {margin}",
              f"<= max({equivalence.XLA_MAX_ABS_DIFF:g}, {XLA_NOISE_FACTOR:g} x floor) "
              f"= {limit:.2g}")


def _row(ok, measured, limit, notes=""):
  return {"status": "PASS" if ok else "FAIL", "measured": measured, "limit": limit,
          "notes": notes}


class Correctness:
  """Runs the correctness rows; one instance per child process.

  Args:
    work_dir: where the runs' model directories go.
    data_cache: the converted-data cache (None: the trainer's default).
    cpu: CPU devices (`--cpu_smoke`).
  """

  def __init__(self, work_dir, data_cache, cpu):
    self.work_dir = work_dir
    self.data_cache = data_cache
    self.cpu = cpu
    self._data = {}
    self.rows = {"1a": lambda: self.xla("wgan_gp"), "1b": lambda: self.xla("sngan"),
                 "1c": lambda: self.xla("pix2pix"), "2a": self.mixed_float16,
                 "2b": self.loss_scale, "2c": lambda: self.inf_on_one_replica(2),
                 "3a": lambda: self.replicas("sngan", 2),
                 "3b": lambda: self.replicas("wgan_gp", 2), "4": self.auto,
                 # In the whole-GPU child: every device it sees.
                 "5a": lambda: self.replicas("sngan", num_devices(cpu)),
                 "5b": lambda: self.inf_on_one_replica(num_devices(cpu))}

  def _data_dir(self, source, image_size, examples):
    key = (source, image_size, examples)
    if key not in self._data:
      self._data[key] = cache.ensure_converted(source, cache_dir=self.data_cache,
                                               image_size=image_size, max_examples=examples)
    return self._data[key]

  def config(self, algo, name, replicas=1, **changes):
    """The settings of tests/test_train.py's and tests/test_translation.py's
    `tiny_config`, with which the tolerances were measured."""
    algo_cls = algorithms.get(algo)
    if algo_cls.inference == algorithms.TRANSLATION:
      settings = dict(data=self._data_dir(algo_cls.default_data, 32, 32), global_batch_size=2,
                      shuffle_buffer=16)
    else:  # 8 examples, or the least multiple of 8 that the replicas divide.
      settings = dict(data=self._data_dir("builtin:shapes", 16, 256),
                      global_batch_size=8 * replicas // math.gcd(8, replicas),
                      z_dim=8, num_samples=8, shuffle_buffer=64)
    if replicas == 1:
      settings.update(strategy="one_device")
    else:  # On GPU: the two logical GPUs (cpu_replicas is ignored there).
      settings.update(strategy="mirrored", cpu_replicas=replicas)
    settings.update(algo=algo, model_dir=os.path.join(self.work_dir, f"{algo}-{name}"),
                    base_channels=4, train_steps=2, log_every=1, sample_every=100,
                    checkpoint_every=100, deterministic=True)
    settings.update(changes)
    return config_lib.TrainConfig(**settings)

  def _one_replica_note(self):
    if self.cpu:
      return "1 replica: XLA cannot compile collectives on CPU (docs/tf-facts.md)"
    return "1 replica (one logical GPU); the all-reduce stays outside XLA as always; TF32 off"

  # -- 1. XLA ------------------------------------------------------------------

  def xla(self, algo):
    """XLA on against XLA off, judged against XLA off run twice. The three runs
    read the same batches in the same order (`--deterministic` fixes the
    reader's order, which differs between runs otherwise), and their ops are
    non-deterministic, as the defaults run: the floor is the ops' own noise
    (cuDNN's atomics on a GPU), not another data order."""
    # XLA has no kernel for pix2pix's random jitter (CropAndResize).
    extra = dict(jitter=False) if "jitter" in algorithms.get(algo).hyperparameters() else {}
    plain, again, compiled = (self._nondeterministic_ops(self.config(algo, name, xla=x, **extra))
                              for name, x in (("xla-off", "off"), ("xla-off-again", "off"),
                                              ("xla-on", "on")))
    if plain.xla or again.xla or not compiled.xla:
      raise RuntimeError(f"--xla=off ran {'with' if plain.xla or again.xla else 'without'} "
                         f"XLA, --xla=on {'with' if compiled.xla else 'without'}")
    w = equivalence.weights(plain)
    floor = equivalence.max_abs_diff(w, equivalence.weights(again))
    diff = equivalence.max_abs_diff(w, equivalence.weights(compiled))
    return dict(judge_xla(diff, floor),
                notes=self._one_replica_note() + "; same batches, non-deterministic ops")

  @staticmethod
  def _nondeterministic_ops(config):
    """Trains `config` (deterministic: the reader's order fixed) with op
    determinism turned off again before the loop is traced and run."""
    t = loops.built(config)
    tf_config.disable_op_determinism()  # No public twin of enable_op_determinism.
    return t.train()

  # -- 2. Mixed precision --------------------------------------------------------

  def mixed_float16(self):
    t = loops.built(self.config("wgan_gp", "f32", precision="float32"))
    w0 = equivalence.weights(t)
    f32 = equivalence.weights(t.train())
    moved = equivalence.norm_diff(f32, w0)
    shares, scales_ok, scales = [], True, []
    for replicas in (1, 2):
      r = trainer.run(self.config("wgan_gp", f"fp16-{replicas}", replicas,
                                  precision="mixed_float16"))
      shares.append(equivalence.norm_diff(equivalence.weights(r), f32) / moved)
      for n in ("d", "g"):
        scale, skipped = r.metrics[f"loss_scale_{n}"], r.metrics[f"skipped_steps_{n}"]
        scales_ok &= scale == INITIAL_SCALE / 2.0**skipped
        scales.append(f"{n} 2^{math.log2(scale):g}")
    limit = equivalence.MIXED_PRECISION_MAX_SHARE
    ok = max(shares) < limit and scales_ok
    return _row(ok, f"{shares[0]:.2%} (1 replica), {shares[1]:.2%} (2) of the movement",
                f"< {limit:.0%}",
                f"||w_fp16 - w_f32|| / ||w_f32 - w_0||; scales {', '.join(scales)} "
                f"{'=' if scales_ok else '!='} 2^15 / 2^skipped")

  def loss_scale(self):
    """The project's LossScaleOptimizer alone, on the two replicas: an inf
    gradient on replica 1 halves the scale and leaves the weight; the scale
    doubles after DOCUMENTED_GROWTH_STEPS finite steps."""
    strategy = strategy_lib.get_strategy("mirrored", cpu_replicas=2)
    with strategy.scope():
      v = keras.Variable(1.0, name="v")
      opt = precision_lib.LossScaleOptimizer(keras.optimizers.SGD(learning_rate=0.5))
      opt.build([v])

    @tf.function
    def steps(n, bad_replica):
      for _ in tf.range(n):
        def replica_fn():
          replica = tf.distribute.get_replica_context().replica_id_in_sync_group
          g = opt.scale_loss(tf.constant(1.0))
          opt.apply_gradients([(tf.where(tf.equal(replica, bad_replica), np.inf, g), v)])
        strategy.run(replica_fn)

    def scale():
      return float(opt.dynamic_scale.numpy())

    first = scale()
    steps(tf.constant(1), tf.constant(1))
    after_inf = scale()
    copies = [float(x.numpy()) for x in strategy.experimental_local_results(v.value)]
    steps(tf.constant(DOCUMENTED_GROWTH_STEPS - 1), tf.constant(-1))
    before_growth = scale()
    steps(tf.constant(1), tf.constant(-1))
    after_growth = scale()
    ok = (first == INITIAL_SCALE and after_inf == first / 2 and copies == [1.0, 1.0]
          and float(opt.skipped_steps.numpy()) == 1.0 and before_growth == after_inf
          and after_growth == 2 * after_inf)
    return _row(ok, f"2^{math.log2(first):g} -> 2^{math.log2(after_inf):g} on inf (weight "
                f"{copies}); 2^{math.log2(before_growth):g} after "
                f"{DOCUMENTED_GROWTH_STEPS - 1} finite, 2^{math.log2(after_growth):g} after "
                f"{DOCUMENTED_GROWTH_STEPS}",
                "halve, keep, double (BUILD.md)",
                f"training.precision.LossScaleOptimizer alone, 2 replicas, "
                f"{strategy_lib.cross_device_ops_name(strategy)}")

  def inf_on_one_replica(self, n):
    """As tests/test_speed_paths.py: a generator loss that is inf on the last
    of `n` replicas' examples only; the generator step is skipped on every
    replica."""
    t = loops.built(self.config("sngan", f"inf-{n}", n, train_steps=1, precision="mixed_float16"))
    if t.strategy.num_replicas_in_sync != n:
      raise RuntimeError(f"{t.strategy.num_replicas_in_sync} replicas, not {n}")
    algo, per_replica = t.algorithm, t.per_replica
    original = algo.loss

    def poisoned(phase, batch, rand):
      per_example, metrics = original(phase, batch, rand)
      if phase.name == "g":
        on_last = tf.fill(tf.shape(per_example), rand.offset >= (n - 1) * per_replica)
        per_example = per_example * tf.where(on_last, tf.constant(np.inf), 1.0)
      return per_example, metrics

    algo.loss = poisoned

    def copies():
      return equivalence.replica_copies(t.strategy, algo.generator.trainable_variables)

    before = copies()
    t.train()
    after = copies()
    changed = max(float(np.max(np.abs(a[i] - b[0]))) for b, a in zip(before, after)
                  for i in range(n))
    g, d = algo.optimizers["g"], algo.optimizers["d"]
    figures = {k: float(x.numpy()) for k, x in (
        ("g_scale", g.dynamic_scale), ("g_skipped", g.skipped_steps),
        ("d_scale", d.dynamic_scale), ("d_skipped", d.skipped_steps))}
    ok = (changed == 0.0 and figures["g_scale"] == INITIAL_SCALE / 2
          and figures["g_skipped"] == 1.0 and figures["d_skipped"] == 0.0
          and figures["d_scale"] == INITIAL_SCALE)
    return _row(ok, f"G weights moved {changed:g} on any of {n} replicas; G scale "
                f"2^{math.log2(figures['g_scale']):g}, skipped G {figures['g_skipped']:g} "
                f"D {figures['d_skipped']:g}",
                "0; 2^14; 1 and 0",
                f"sngan, mixed_float16, {strategy_lib.cross_device_ops_name(t.strategy)}")

  # -- 3 and 5. Replicas -----------------------------------------------------------

  def replicas(self, algo, n):
    """`n` replicas against 1 on the same global batch."""
    batch = self.config(algo, "batch", n).global_batch_size
    t = loops.built(self.config(algo, f"1-replica-for-{n}", global_batch_size=batch))
    w0 = equivalence.weights(t)
    one = t.train()
    many = trainer.run(self.config(algo, f"{n}-replicas", n))
    if many.strategy.num_replicas_in_sync != n:
      raise RuntimeError(f"{many.strategy.num_replicas_in_sync} replicas, not {n}")
    w1, wn = equivalence.weights(one), equivalence.weights(many)
    for key in ("d_loss", "g_loss"):
      w1[key], wn[key] = np.float64(one.metrics[key]), np.float64(many.metrics[key])
    rtol, atol = equivalence.REPLICAS_RTOL, equivalence.REPLICAS_ATOL
    worst = equivalence.closeness(wn, w1, rtol, atol)
    moved = sum(not np.allclose(w1[name], w0[name]) for name in w0)
    ok = worst <= 1.0 and moved > len(w0) // 3
    devices = ", ".join(d.split("device:")[-1] for d in many.strategy.extended.worker_devices)
    return _row(ok, f"worst |dw| / (atol + rtol |w|) = {worst:.2g}, max |dw| "
                f"{equivalence.max_abs_diff(wn, w1):.2g}; {moved}/{len(w0)} weights moved",
                f"<= 1 (rtol {rtol:g}, atol {atol:g})",
                f"{strategy_lib.cross_device_ops_name(many.strategy)} over {devices}; "
                f"global batch {batch}; weights and losses")

  # -- 4. auto -------------------------------------------------------------------

  def auto(self):
    t = loops.built(self.config("sngan", "auto", deterministic=False))
    w0 = equivalence.weights(t)
    result = t.train()
    device = tf.DeviceSpec.from_string(
        strategy_lib.local_devices(t.strategy)[0]).device_type or "CPU"
    want_xla, want_precision = EXPECTED_AUTO[device]
    if want_precision is None:
      native = precision_lib.cpu_flags() & set(precision_lib.BFLOAT16_CPU_FLAGS)
      want_precision = "mixed_bfloat16" if native else "float32"
    got_xla = "on" if result.xla else "off"
    moved = equivalence.norm_diff(equivalence.weights(result), w0)
    finite = all(math.isfinite(result.metrics[k]) for k in ("d_loss", "g_loss"))
    trained = result.step == t.config.train_steps and moved > 0 and finite
    ok = (got_xla, result.precision) == (want_xla, want_precision) and trained
    _, xla_reason = precision_lib.use_xla("auto", False, t.strategy, t.algorithm)
    return _row(ok, f"xla {got_xla}, {result.precision}; {result.step} steps, weights moved "
                f"{moved:.2g}, losses {'finite' if finite else 'NOT finite'}",
                f"xla {want_xla}, {want_precision} on {device}; trains",
                f"sngan, 1 replica; XLA: {xla_reason}")


# -----------------------------------------------------------------------------
# Speed (one row per child process).


def speed_row(spec, steps, warmup, data_cache, examples):
  """One speed row: `spec` is a dict (loop, algo, size, batch, overrides,
  stall, width) from bench/gpu_check.py; returns the row with its figures."""
  data = cache.ensure_converted("builtin:shapes", cache_dir=data_cache,
                                image_size=spec["size"], max_examples=examples)
  run = loops.LoopRun(algo=spec["algo"], data=data, batch_size=spec["batch"], steps=steps,
                      warmup=warmup, base_channels=spec.get("width"))
  overrides = spec.get("overrides", {})
  if spec["loop"] in ("eager", "tf_function"):
    figures = loops.run_hand_written(run, compiled=spec["loop"] == "tf_function")
    figures["note"] += "; float32"
  elif spec.get("stall"):
    figures = _input_stall(run, overrides)
  else:
    figures = loops.run_trainer(run, overrides)
  images = figures["steps_per_sec"] * figures["real_per_step"]
  out = {"status": "ok", "images_per_sec": images, "steps_per_sec": figures["steps_per_sec"],
         "peak_gpu_mib": loops.peak_gpu_mib(), "notes": figures["note"],
         "measured": figures.get("measured", f"{figures['steps_per_sec']:.3g} G steps/s"),
         "limit": ""}
  for key in ("xla", "precision"):
    if key in figures:
      out[key] = figures[key]
  return out


def _input_stall(run, overrides):
  """The trainer fed by its reader, then by one cached batch (no reading):
  the share of the step time that waited for the reader is 1 - real / cached."""
  real = loops.run_trainer(run, overrides)
  model_dir = tempfile.mkdtemp(prefix="gpu_check_stall_")
  try:
    t = loops.built(loops.trainer_config(run, overrides, model_dir))
    # Read at the first trace of the loop: the same batch every step, from memory.
    t.iterator = iter(t.dataset.take(1).cache().repeat())
    fed = loops.trainer_figures(run, t.train())
  finally:
    shutil.rmtree(model_dir, ignore_errors=True)
  stall = max(0.0, 1.0 - real["steps_per_sec"] / fed["steps_per_sec"])
  real["measured"] = (f"input stall {stall:.1%} of the step ({real['steps_per_sec']:.3g} G "
                      f"steps/s read, {fed['steps_per_sec']:.3g} from one cached batch)")
  return real


def default_image_size():
  """The size the trainer converts builtin:shapes to by default."""
  return builtin.info("shapes").default_image_size


# -----------------------------------------------------------------------------
# NCCL over every whole GPU (information; two GPUs or more).


def nccl_probe():
  """Whether an NCCL all-reduce runs over every visible whole GPU, as the
  factory's `mirrored` strategy does there."""
  devices = [d.name for d in tf.config.list_logical_devices("GPU")]
  start = time.perf_counter()
  strategy = tf.distribute.MirroredStrategy(devices,
                                            cross_device_ops=tf.distribute.NcclAllReduce())

  @tf.function
  def all_reduce():
    return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, tf.constant(1.0)))

  values = [float(x) for x in strategy.experimental_local_results(all_reduce())]
  works = values == [float(len(devices))] * len(devices)
  return {"status": "info", "works": works,
          "measured": f"NCCL all-reduce {'works' if works else 'wrong'}: {values}", "limit": "",
          "notes": f"{len(devices)} GPUs, {time.perf_counter() - start:.1f} s"}
