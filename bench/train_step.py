"""python -m bench.train_step --results_dir=bench/results
python -m bench.train_step --algos=sngan --datasets=shapes32 --variants=eager,tf_function,trainer
python -m bench.train_step --algos=pix2pix --datasets=paired128 --batch_size=1,4,8 --rounds=3 \
    --variants=eager,tf_function,tf_function_bf16,trainer_f32,trainer_bf16 --results_tag=pix2pix

Training-step speed of one GAN written three ways, side by side in one run.

The networks are always the project's `models.dcgan.DCGANGenerator` and
`DCGANDiscriminator`, built by the algorithm's own `ImageGAN.build` (so with
its normalization, spectral norm and LeakyReLU slope), with the algorithm's
Adam settings from `algorithms/gans.py` SPECS, at the same base width
(`--base_channels`: by default the trainer's, 32 for these networks; the
papers' 64 with `--base_channels=64`) and the same global batch
(`--batch_size`, 64). For each dataset of `--datasets`:

- `shapes32`: `builtin:shapes` as the trainer converts it, 32x32x3;
- `shapes28`: `builtin:shapes` drawn at 28 px and converted to grayscale
  (`ConvertConfig(image_size=28, channels=1)`, ITU-R 601 luma), 28x28x1,
  cached beside the trainer's conversions;
- only when named, for the translation networks (`--algos=pix2pix,cyclegan`;
  each algorithm runs on the datasets of its kind): `paired128` and
  `unpaired128`, the first 1,000 examples of `builtin:shapes_paired` and
  `builtin:shapes_unpaired` at 128 px (128x128x3). pix2pix's networks are
  `models.pix2pix`'s U-Net and conditional PatchGAN, cyclegan's two ResNet
  generators and two PatchGANs, at the papers' width 64, Adam 2e-4 (0.5,
  0.999); pix2pix's jitter is on, as the trainer's default;

and each algorithm of `--algos` (`wgan_gp`, `sngan`, `dcgan`), it times every
variant of `--variants`, each in its own subprocess (so that the peak RSS,
`getrusage(RUSAGE_SELF).ru_maxrss`, is that variant's alone):

1. `eager`: the loop of most TF GAN code (keras-io style): an eager
   GradientTape loop, n_critic in Python, one `optimizer.apply_gradients` per
   discriminator step and per generator step, the loss from `models/losses.py`,
   the gradient penalty from `models/penalties.py` (wgan_gp), one
   `spectral_norm.power_iteration(discriminator)` per discriminator step
   (sngan). Data: `input.reader.make_dataset(normalize=True)` on the same
   TFRecords, with the trainer's shuffle buffer.
2. `tf_function`: the same, with one `@tf.function` per discriminator step and
   one per generator step, as in the TensorFlow DCGAN tutorial (the n_critic
   loop and the input iterator stay in Python). For pix2pix, `eager` and
   `tf_function` are the TensorFlow pix2pix tutorial's step
   (`loops.HandWrittenPix2Pix`): one generator forward pass, two tapes, both
   optimizers; the trainer's step runs G and D(fake) forward twice (D's
   phase, then G's). cyclegan has no hand-written loop.
   `eager_bf16`, `tf_function_bf16` (only when named): the same loops with the
   networks built under mixed_bfloat16.
3. `trainer`: `training.trainer.run` with its defaults (`steps_per_loop=10`,
   `xla=auto`, `precision=auto`: mixed_bfloat16 on a CPU with native bfloat16,
   else float32) on one device (`--trainer_strategy`, `one_device` by
   default, like the baselines' single device).
4. trainer variants: `trainer_xla_on`, `trainer_xla_off` (`xla=on|off`),
   `trainer_f32`, `trainer_bf16`, `trainer_fp16`
   (`precision=float32|mixed_bfloat16|mixed_float16`),
   `trainer_spl1`, `trainer_spl50` (`steps_per_loop=1|50`).
5. `torch`: `python -m bench.torch_train_step`, the same architectures and
   hyperparameters in PyTorch, fed with random tensors of the data's shape
   (no input pipeline); "torch not installed" where `import torch` fails.

Timing. Variants 1, 2 and torch run `--warmup` untimed generator steps, then
time `--steps` generator steps (ended by reading a weight, so that queued
device work is included). The trainer cannot be timed from outside without
its start-up, tracing and compilation, so it runs `train_steps=2*steps` with
`log_every=steps` and reports `TrainResult.metrics["steps_per_sec"]`: the
second log interval alone (the first, which traces and compiles, is the
warm-up). The trainer resets its interval clock after logging and before
writing samples and checkpoints, and `sample_every = checkpoint_every =
train_steps`, so those happen once, at the end, after the timed interval was
read. Every variant times the same number of generator steps. A trainer call
never runs past a log boundary, so with `--steps` below 50 `trainer_spl50`
runs calls of `--steps` (its row says so).

Printed per (dataset, algorithm, variant): real images/s (real images
consumed per second: n_critic * batch per generator step for wgan_gp, batch
for the others), generator steps/s, peak RSS (MiB), and the ratio of images/s
to `eager` and to `tf_function` measured in the same run; one markdown table
per dataset and batch (`--batch_size=1,8` gives one table per batch), then
a summary line per image GAN with the targets trainer >= 4x eager and
trainer >= 1.3x tf_function (PASS/FAIL), and a line of ratios per algorithm
(bf16 against float32 in each loop, the trainer against `tf_function` in the
same precision) where both rows were measured. A variant that
fails (e.g. a TrainConfig field that does not exist yet) is a row
"error: <one line>"; the run goes on.

Every row starts a Python process (TensorFlow's import and the models' build
are not timed). The full default run, 3 algorithms x 2 datasets x 10 variants,
takes about an hour on a 2-core CPU (estimated from `--steps=2` runs;
`trainer_fp16` is the slowest row there: CPUs have no fast float16 kernels).

Absolute numbers depend on the machine and its load: compare the ratios taken
in the same run, and pass `--rounds=3` (or more) to compare two rows: every
variant then runs that many times, the variants taking turns, and each row is
its median run (the range in its notes). One run per variant moved by 10-20%
on the shared 2-core CPU. On a GPU machine run the same command; peak RSS is host
memory only, so the GPU rows also show the device's peak memory.
"""

