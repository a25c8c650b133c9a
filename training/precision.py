"""How fast and in what arithmetic the networks run: `--xla` and `--precision`
(`use_xla`, `use_precision`, `build_in_policy`), and dynamic loss scaling that
is correct under every tf.distribute strategy (`LossScaleOptimizer`).

Loss scaling.

Keras 3's `keras.optimizers.LossScaleOptimizer` decides whether a step is
finite from each replica's *own* gradients, before they are all-reduced; under
MirroredStrategy it then takes replica 0's answer for all (see
docs/tf-facts.md, pinned in tests/test_tf_facts.py).
An `inf` on replica 1 alone is applied: the weights become non-finite and the
scale does not drop.

`LossScaleOptimizer` below is Keras's, with one change: the finite check
all-reduces the count of non-finite gradient values over every replica (and
every worker) first, so all replicas take the same branch: skip the step and
halve the scale, or apply it (the scale doubles after `dynamic_growth_steps`
finite steps in a row). It also counts the skipped steps, for TensorBoard.

Where the scale enters the loss (the trainer, `_make_gradient_fn`):
    grads = tape.gradient(opt.scale_loss(loss), variables)   # scaled
    opt.apply_gradients(zip(grads, variables))                # unscaled here
and the gradient penalty takes its inner gradient of the *scaled* critic
output and divides it by the scale (`models.penalties`, `loss_scale=`), which
TensorFlow issue 48662 shows is needed for the scale not to collapse.
"""

import keras
from keras import ops
from keras.src.utils import tracking  # Keras's own decorator for build().
import tensorflow as tf

from distribute import strategy as strategy_lib


def nonfinite_count(grads):
  """The number of non-finite values in `grads` (None entries skipped), float32."""
  counts = [tf.reduce_sum(tf.cast(tf.logical_not(tf.math.is_finite(g)), tf.float32))
            for g in grads if g is not None]
  return tf.add_n(counts) if counts else tf.constant(0.0)


class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
  """Keras's LossScaleOptimizer with a finite check agreed across replicas.

  Args:
    inner_optimizer: the optimizer to wrap.
    initial_scale: the first loss scale (2**15, as Keras and tf-keras).
    dynamic_growth_steps: finite steps in a row before the scale doubles.
  """

  def __init__(self, inner_optimizer, initial_scale=2.0**15, dynamic_growth_steps=2000,
               **kwargs):
    super().__init__(inner_optimizer, initial_scale=initial_scale,
                     dynamic_growth_steps=dynamic_growth_steps, **kwargs)

  @tracking.no_automatic_dependency_tracking  # As Keras's build: no attribute tracking.
  def build(self, var_list):
    self.skipped_steps = self.add_variable(
        shape=(), dtype="float32", initializer=keras.initializers.Zeros(),
        aggregation="none", name="skipped_steps")
    super().build(var_list)

  def check_finite(self, grads):
    """True when every replica's gradients are finite.

    Called in a replica context by both of Keras's code paths (directly, or
    through `call_for_each_replica` inside a merge_call), so the all-reduce
    below is a collective that every replica reaches exactly once.
    """
    count = nonfinite_count(grads)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None:  # None only in a cross-replica context, which Keras never uses here.
      count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return ops.equal(count, 0.0)

  def _stateful_handle_non_finite_grads(self):
    self.skipped_steps.assign_add(1.0)
    super()._stateful_handle_non_finite_grads()


# What `--xla=auto` picks per device type; the measurements behind each choice
# are in BUILD.md ("XLA").
XLA_AUTO = {
    "CPU": (False, "measured slower than the plain step on CPU (BUILD.md)"),
    "GPU": (True, "TensorFlow's GPU guide; not measured on a GPU here (BUILD.md)"),
}


