"""Image figures of the small-data issue, run by `python -m bench.quality --only=NAME`.

- first_run: the README's main command, exactly as a new user types it (a
  fresh data cache and run directory, a subprocess, timed from its start):
  target: within 5 minutes on a 2-core CPU, a shape classifier trained on the
  real images labels >= 90% of 1,000 samples with confidence >= 0.9 and finds
  every class at >= 15%.
- small_data: sngan on builtin:shapes cut to 500 training images, without
  augmentation, with --augment=diffaugment and with --ada_target=0.6, at equal
  steps; FID of the shape classifier's features against the 2,000 held-out
  test images, at every checkpoint (the curve), and r_t = E[sign D(real)].
  Target: FID >= 30% lower with augmentation, and r_t lower.
- arch: sngan with --arch=resnet against --arch=dcgan at equal wall time
  (each run's steps from its own measured throughput), at 32 and 64 px.
- conditional: --arch=resnet --conditional (projection) against cdcgan: the
  steps and seconds until >= 95% of samples show the class asked for.
- resolution: --arch=resnet at 128 and 256 px: step time, peak RSS (each in a
  subprocess), the GPU memory computed from parameter and activation sizes,
  and a sample grid.

The shape judge is a small CNN trained on real images (bench/judges.py);
its FID uses its 64 penultimate features (for shapes, far more telling than
InceptionV3's ImageNet features, which need a download here).
"""

import glob
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from bench import child
from bench import judges
from inference import sampling
from training import config as config_lib
from training import run_dir
from training import samples as samples_lib
from training import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The README's main command, as typed (README.md, "The two commands").
FIRST_RUN_ARGS = ("-m", "pipeline.train", "--algo=sngan", "--strategy=mirrored")
FIRST_RUN_SECONDS = 300


def _train(model_dir, **settings):
  base = dict(model_dir=model_dir, log_every=250, sample_every=1000, checkpoint_every=100000,
              fresh=True)
  base.update(settings)
  return trainer.run(config_lib.TrainConfig(**base))