import argparse
import dataclasses
import datetime
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=wrong-import-position

from algorithms import gans  # pylint: disable=wrong-import-position
from bench import child  # pylint: disable=wrong-import-position
from bench import loops  # pylint: disable=wrong-import-position
from bench import report  # pylint: disable=wrong-import-position
from bench import timing  # pylint: disable=wrong-import-position
from input import cache  # pylint: disable=wrong-import-position
from input import convert  # pylint: disable=wrong-import-position
from input import manifest as manifest_lib  # pylint: disable=wrong-import-position

# The image GANs (the defaults), then the translation networks (by name).
TRANSLATION_ALGOS = ("pix2pix", "cyclegan")
ALGOS = loops.ALGOS + TRANSLATION_ALGOS


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A dataset the variants read, converted once and cached."""
  source: str
  image_size: int | None  # None: the source's own size.
  channels: int | None  # None: the source's own channels.
  description: str
  kind: str = "image"  # What algorithms it feeds: image, paired or unpaired.
  num_examples: int | None = None  # Examples per split when --num_examples is not given.


DATASETS = {
    "shapes32": Dataset("builtin:shapes", None, None, "builtin:shapes, 32x32x3 RGB (the "
                                                      "trainer's own conversion)"),
    "shapes28": Dataset("builtin:shapes", 28, 1, "builtin:shapes drawn at 28 px, converted "
                                                 "to grayscale: 28x28x1"),
    # 1,000 pairs (196 MB as uint8) instead of all 10,000: a timed run reads
    # at most (2 x --steps) x batch of them, and a shuffle buffer of them all
    # would hold 2 GB.
    "paired128": Dataset("builtin:shapes_paired", 128, None,
                         "builtin:shapes_paired at 128 px, outline -> filled, 128x128x3 RGB",
                         kind="paired", num_examples=1000),
    "unpaired128": Dataset("builtin:shapes_unpaired", 128, None,
                           "builtin:shapes_unpaired at 128 px, 128x128x3 RGB",
                           kind="unpaired", num_examples=1000),
}
DEFAULT_DATASETS = ("shapes32", "shapes28")
# The data kind each algorithm trains on.
ALGO_KINDS = {**{a: "image" for a in loops.ALGOS}, "pix2pix": "paired", "cyclegan": "unpaired"}
# Trainer variants: TrainConfig fields on top of the trainer's defaults.
TRAINER_VARIANTS = {
    "trainer": {},
    "trainer_xla_on": {"xla": "on"},
    "trainer_xla_off": {"xla": "off"},
    "trainer_f32": {"precision": "float32"},
    "trainer_bf16": {"precision": "mixed_bfloat16"},
    "trainer_fp16": {"precision": "mixed_float16"},
    "trainer_spl1": {"steps_per_loop": 1},
    "trainer_spl50": {"steps_per_loop": 50},
}
# Hand-written loops: (compiled, precision).
HAND_WRITTEN_VARIANTS = {
    "eager": (False, "float32"),
    "tf_function": (True, "float32"),
    "eager_bf16": (False, "mixed_bfloat16"),
    "tf_function_bf16": (True, "mixed_bfloat16"),
}
VARIANTS = (*HAND_WRITTEN_VARIANTS, *TRAINER_VARIANTS, "torch")
# What runs without --variants (the bf16 hand-written loops only when named).
DEFAULT_VARIANTS = ("eager", "tf_function", *TRAINER_VARIANTS, "torch")
# (baseline, minimum ratio of `trainer` images/s to the baseline's): the image
# GANs' targets (their issue); the translation networks get the ratios alone.
TARGETS = (("eager", 4.0), ("tf_function", 1.3))
# (faster, slower): the ratios of images/s printed under each table where both
# rows were measured: half precision against float32 in each loop, and the
# trainer against the plain tf.function step in the same precision.
RATIOS = (("tf_function_bf16", "tf_function"), ("eager_bf16", "eager"),
          ("trainer_bf16", "trainer_f32"), ("trainer_f32", "tf_function"),
          ("trainer_bf16", "tf_function_bf16"), ("trainer", "tf_function"))


def _csv(choices, what):
  """An argparse type: a comma-separated subset of `choices`."""

  def parse(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in choices]
    if bad or not names:
      raise argparse.ArgumentTypeError(
          f"unknown {what} {', '.join(bad) or repr(text)}; valid: {', '.join(choices)}")
    return names

  return parse


def _ints(text):
  """An argparse type: comma-separated positive integers."""
  try:
    values = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    values = []
  if not values or min(values) < 1:
    raise argparse.ArgumentTypeError(f"expected positive integers like 1,8, got {text!r}")
  return values


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--algos", type=_csv(ALGOS, "algorithm"), default=list(loops.ALGOS),
                 help="Default: the image GANs. pix2pix and cyclegan run on the paired and "
                      "unpaired datasets; each algorithm runs on the datasets of its kind.")
  p.add_argument("--datasets", type=_csv(tuple(DATASETS), "dataset"),
                 default=list(DEFAULT_DATASETS),
                 help="Default: the image datasets; paired128 and unpaired128 when named.")
  p.add_argument("--variants", type=_csv(VARIANTS, "variant"), default=list(DEFAULT_VARIANTS),
                 help="Default: all but eager_bf16 and tf_function_bf16 (the hand-written "
                      "loops in mixed_bfloat16).")
  p.add_argument("--steps", type=int, default=50,
                 help="Timed generator steps, the same for every variant (the trainer's "
                      "timed log interval; below 50, trainer_spl50 runs calls of --steps).")
  p.add_argument("--warmup", type=int, default=5,
                 help="Untimed generator steps before timing (eager, tf_function, torch; the "
                      "trainer's warm-up is its first log interval of --steps steps).")
  p.add_argument("--rounds", type=int, default=1,
                 help="Run every variant of an algorithm this many times, the variants taking "
                      "turns (the order rotates each round), and report each variant's median "
                      "(its range in the notes): a side-by-side measurement on a shared "
                      "machine, where one run per variant moves by 10-20%%.")
  p.add_argument("--batch_size", type=_ints, default=[64],
                 help="Global batch of every variant; several (1,8) give a table each.")
  p.add_argument("--base_channels", type=int, default=None,
                 help="Base width of every variant's networks (default: the trainer's default "
                      "for the algorithm; the papers' width is 64).")
  p.add_argument("--num_examples", type=int, default=None,
                 help="Convert only this many examples per split (default: all of them; "
                      "1,000 for the 128 px translation data).")
  p.add_argument("--data_cache", default=None,
                 help="Where converted data is cached (default: the trainer's cache).")
  p.add_argument("--trainer_strategy", choices=("one_device", "default", "mirrored"),
                 default="one_device",
                 help="The trainer variants' --strategy. one_device: one device, no "
                      "distribution; `default` (tf.distribute.get_strategy()) is what "
                      "was meant, but the trainer cannot run under it yet (it asks the "
                      "strategy for worker_devices, which the default strategy refuses).")
  p.add_argument("--child_timeout", type=float, default=1800.0,
                 help="Seconds after which a variant's subprocess is killed (an error row).")
  p.add_argument("--results_dir", default=None,
                 help="If set, also write the report as markdown to "
                      "RESULTS_DIR/train_step-YYYY-MM-DD[-TAG].md.")
  p.add_argument("--results_tag", default=None,
                 help="TAG of the results file's name (e.g. pix2pix).")
  # One variant in this process (what the parent runs in each subprocess).
  p.add_argument("--variant", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
  p.add_argument("--algo", choices=ALGOS, default=None, help=argparse.SUPPRESS)
  p.add_argument("--data", default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if (args.steps < 1 or args.warmup < 0 or args.rounds < 1
      or (args.base_channels is not None and args.base_channels < 1)):
    p.error("--steps, --base_channels and --rounds must be >= 1, --warmup >= 0")
  if args.variant and not (args.algo and args.data and len(args.batch_size) == 1):
    p.error("--variant needs --algo, --data (a converted dataset directory) and one "
            "--batch_size")
  if not args.variant and not _pairs(args):
    p.error(f"no dataset of --datasets={','.join(args.datasets)} is of the kind that "
            f"--algos={','.join(args.algos)} train on ("
            + ", ".join(f"{a}: {ALGO_KINDS[a]}" for a in args.algos) + ")")
  return args


def _pairs(args):
  """[(dataset, [algorithms that train on its kind])] of --datasets and --algos."""
  pairs = [(name, [a for a in args.algos if ALGO_KINDS[a] == DATASETS[name].kind])
           for name in args.datasets]
  return [(name, algos) for name, algos in pairs if algos]


# ---------------------------------------------------------------------------
# Data (in the parent, once; cached).


def _prepare_data(name, args):
  """The converted directory of dataset `name`, converting it on first use."""
  ds = DATASETS[name]
  source, image_size, channels = ds.source, ds.image_size, ds.channels
  num_examples = args.num_examples or ds.num_examples
  if channels is None:
    return cache.ensure_converted(source, cache_dir=args.data_cache, image_size=image_size,
                                  max_examples=num_examples)
  # `ensure_converted` has no channels argument: the same caching, by hand.
  cache_dir = args.data_cache or cache.default_cache_dir()
  tag = f"shapes-seed0-{image_size}px-{channels}ch"
  if num_examples:
    tag += f"-n{num_examples}"
  final = os.path.join(cache_dir, "bench", tag)
  if os.path.isfile(os.path.join(final, manifest_lib.MANIFEST_NAME)):
    return final
  os.makedirs(os.path.dirname(final), exist_ok=True)
  tmp = f"{final}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    convert.run(convert.ConvertConfig(source=source, output=tmp, image_size=image_size,
                                      channels=channels, max_examples=num_examples,
                                      command_line="python -m bench.train_step"))
    os.rename(tmp, final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final


def _image_shape(data_dir):
  features = manifest_lib.load(data_dir)["features"]
  return tuple(features["image" if "image" in features else "image_a"]["shape"])


# ---------------------------------------------------------------------------
# One variant (in a child process).


def _child_main(args):
  """Runs one variant and prints its result as one JSON line (also on failure)."""
  logging.set_verbosity(logging.WARNING)
  batch_size = args.batch_size[0]
  out = {"variant": args.variant, "algo": args.algo, "data": args.data,
         "batch_size": batch_size, "timed_steps": args.steps}
  compiled, precision = HAND_WRITTEN_VARIANTS.get(args.variant, (False, "float32"))
  run = loops.LoopRun(algo=args.algo, data=args.data, batch_size=batch_size,
                      steps=args.steps, warmup=args.warmup, base_channels=args.base_channels,
                      trainer_strategy=args.trainer_strategy, precision=precision)
  try:
    if args.variant in HAND_WRITTEN_VARIANTS:
      out.update(loops.run_hand_written(run, compiled=compiled))
    elif args.variant in TRAINER_VARIANTS:
      out.update(loops.run_trainer(run, TRAINER_VARIANTS[args.variant]))
    else:
      raise ValueError(f"variant {args.variant!r} does not run in this script")
    out["images_per_sec"] = out["steps_per_sec"] * out["real_per_step"]
    out["device"] = loops.device_name()
    out["peak_gpu_mib"] = loops.peak_gpu_mib()
  except Exception as e:  # pylint: disable=broad-except  (reported as the row)
    out["error"] = child.error_line(e)
  out["peak_rss_mib"] = child.peak_rss_mib()
  child.answer(out)
  return 1 if "error" in out else 0


# ---------------------------------------------------------------------------
# The parent: one subprocess per (dataset, algorithm, variant).


def _torch_flags(algo, data_dir, batch_size, base_channels):
  """bench/torch_train_step.py flags with the hyperparameters the TF variants resolve."""
  c, info = loops.resolved_config(algo, data_dir, batch_size, base_channels)
  spec = gans.SPECS[algo]
  return [f"--algo={algo}", f"--image_shape={'x'.join(map(str, info.shape))}",
          f"--loss={c.loss}", f"--g_loss={c.g_loss}", f"--n_critic={c.n_critic}",
          f"--lr_g={c.lr_g}", f"--lr_d={c.lr_d}", f"--beta1={c.beta1}", f"--beta2={c.beta2}",
          f"--gp_weight={c.gp_weight}", f"--d_norm={spec.d_norm}",
          f"--spectral_norm={int(spec.spectral_norm)}",
          f"--negative_slope={spec.negative_slope}", f"--z_dim={c.z_dim}",
          f"--base_channels={c.base_channels}", f"--optimizer={spec.optimizer}"]


def _skipped(variant, algo):
  """Why `variant` does not run for `algo`, or None."""
  if variant == "torch" and algo not in loops.ALGOS:
    return f"no PyTorch twin of {algo}"
  if variant in HAND_WRITTEN_VARIANTS and algo not in loops.ALGOS + loops.HAND_WRITTEN_TRANSLATION:
    return f"no hand-written loop for {algo}"
  return None


def _run_child(variant, algo, data_dir, batch_size, args):
  """Runs one variant in a subprocess; returns its JSON result (with `error` on failure)."""
  if _skipped(variant, algo):
    return {"skipped": _skipped(variant, algo)}
  common = [f"--steps={args.steps}", f"--warmup={args.warmup}", f"--batch_size={batch_size}"]
  if variant == "torch":
    cmd = child.command("bench.torch_train_step",
                        *_torch_flags(algo, data_dir, batch_size, args.base_channels),
                        *common)
  else:
    cmd = child.command("bench.train_step", f"--variant={variant}", f"--algo={algo}",
                        f"--data={data_dir}", f"--trainer_strategy={args.trainer_strategy}",
                        *common)
    if args.base_channels is not None:
      cmd.append(f"--base_channels={args.base_channels}")
  try:
    result, proc = child.run(cmd, timeout=args.child_timeout)
  except subprocess.TimeoutExpired:
    return {"error": f"killed after --child_timeout={args.child_timeout:g} s"}
  if result is not None:
    return result
  tail = child.last_line(proc.stderr)
  return {"error": f"exit code {proc.returncode}" + (f": {tail}" if tail else "")}


def _ratio(row, base):
  if "error" in row or "skipped" in row or not base or "images_per_sec" not in base:
    return ""
  return f"{row['images_per_sec'] / base['images_per_sec']:.2f}x"


def _dataset_section(name, data_dir, batch_size, args, results):
  """The markdown section of one dataset and batch: {algo: {variant: result}} -> lines."""
  with_gpu = any(r.get("peak_gpu_mib") for per_algo in results.values()
                 for r in per_algo.values())
  header = ["algo", "variant", "real images/s", "G steps/s", "peak RSS MiB",
            "vs eager", "vs tf_function"] + (["peak GPU MiB"] if with_gpu else []) + ["notes"]
  rows, summary = [], []
  for algo, per_variant in results.items():
    for variant, r in per_variant.items():
      if "skipped" in r or "error" in r:
        text = r.get("skipped") or f"error: {r['error']}"
        rows.append([algo, variant, text, "", "", "", ""] + [""] * (2 if with_gpu else 1))
        continue
      gpu = [f"{r['peak_gpu_mib']:,.0f}" if r.get("peak_gpu_mib") else ""] if with_gpu else []
      rows.append([algo, variant, f"{r['images_per_sec']:,.1f}", f"{r['steps_per_sec']:.3f}",
                   f"{r['peak_rss_mib']:,.0f}", _ratio(r, per_variant.get("eager")),
                   _ratio(r, per_variant.get("tf_function"))] + gpu + [r.get("note", "")])
    if algo in loops.ALGOS:
      summary.append(_summary_line(name, algo, per_variant))
    summary += _ratio_lines(name, algo, per_variant)
  shape = "x".join(map(str, _image_shape(data_dir)))
  widths = sorted({r["base_channels"] for per_algo in results.values()
                   for r in per_algo.values() if "base_channels" in r})
  width = ("base width " + "/".join(map(str, widths))
           + ("" if args.base_channels else " (the trainer's default)") + "; ") if widths else ""
  return [
      f"## {name}, batch {batch_size}: {DATASETS[name].description}",
      "",
      f"Data: `{data_dir}` ({shape}); {width}batch {batch_size}; {args.steps} timed "
      f"generator steps per variant.",
      "",
      report.table(header, rows),
      "",
      *summary,
      "",
  ]


def _summary_line(name, algo, per_variant):
  """`[dataset] algo: trainer / eager = Nx, target >= 4x: PASS; ...`."""
  ours = per_variant.get("trainer")
  parts = []
  for base_name, target in TARGETS:
    base = per_variant.get(base_name)
    if not ours or not base or "images_per_sec" not in ours or "images_per_sec" not in base:
      missing = [n for n, r in (("trainer", ours), (base_name, base))
                 if not r or "images_per_sec" not in r]
      parts.append(f"trainer / {base_name}: n/a ({', '.join(missing)} not measured), "
                   f"target >= {target:g}x")
      continue
    ratio = ours["images_per_sec"] / base["images_per_sec"]
    parts.append(f"trainer / {base_name} = {ratio:.2f}x, target >= {target:g}x: "
                 f"{'PASS' if ratio >= target else 'FAIL'}")
  return f"- [{name}] {algo}: " + "; ".join(parts)


def _ratio_lines(name, algo, per_variant):
  """`[dataset] algo: tf_function_bf16 / tf_function = Nx` for each of `RATIOS`
  whose two rows were measured."""
  parts = []
  for top, bottom in RATIOS:
    a, b = per_variant.get(top) or {}, per_variant.get(bottom) or {}
    if "images_per_sec" in a and "images_per_sec" in b:
      parts.append(f"{top} / {bottom} = {a['images_per_sec'] / b['images_per_sec']:.2f}x")
  return [f"- [{name}] {algo}: " + "; ".join(parts)] if parts else []


def _report(args, machine, when, sections):
  translation = [a for a in args.algos if a in TRANSLATION_ALGOS]
  lines = report.header("Training-step benchmark", "bench.train_step", when, machine) + [
      "Same networks (the algorithm's own build: `models.dcgan` for the image GANs"
      + (", `models.pix2pix` U-Net and PatchGAN for pix2pix, `models.cyclegan` ResNet "
         "generators and PatchGANs for cyclegan" if translation else "")
      + f"; base width {args.base_channels or 'the trainer default'}), same Adam settings, "
      f"global batch {', '.join(map(str, args.batch_size))}. Variants: `eager` (eager "
      "GradientTape loop, keras-io style), `tf_function` (one tf.function per D and per G "
      "step, TF DCGAN tutorial style"
      + ("; for pix2pix the TF pix2pix tutorial's step: the trainer's jitter, one generator "
         "forward pass, two tapes, both optimizers in one tf.function" if translation else "")
      + "), `*_bf16` (the same loop with the networks built under mixed_bfloat16), "
      "`trainer*` (`training.trainer.run` with "
      f"`strategy={args.trainer_strategy}`: defaults, then one field changed), `torch` "
      "(bench/torch_train_step.py: the same architectures in PyTorch on random tensors, no "
      "input pipeline). Each variant runs in its own process"
      + (f"; {args.rounds} rounds, the variants taking turns (order rotated each round), "
         "each row the median round. " if args.rounds > 1 else ". ") +
      f"eager, tf_function and torch: {args.warmup} warm-up generator steps, then "
      f"{args.steps} timed; trainer: `train_steps={2 * args.steps}`, "
      f"`log_every={args.steps}`, the second log interval's steps/s (the first one traces "
      "and compiles). Real images/s = real images consumed per second (n_critic x batch "
      "per generator step for wgan_gp). Peak RSS: `ru_maxrss` of the variant's process.",
      "",
  ]
  for section in sections:
    lines += section
  lines.append("Absolute numbers on a shared machine are noise; compare the ratios.")
  return "\n".join(lines) + "\n"


def _median(rounds):
  """The run of median images/s among one variant's rounds (the range in its note)."""
  good = sorted((r for r in rounds if "images_per_sec" in r), key=lambda r: r["images_per_sec"])
  if not good:
    return rounds[0]
  if len(rounds) == 1:
    return good[0]
  median = dict(good[(len(good) - 1) // 2])
  median["note"] = (f"median of {len(good)} rounds ({good[0]['images_per_sec']:,.1f}-"
                    f"{good[-1]['images_per_sec']:,.1f} img/s), " + median.get("note", ""))
  return median


def _progress(name, algo, variant, r, seconds):
  if "skipped" in r:
    text = r["skipped"]
  elif "error" in r:
    text = f"error: {r['error']}"
  else:
    text = (f"{r['images_per_sec']:,.1f} real images/s, {r['steps_per_sec']:.3f} G steps/s, "
            f"peak RSS {r['peak_rss_mib']:,.0f} MiB")
  print(f"[{name}] {algo} {variant}: {text} ({seconds:.0f} s)", flush=True)


def main(argv):
  args = _parse_args(argv)
  if args.variant:
    return _child_main(args)
  logging.set_verbosity(logging.WARNING)
  when = datetime.datetime.now()
  machine = report.machine()
  print(f"{when:%Y-%m-%d %H:%M:%S}  {machine}", flush=True)
  sections = []
  for name, algos in _pairs(args):
    data_dir = _prepare_data(name, args)
    for batch_size in args.batch_size:
      results = {}
      for algo in algos:
        runs = {variant: [] for variant in args.variants}
        for round_index in range(args.rounds):
          for variant in timing.turns(args.variants, round_index):
            start = time.perf_counter()
            r = _run_child(variant, algo, data_dir, batch_size, args)
            runs[variant].append(r)
            _progress(f"{name} b{batch_size}", algo, variant, r, time.perf_counter() - start)
        results[algo] = {variant: _median(runs[variant]) for variant in args.variants}
      sections.append(_dataset_section(name, data_dir, batch_size, args, results))
  text = _report(args, machine, when, sections)
  print()
  print(text, end="")
  if args.results_dir:
    print(f"\nwrote {report.save(args.results_dir, 'train_step', text, when, args.results_tag)}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