def use_xla(setting, deterministic, strategy, algorithm):
  """Whether to XLA-compile the per-replica gradients: (bool, reason).

  Never where the algorithm uses an op XLA cannot compile
  (`Algorithm.xla_unsupported`), nor with several replicas and batch norm:
  synchronized batch norm all-reduces inside the forward pass, which XLA
  cannot compile on CPU and which is not proven on GPUs (docs/tf-facts.md);
  then `--xla=on` is refused and `auto` is off. Otherwise `setting` auto takes
  `XLA_AUTO` for the strategy's device type, except under `--deterministic`
  (XLA makes no bit-reproducibility promise; Keras turns its own automatic
  XLA off there too).

  Raises:
    ValueError: `--xla=on` where it cannot work.
  """
  unsupported = algorithm.xla_unsupported()
  if unsupported:
    if setting == "on":
      raise ValueError(f"--xla=on cannot work here: {unsupported}")
    return False, unsupported
  norms = [layer.path for model in algorithm.checkpoint_items().values()
           if isinstance(model, keras.Model)
           for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
           if isinstance(layer, keras.layers.BatchNormalization)]
  if norms and strategy.num_replicas_in_sync > 1:
    reason = (f"{strategy.num_replicas_in_sync} replicas and synchronized batch norm "
              f"({norms[0]}...), whose all-reduce XLA cannot compile")
    if setting == "on":
      raise ValueError(f"--xla=on cannot work here: {reason}; use --xla=auto or off, or one "
                       "replica")
    return False, reason
  if setting != "auto":
    return setting == "on", "set by the flag"
  if deterministic:
    return False, "auto, off under --deterministic"
  device = tf.DeviceSpec.from_string(strategy_lib.local_devices(strategy)[0]).device_type
  device = device or "CPU"
  on, reason = XLA_AUTO.get(device, (False, f"no measurement for {device} devices"))
  return on, f"auto on {device}: {reason}"


# `--precision=auto`: the CPU flags of native bfloat16 arithmetic (oneDNN's
# bfloat16 kernels; without them bfloat16 is emulated and slower than float32).
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# The measurements behind the choice are in BUILD.md ("Mixed precision").
PRECISION_AUTO_BFLOAT16 = "measured faster than float32, samples checked (BUILD.md)"


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


def use_precision(setting, deterministic, strategy, algorithm, num_workers=1, flags=None):
  """The Keras dtype policy to build the networks with: (policy, reason).

  `--precision=auto` is mixed_bfloat16 only where it was measured faster and
  its samples checked: one worker, CPU replicas on a CPU with native bfloat16
  (`BFLOAT16_CPU_FLAGS`), networks whose `Algorithm.bfloat16_checked` (the
  DCGAN networks of the image GANs, and pix2pix), and no
  `--deterministic` (a reproducible run must not depend on the machine's
  CPU flags). Everywhere else, GPUs included (not measured here; BUILD.md),
  it is float32. `flags`: the CPU flags (default `cpu_flags()`).
  """
  if setting != "auto":
    return setting, "set by the flag"
  if deterministic:
    return "float32", "auto, float32 under --deterministic"
  device = tf.DeviceSpec.from_string(strategy_lib.local_devices(strategy)[0]).device_type
  device = device or "CPU"
  if device != "CPU":
    return "float32", (f"auto on {device}: bfloat16 not measured on a {device} here; "
                       "--precision=mixed_bfloat16 on A100/H100 (BUILD.md)")
  if num_workers > 1:
    return "float32", "auto with several workers: their CPUs may differ"
  if not algorithm.bfloat16_checked():
    return "float32", ("auto on CPU: bfloat16 checked only for the DCGAN networks and "
                       "pix2pix")
  flags = cpu_flags() if flags is None else flags
  if not flags & set(BFLOAT16_CPU_FLAGS):
    return "float32", "auto on CPU: no native bfloat16 (avx512_bf16 or amx_bf16)"
  return "mixed_bfloat16", f"auto on a CPU with native bfloat16: {PRECISION_AUTO_BFLOAT16}"


def build_in_policy(algorithm, precision):
  """Builds `algorithm` (inside the strategy scope) under the dtype policy
  `precision`; under mixed_float16 wraps every optimizer in a
  `LossScaleOptimizer`."""
  previous_policy = keras.config.dtype_policy()
  keras.config.set_dtype_policy(precision)  # Layers keep the policy they got.
  try:
    algorithm.build()
  finally:
    keras.config.set_dtype_policy(previous_policy)
  if precision == "mixed_float16":
    # Built on the built inner optimizers (Adam and RMSprop build once).
    algorithm.optimizers = {
        name: LossScaleOptimizer(opt, name=f"{name}_loss_scale")
        for name, opt in algorithm.optimizers.items()}
    for phase in algorithm.phases():
      algorithm.optimizers[phase.name].build(algorithm.variables(phase))