def _throughput(model_dir, **settings):
  """Generator steps per second of `settings`, from short runs' steady rate
  (the trainer's images/s after the first log, i.e. past compilation): 6
  steps, and 120 more for settings faster than SLOW_STEPS_PER_SEC."""
  for steps in (6, 120):
    result = _train(model_dir, train_steps=steps, log_every=steps // 3, **settings)
    rates = [r for _, r in run_dir.read_scalars(model_dir, "images_per_sec")][1:]
    rate = float(np.median(rates)) / result.config.global_batch_size
    if rate < SLOW_STEPS_PER_SEC:
      break
  return rate


SLOW_STEPS_PER_SEC = 2.0


# ---------------------------------------------------------------- first run
def run_first_run(work_dir, limit=FIRST_RUN_SECONDS):
  """The README's main command in a fresh directory and data cache, timed."""
  home = os.path.join(work_dir, "first_run")
  shutil.rmtree(home, ignore_errors=True)
  os.makedirs(home)
  env = dict(os.environ, GAN_PIPELINE_DATA=os.path.join(home, "cache"),
             PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  start = time.time()
  with open(os.path.join(home, "output.txt"), "w", encoding="utf-8") as log:
    code = subprocess.call([sys.executable, *FIRST_RUN_ARGS], cwd=home, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
  seconds = time.time() - start
  if code:
    raise RuntimeError(f"the main command failed ({code}); see {home}/output.txt")
  model_dir = os.path.join(home, "runs", "sngan-shapes")
  algorithm, step = sampling.load_algorithm(model_dir)
  judge = judges.ShapeJudge(glob.glob(os.path.join(home, "cache", "builtin", "shapes-*"))[0])
  x, _ = sampling.sample(algorithm, 1000, seed=1)
  confident, shares = judge.confident_share(x), judge.shares(x)
  ok = seconds <= limit and confident >= 0.9 and shares.min() >= 0.15
  print(f"first run: `python {' '.join(FIRST_RUN_ARGS)}` took {seconds:.0f} s for {step} steps "
        f"(conversion included); {confident:.1%} of 1,000 samples classified with confidence "
        f">= {judges.CONFIDENCE} (real test images: {judge.test_confident:.1%}), class shares "
        f"{np.round(shares, 3).tolist()}, FID(classifier features) {judge.fid(x):.2f} "
        f"[{judges.verdict(ok)}: targets <= {limit} s, >= 90%, each class >= 15%]",
        flush=True)
  return dict(seconds=seconds, steps=step, confident=confident, shares=shares.tolist())


# --------------------------------------------------------------- small data
SMALL_DATA_VARIANTS = {
    "none": {},
    "diffaugment": dict(augment="diffaugment"),
    "ada_0.6": dict(ada_target=0.6),
}


def run_small_data(work_dir, steps, every, examples=500):
  """FID and r_t curves of sngan on `examples` training images, per variant."""
  small = judges.data("shapes", max_examples=examples)
  judge = judges.ShapeJudge(judges.data("shapes"))
  final = {}
  for name, extra in SMALL_DATA_VARIANTS.items():
    model_dir = os.path.join(work_dir, f"small-{name}")
    start = time.time()
    _train(model_dir, algo="sngan", data=small, train_steps=steps, checkpoint_every=every,
           keep_checkpoints=steps // every + 1, **extra)
    seconds = time.time() - start
    r_t = run_dir.read_scalars(model_dir, "r_t")
    p = run_dir.read_scalars(model_dir, "augment_p")
    curve = []
    for step in range(every, steps + 1, every):
      algorithm, _ = sampling.load_algorithm(model_dir, step)
      x, _ = sampling.sample(algorithm, 2000, seed=1)
      near = [v for s, v in r_t if s <= step][-5:]
      curve.append((step, judge.fid(x), float(np.mean(near)), judge.confident_share(x)))
    final[name] = curve[-1]
    print(f"small data ({examples} images) {name}: {seconds:.0f} s; " + "; ".join(
        f"{s}: FID {f:.2f} r_t {r:.3f} confident {c:.1%}" for s, f, r, c in curve)
        + (f"; final p {p[-1][1]:.3f}" if p else ""), flush=True)
  base = final["none"]
  for name in ("diffaugment", "ada_0.6"):
    fid, r_t = final[name][1], final[name][2]
    ok = fid <= 0.7 * base[1] and r_t < base[2]
    print(f"small data {name} vs none at {steps} steps: FID {fid:.2f} vs {base[1]:.2f} "
          f"({1 - fid / base[1]:+.0%} lower), r_t {r_t:.3f} vs {base[2]:.3f} "
          f"[{judges.verdict(ok)}: target >= 30% lower FID, lower r_t]", flush=True)
  return final


# ------------------------------------------------------------- architecture
ARCH_RUNS = ((32, "dcgan"), (32, "resnet"), (64, "dcgan"), (64, "resnet"))


def run_arch(work_dir, seconds, runs=ARCH_RUNS):
  """sngan resnet against dcgan at equal wall time, per image size; `runs`:
  (size, arch) pairs."""
  out = {}
  for size in sorted({size for size, _ in runs}):
    data = judges.data("shapes", image_size=size)
    judge = judges.ShapeJudge(data)
    for arch in [a for s, a in runs if s == size]:
      model_dir = os.path.join(work_dir, f"arch-{arch}-{size}")
      settings = dict(algo="sngan", data=data, arch=arch)
      rate = _throughput(model_dir, **settings)
      steps = max(1, int(rate * seconds))
      start = time.time()
      _train(model_dir, train_steps=steps, **settings)
      took = time.time() - start
      algorithm, _ = sampling.load_algorithm(model_dir)
      x, _ = sampling.sample(algorithm, 2000, seed=1)
      figures = dict(steps=steps, steps_per_sec=rate, seconds=took, fid=judge.fid(x),
                     confident=judge.confident_share(x), shares=judge.shares(x).tolist())
      out[(size, arch)] = figures
      print(f"arch {size} px sngan --arch={arch}: {steps} steps ({rate:.2f}/s) in {took:.0f} s: "
            f"FID {figures['fid']:.2f}, confident {figures['confident']:.1%}, shares "
            f"{np.round(figures['shares'], 3).tolist()}", flush=True)
  return out


# ------------------------------------------------------------- conditional
CONDITIONAL_RUNS = {
    "cdcgan": dict(algo="cdcgan"),
    "sngan --arch=resnet --conditional": dict(algo="sngan", arch="resnet", conditional=True),
}


def run_conditional(work_dir, seconds, target=0.95, points=6):
  """Class agreement of conditional samples over equal wall time: the steps
  and seconds until >= `target` of samples show the class asked for."""
  data = judges.data("shapes")
  judge = judges.ShapeJudge(data)
  out = {}
  for name, settings in CONDITIONAL_RUNS.items():
    model_dir = os.path.join(work_dir, "conditional-" + name.split()[0] + (
        "-resnet" if "arch" in settings else ""))
    rate = _throughput(model_dir, data=data, **settings)
    every = max(10, int(rate * seconds / points) // 10 * 10)
    steps = every * points
    start = time.time()
    _train(model_dir, data=data, train_steps=steps, checkpoint_every=every,
           keep_checkpoints=points + 1, **settings)
    seconds_per_step = (time.time() - start) / steps
    curve, reached = [], None
    for step in range(every, steps + 1, every):
      algorithm, _ = sampling.load_algorithm(model_dir, step)
      x, y = sampling.sample(algorithm, 999, seed=1)
      curve.append((step, judge.agreement(x, y)))
      if reached is None and curve[-1][1] >= target:
        reached = step
    out[name] = dict(curve=curve, reached=reached, seconds_per_step=seconds_per_step)
    when = (f"reached {target:.0%} at {reached} steps (~{reached * seconds_per_step:.0f} s)"
            if reached else f"not {target:.0%} within {steps} steps "
                            f"({steps * seconds_per_step:.0f} s)")
    print(f"conditional {name}: {when}; agreement " + ", ".join(
        f"{s}: {a:.1%}" for s, a in curve), flush=True)
  return out


# --------------------------------------------------------------- resolution
RESOLUTION_STEPS = 4
GPU_BATCH = 64  # The batch of the computed GPU memory (the trainer's default).


def resolution_figures(size, batch, work_dir):
  """Trains --arch=resnet sngan for a few steps at `size` px in this process;
  returns its figures (run by `run_resolution` in a subprocess each)."""
  data = judges.data("shapes", image_size=size, max_examples=256)
  model_dir = os.path.join(work_dir, f"resolution-{size}")
  settings = dict(algo="sngan", data=data, arch="resnet", global_batch_size=batch,
                  log_every=2, sample_every=RESOLUTION_STEPS, steps_per_loop=1)
  start = time.time()
  result = _train(model_dir, train_steps=RESOLUTION_STEPS, **settings)
  rates = [r for _, r in run_dir.read_scalars(model_dir, "images_per_sec")][1:]
  algorithm = result.algorithm
  grid = os.path.join(work_dir, f"resolution-{size}.png")
  x, _ = sampling.sample(algorithm, 16, seed=1)
  samples_lib.save_png(grid, samples_lib.image_grid(x, columns=4))
  return dict(size=size, batch=batch, seconds=time.time() - start,
              step_seconds=batch / float(np.median(rates)),
              peak_rss_mib=child.peak_rss_mib(),
              gpu_mib=gpu_memory_mib(algorithm, GPU_BATCH), grid=grid,
              g_params=algorithm.generator.count_params(),
              d_params=algorithm.discriminator.count_params())


def _activation_bytes(fn, *args):
  """Bytes of every floating tensor a traced forward pass produces: what its
  backward pass may keep (an upper bound; XLA and the allocator reuse some)."""
  graph = tf.function(fn).get_concrete_function(*args).graph
  total = 0
  for op in graph.get_operations():
    for t in op.outputs:
      if t.dtype.is_floating and t.shape.is_fully_defined():
        total += t.shape.num_elements() * t.dtype.size
  return total


def gpu_memory_mib(algorithm, batch):
  """GPU memory of a training step, computed from sizes: float32 weights,
  gradients and two Adam slots of G and D (and the EMA generator), plus the
  larger phase's activations (D phase: G forward, D on real and fake; G phase:
  G and D forward), from the traced forward passes at `batch`."""
  g, d = algorithm.generator, algorithm.discriminator
  z = tf.TensorSpec([batch, algorithm.config.z_dim], tf.float32)
  x = tf.TensorSpec([batch] + list(algorithm.data.shape), tf.float32)
  g_act = _activation_bytes(lambda z: g(z, None, training=True), z)
  d_act = _activation_bytes(lambda x: d(x, None, training=True), x)
  params = 4 * (4 * (g.count_params() + d.count_params())
                + (algorithm.ema_generator.count_params()
                   if getattr(algorithm, "ema_generator", None) is not None else 0))
  return (params + g_act + 2 * d_act) / 2**20


def run_resolution(work_dir, sizes=((128, 8), (256, 4))):
  """Each size in its own subprocess (its peak RSS alone)."""
  out = []
  for size, batch in sizes:
    code = ("from bench import child, quality_images as q; "
            f"child.answer(q.resolution_figures({size}, {batch}, {work_dir!r}))")
    r, proc = child.run([sys.executable, "-c", code], cwd=REPO,
                        env=dict(os.environ, PYTHONPATH=REPO))
    if proc.returncode or r is None:
      print(f"resolution {size} px: FAILED ({proc.returncode})\n{proc.stderr[-3000:]}",
            flush=True)
      continue
    out.append(r)
    print(f"resolution {size} px --arch=resnet sngan, batch {batch}: trains "
          f"({RESOLUTION_STEPS} steps, {r['seconds']:.0f} s with building); step "
          f"{r['step_seconds']:.2f} s on this CPU; peak RSS {r['peak_rss_mib']:,.0f} MiB; "
          f"G {r['g_params'] / 1e6:.1f}M / D {r['d_params'] / 1e6:.1f}M parameters; GPU memory "
          f"from sizes {r['gpu_mib']:,.0f} MiB at batch {GPU_BATCH}; grid {r['grid']}", flush=True)
  return out
