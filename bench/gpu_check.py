"""python -m bench.gpu_check --budget_s=480
python -m bench.gpu_check --cpu_smoke --results_dir=/tmp/gpu_check

The prepared GPU check: one command that proves the GPU code paths and
measures their speed, on built-in data (nothing to download), in about 8
minutes on one GPU. What each row decides: BUILD.md, "When a GPU is available".

It prints one table and writes it, one row at a time as each is measured, to
`RESULTS_DIR/gpu-<date>-<device>.md` (the GPU's name, or `cpu-smoke`).

The rows, in the order they run (`--plan_for=GPUS` prints them for a machine
with that many GPUs; the results file's header has the plan it ran). The rows
whose verdicts set defaults run first.

Correctness rows (PASS/FAIL with the measured number; tolerances from
training/equivalence.py, the ones the CPU tests use), on the first GPU split
into two logical GPUs:
1. XLA on == off after 2 steps: wgan_gp, sngan, pix2pix --nojitter (1
   replica), judged against a noise floor: XLA off run twice, all three runs
   non-deterministic as the defaults run (sets XLA_AUTO);
2. mixed_float16 follows float32 (1 and 2 replicas); the loss scale halves on
   inf and doubles after 2,000 finite steps; an inf on one replica skips the
   step on every replica;
4. `--xla=auto` and `--precision=auto` resolve to what BUILD.md says, and the
   run trains;
3. 2 replicas == 1 replica; the row names the all-reduce the strategy factory
   picked there.
Then, with two GPUs or more, over every whole GPU as `--strategy=mirrored`
runs there: 3n (information) whether NCCL all-reduces at all, then 5a every
GPU == 1 GPU (sngan, synchronized batch norm) and 5b an inf on the last GPU
skips the step on every GPU (the all-reduced finite check). On one GPU they
are not run (NCCL cannot put two ranks on one GPU); `--cpu_smoke` runs 5a-5b
on its two logical CPUs.

Speed rows (bench/train_step.py's eager loop, tf.function loop and trainer,
from bench/loops.py, same networks; real images/s, ratios to the eager and
tf.function loops of the same algorithm, size and batch measured in this
run, peak GPU memory): the default config (sngan, 32 px, the trainer's
default batch and width, 32 and 32) with the trainer, every precision with
XLA on and off, `--steps_per_loop` 1 against 10, then the eager and
tf.function loops (the trainer's ratios to them are listed under the
table), the input stall at batch 256; then dcgan,
sngan and wgan_gp at 32, 64 and 128 px and batch 64 and 256 at the papers'
width 64: the three loops first, then the precision and XLA variants. The
full list takes far longer than 8 minutes: `--budget_s` cuts it.

Budget: before each row the time left is checked against the longest row of
its kind so far; a row that would not fit is skipped (and listed), and a child
still running at the budget is stopped, so the command ends before
`--budget_s` seconds with every measured row kept.

Exit status: 0 when every correctness row passed; 1 when one failed or could
not run (ERROR); 3 when none failed but some were skipped for the budget.

`--cpu_smoke` runs the correctness rows, 5a-5b and one small speed row on two
logical CPUs (tests/test_gpu_check.py; the time: BUILD.md). Each group of rows
runs in its own child process of this module, with the devices it needs (two
logical devices for the correctness rows, every GPU for 3n and 5a-5b, the
whole first GPU for each speed row).
"""

import argparse
import dataclasses
import datetime
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

STARTED = time.time()  # The budget counts from here, before TensorFlow's import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from algorithms import gans  # pylint: disable=wrong-import-position
from bench import child as child_lib  # pylint: disable=wrong-import-position
from bench import gpu_check_rows as rows_lib  # pylint: disable=wrong-import-position
from bench import loops  # pylint: disable=wrong-import-position
from bench import report  # pylint: disable=wrong-import-position
from training import config as config_lib  # pylint: disable=wrong-import-position

COLUMNS = ("#", "check", "result", "measured", "limit", "real images/s", "vs eager",
           "vs tf.function", "peak GPU MiB", "notes")
ROW_MARK = "GPU_CHECK_ROW "  # Prefixes a child's row on its stdout.
MARGIN_S = 3.0  # Kept at the end of the budget for the summary.
FIRST_ROW_ESTIMATE_S = 15.0  # The estimate before any row of a kind has run.
NCCL_PROBE_LIMIT_S = 90.0  # An NCCL set-up that fails may hang instead.
WHOLE_GPUS_NEED = "NCCL needs two whole GPUs; a split GPU uses HierarchicalCopyAllReduce (row 3)"
PLAN_SPEED_ROWS_SHOWN = 5  # In the results file's header.

SPEED_ALGOS = loops.ALGOS
SPEED_SIZES = (32, 64, 128)
SPEED_BATCHES = (64, 256)
SPEED_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
SPEED_EXAMPLES = 4096  # Examples converted per size (the reader repeats them).
DEFAULT_BATCH = gans.IMAGE_BATCH  # The trainer's default global batch for images.
GRID_WIDTH = 64  # The grid's --base_channels: the papers' width (the default row: the trainer's).


@dataclasses.dataclass(frozen=True)
class SpeedSpec:
  """One speed row: which loop, on what, with which trainer settings."""
  loop: str  # eager, tf_function or trainer.
  algo: str
  size: int
  batch: int
  overrides: tuple = ()  # (TrainConfig field, value) pairs on the trainer's defaults.
  stall: bool = False  # Also time the trainer fed from one cached batch.
  versus: str | None = None  # The row id whose images/s this row is compared with.
  same_as_default: bool = False  # Skipped if it equals the group's default as resolved.
  width: int | None = None  # --base_channels; None: the trainer's default.

  def label(self):
    text = f"{self.loop} {self.algo} {self.size}px batch {self.batch}"
    if self.width:
      text += f" width {self.width}"
    if self.overrides:
      text += ", " + " ".join(f"{k}={v}" for k, v in self.overrides)
    elif self.loop == "trainer":
      text += ", defaults"
    return text + (" (input stall)" if self.stall else "")

  def group(self):
    return (self.algo, self.size, self.batch, self.width)


def speed_plan(cpu_smoke):
  """The speed rows in the order they run: [(id, SpeedSpec)]."""
  if cpu_smoke:
    return [("S1", SpeedSpec("trainer", config_lib.TrainConfig().algo,
                             rows_lib.default_image_size(), 16))]
  default = (config_lib.TrainConfig().algo, rows_lib.default_image_size(), DEFAULT_BATCH)

  def variants(group, width=None):
    return [SpeedSpec("trainer", *group, overrides=(("precision", p), ("xla", x)),
                      same_as_default=True, width=width)
            for p in SPEED_PRECISIONS for x in ("on", "off")]

  # First the rows whose figures set defaults: the default trainer, each
  # precision with XLA on and off (XLA_AUTO, --precision=auto), then
  # --steps_per_loop=1 against the default; then the loops the trainer is
  # measured against (its ratios to them are given under the table).
  specs = [SpeedSpec("trainer", *default)] + variants(default)
  specs.append(SpeedSpec("trainer", *default, overrides=(("steps_per_loop", 1),),
                         versus="S1"))
  specs += [SpeedSpec("eager", *default), SpeedSpec("tf_function", *default)]
  specs.append(SpeedSpec("trainer", default[0], default[1], max(SPEED_BATCHES), stall=True))
  # The grid at the papers' width: what a GPU user trains.
  groups = [(algo, size, batch) for size in SPEED_SIZES for batch in SPEED_BATCHES
            for algo in SPEED_ALGOS]
  for group in groups:
    specs += [SpeedSpec(loop, *group, width=GRID_WIDTH)
              for loop in ("eager", "tf_function", "trainer")]
  for group in groups:
    specs += variants(group, GRID_WIDTH)
  return [(f"S{i + 1}", spec) for i, spec in enumerate(specs)]


# ---------------------------------------------------------------------------
# The table, the results file and the exit status.


def _cell(value, fmt):
  return "" if value is None else format(value, fmt)


def format_row(row):
  """A result dict -> the markdown table line."""
  cells = [row.get("id", ""), row.get("check", ""), row.get("status", ""),
           row.get("measured", ""), row.get("limit", ""),
           _cell(row.get("images_per_sec"), ",.1f"),
           _cell(row.get("vs_eager"), ".2f") + ("x" if row.get("vs_eager") else ""),
           _cell(row.get("vs_tf_function"), ".2f") + ("x" if row.get("vs_tf_function") else ""),
           _cell(row.get("peak_gpu_mib"), ",.0f"), row.get("notes", "")]
  # "\|" is a literal | inside a markdown table cell.
  return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


EXIT_MEANINGS = {0: "every correctness row passed",
                 1: "a correctness row failed or could not run",
                 3: "no correctness row failed, but some were not run (--budget_s)"}


def exit_status(rows):
  """The exit status for these rows (EXIT_MEANINGS)."""
  statuses = [r["status"] for r in rows if r.get("kind") == "correctness"]
  if any(s in ("FAIL", "ERROR") for s in statuses):
    return 1
  if any(s != "PASS" for s in statuses) or len(statuses) < len(rows_lib.CORRECTNESS):
    return 3
  return 0


class ResultsFile:
  """The markdown file, written as the rows come (`report.LiveFile`), and the
  same lines printed."""

  def __init__(self, path, header_lines):
    self.path = path
    self.rows = []
    self._file = report.LiveFile(path)
    self._file.write(header_lines + ["", "| " + " | ".join(COLUMNS) + " |",
                                     "|" + "|".join("---" for _ in COLUMNS) + "|"])

  def add(self, row):
    self.rows.append(row)
    self._file.write([format_row(row)])

  def close(self, lines):
    self._file.close([""] + lines)


def device_label(cpu_smoke):
  """(file-name label, description) of the device the check runs on."""
  if cpu_smoke:
    return "cpu-smoke", "2 logical CPUs (--cpu_smoke)"
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus:
    raise SystemExit("gpu_check: no GPU visible to TensorFlow; install "
                     "'tensorflow[and-cuda]==2.21.*' (BUILD.md), or run --cpu_smoke")
  details = tf.config.experimental.get_device_details(gpus[0])
  name = details.get("device_name", "gpu")
  label = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"
  capability = details.get("compute_capability")
  return label, (f"{name}" + (f", compute capability {capability[0]}.{capability[1]}"
                             if capability else "") + f"; {len(gpus)} GPU(s), the first used")


# ---------------------------------------------------------------------------
# The parent: children, budget, ratios.


class _Budget:
  """The deadline, and the longest row of each kind so far (the estimate)."""

  def __init__(self, budget_s, start):
    self.start = start
    self.deadline = self.start + budget_s - MARGIN_S
    self.longest = {}

  def fits(self, kind):
    return time.time() + self.longest.get(kind, FIRST_ROW_ESTIMATE_S) <= self.deadline

  def record(self, kind, seconds):
    self.longest[kind] = max(self.longest.get(kind, 0.0), seconds)


def _run_child(flags, budget, on_row, log_path, limit_s=None):
  """Runs this module with `flags` in a child process, calling on_row(dict) for
  each row it prints; stops it at the deadline (or after `limit_s`). Returns
  (exit code, stopped, the last line of its stderr)."""
  cmd = child_lib.command("bench.gpu_check", *flags)
  with open(log_path, "w", encoding="utf-8") as log:
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        cmd, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    stopped = threading.Event()

    def stop():
      stopped.set()
      try:
        os.killpg(proc.pid, signal.SIGKILL)  # The child and its conversion workers.
      except ProcessLookupError:
        pass

    seconds = budget.deadline - time.time()
    timer = threading.Timer(max(0.0, min(seconds, limit_s or seconds)), stop)
    timer.start()
    try:
      for line in proc.stdout:
        if line.startswith(ROW_MARK):
          on_row(json.loads(line[len(ROW_MARK):]))
      code = proc.wait()
    finally:
      timer.cancel()
  with open(log_path, encoding="utf-8") as log:
    return code, stopped.is_set(), child_lib.last_line(log.read())


def _common_flags(args, budget):
  flags = [f"--deadline={budget.deadline}", f"--steps={args.steps}",
           f"--warmup={args.warmup}", f"--examples={args.examples}"]
  if args.cpu_smoke:
    flags.append("--cpu_smoke")
  if args.data_cache:
    flags.append(f"--data_cache={args.data_cache}")
  return flags


def _run_correctness(args, budget, out, work, checks=rows_lib.CORRECTNESS,
                     child="correctness"):
  """Correctness rows (`checks`: id -> check), in one child; after a crash, a
  new child goes on with the rows after the one that crashed."""
  remaining = list(checks)
  attempt = 0
  while remaining:
    attempt += 1

    def on_row(row):
      row.update(kind="correctness", check=checks[row["id"]])
      out.add(row)
      remaining.remove(row["id"])

    code, stopped, tail = _run_child(
        [f"--child={child}", f"--rows={','.join(remaining)}", *_common_flags(args, budget)],
        budget, on_row, os.path.join(work, f"{child}-{attempt}.log"))
    if remaining:  # The child died (or was stopped) in the middle of remaining[0].
      row_id = remaining.pop(0)
      out.add({"id": row_id, "kind": "correctness", "check": checks[row_id],
               "status": "SKIPPED" if stopped else "ERROR",
               "measured": f"stopped at --budget_s={args.budget_s:g}" if stopped
                           else f"child exited {code}: {tail}"})
      if stopped:
        for row_id in remaining:
          out.add({"id": row_id, "kind": "correctness", "check": checks[row_id],
                   "status": "SKIPPED", "measured": "not run: --budget_s"})
        remaining.clear()


def _run_whole_gpus(args, budget, out, work, num_gpus, nccl_works):
  """Rows 5a-5b over every whole GPU (NcclAllReduce), after the NCCL probe;
  with --cpu_smoke over the two logical CPUs."""
  checks = rows_lib.WHOLE_GPUS
  if not args.cpu_smoke and num_gpus < 2:
    for row_id, check in checks.items():
      out.add({"id": row_id, "kind": "info", "check": check, "status": "info",
               "measured": f"not run: {num_gpus} GPU", "notes": WHOLE_GPUS_NEED})
  elif not args.cpu_smoke and not nccl_works:
    for row_id, check in checks.items():
      out.add({"id": row_id, "kind": "correctness", "check": check, "status": "ERROR",
               "measured": "not run: NCCL did not all-reduce over the GPUs (row 3n)"})
  else:
    _run_correctness(args, budget, out, work, checks, child="whole")


def _run_nccl_probe(args, budget, out, work, num_gpus):
  """Row 3n; returns whether NCCL all-reduced over every whole GPU."""
  row = {"id": "3n", "kind": "info", "check": "NCCL all-reduce over every whole GPU"}
  if args.cpu_smoke:
    out.add(dict(row, status="info", measured="n/a: NCCL is GPU only",
                 notes="the CPU replicas use ReductionToOneDevice (rows 2b, 2c, 3, 5)"))
    return False
  if num_gpus < 2:  # NCCL cannot put two ranks on one GPU ("Duplicate GPU detected").
    out.add(dict(row, status="info", measured=f"not run: {num_gpus} GPU",
                 notes=WHOLE_GPUS_NEED))
    return False
  if not budget.fits("nccl"):
    out.add(dict(row, status="SKIPPED", measured="not run: --budget_s"))
    return False
  start = time.time()
  got = []
  code, stopped, tail = _run_child(["--child=nccl", *_common_flags(args, budget)], budget,
                                   got.append, os.path.join(work, "nccl.log"),
                                   limit_s=NCCL_PROBE_LIMIT_S)
  seconds = time.time() - start
  if got:
    out.add(dict(row, **got[0]))
    return got[0].get("works", False)
  if stopped:
    out.add(dict(row, status="info", measured=f"NCCL stopped after {seconds:.0f} s (hung, or "
                 "--budget_s)"))
  else:
    out.add(dict(row, status="info", measured=f"NCCL fails: child exited {code}: {tail}"))
  return False


def _run_speed(args, budget, out, work):
  """The speed rows; returns (the labels of those not measured, the lines of
  the ratios measured after their rows: a trainer row runs before the eager
  and tf.function loops of its group when it sets a default)."""
  baselines = {}  # (group, loop) -> images/s
  by_id = {}
  before_baselines = []  # (row id, group, images/s) of trainer rows ahead of their loops
  defaults = {}  # group -> (xla, precision) as the group's default trainer resolved them
  not_run = []
  for row_id, spec in speed_plan(args.cpu_smoke):
    if spec.same_as_default and defaults.get(spec.group()) == tuple(
        dict(spec.overrides)[k] for k in ("xla", "precision")):
      continue  # The default trainer row of this group measured it already.
    if not budget.fits("speed"):
      not_run.append(f"{row_id} {spec.label()}")
      continue
    start = time.time()
    got = []
    payload = json.dumps(dict(dataclasses.asdict(spec), overrides=dict(spec.overrides)))
    code, stopped, tail = _run_child(
        ["--child=speed", f"--spec={payload}", *_common_flags(args, budget)], budget,
        got.append, os.path.join(work, f"speed-{row_id}.log"))
    row = dict(got[0] if got else {}, id=row_id, kind="speed", check="speed: " + spec.label())
    if not got and stopped:
      row.update(status="SKIPPED", measured=f"stopped at --budget_s={args.budget_s:g}")
    elif not got:
      row.update(status="ERROR", measured=f"child exited {code}: {tail}")
    if row["status"] == "ok":
      budget.record("speed", time.time() - start)
      images = row["images_per_sec"]
      by_id[row_id] = images
      if spec.loop == "trainer" and not spec.overrides and not spec.stall:
        defaults[spec.group()] = ("on" if row.get("xla") else "off", row.get("precision"))
      for loop in ("eager", "tf_function"):
        base = baselines.get((spec.group(), loop))
        if base and spec.loop != loop:
          row[f"vs_{loop}"] = images / base
      if spec.loop == "trainer" and "vs_eager" not in row:
        before_baselines.append((row_id, spec.group(), images))
      if spec.loop in ("eager", "tf_function"):
        baselines[(spec.group(), spec.loop)] = images
      if spec.versus in by_id:
        row["notes"] = (f"{images / by_id[spec.versus]:.2f}x row {spec.versus}; "
                        + row.get("notes", ""))
    row["notes"] = (row.get("notes", "") + f" ({time.time() - start:.0f} s)").strip()
    out.add(row)
  late = []
  for row_id, group, images in before_baselines:
    ratios = [f"{images / baselines[(group, loop)]:.2f}x {label}"
              for loop, label in (("eager", "eager"), ("tf_function", "tf.function"))
              if (group, loop) in baselines]
    if ratios:
      late.append(f"- {row_id}: {', '.join(ratios)} (measured after it)")
  return not_run, late


def plan(num_gpus, cpu_smoke):
  """The rows in the order they run, with where each runs or why it does not:
  [(id, check, where)]."""
  split = "2 logical CPUs" if cpu_smoke else "the first GPU split in two (TF32 off)"
  rows = [(i, check, split) for i, check in rows_lib.CORRECTNESS.items()]
  if cpu_smoke:
    rows.append(("3n", "NCCL all-reduce over every whole GPU", "not run: NCCL is GPU only"))
    whole = "2 logical CPUs standing in for whole GPUs (ReductionToOneDevice)"
  elif num_gpus < 2:
    rows.append(("3n", "NCCL all-reduce over every whole GPU",
                 f"not run: {num_gpus} GPU ({WHOLE_GPUS_NEED})"))
    whole = f"not run: {num_gpus} GPU ({WHOLE_GPUS_NEED})"
  else:
    rows.append(("3n", "NCCL all-reduce over every whole GPU",
                 f"{num_gpus} whole GPUs, at most {NCCL_PROBE_LIMIT_S:g} s"))
    batch = 8 * num_gpus // math.gcd(8, num_gpus)
    whole = (f"{num_gpus} whole GPUs, NcclAllReduce, global batch {batch} (TF32 off), "
             "if row 3n all-reduced")
  rows += [(i, check, whole) for i, check in rows_lib.WHOLE_GPUS.items()]
  speed_device = "one CPU" if cpu_smoke else "the whole first GPU"
  rows += [(i, "speed: " + spec.label(), f"{speed_device}, until --budget_s")
           for i, spec in speed_plan(cpu_smoke)]
  return rows


def format_plan(rows, limit=None):
  """The plan as text lines; the speed rows past `limit` are counted, not listed."""
  lines, speed = [], 0
  for row_id, check, where in rows:
    speed += row_id.startswith("S")
    if limit is None or not row_id.startswith("S") or speed <= limit:
      lines.append(f"- {row_id}: {check} -- {where}")
  if limit is not None and speed > limit:
    lines.append(f"- ... and {speed - limit} more speed rows (`--plan_for` lists them all)")
  return lines


def _parent(args):
  logging.set_verbosity(logging.WARNING)
  if args.plan_for is not None:
    for line in format_plan(plan(args.plan_for, args.cpu_smoke)):
      print(line)
    return 0
  label, device = device_label(args.cpu_smoke)
  num_gpus = 0 if args.cpu_smoke else len(tf.config.list_physical_devices("GPU"))
  if not args.cpu_smoke:  # The children use the GPU; this process never does.
    tf.config.set_visible_devices([], "GPU")
  budget = _Budget(args.budget_s, STARTED)
  when = datetime.datetime.now()
  path = report.results_path(args.results_dir, "gpu", when, tag=label)
  out = ResultsFile(path, report.header("GPU check", "bench.gpu_check", when) + [
      f"Device: {device}", "",
      "Correctness rows: PASS/FAIL against the CPU tests' tolerances "
      "(training/equivalence.py). Speed rows: bench/train_step.py's loops (bench/loops.py), "
      f"{args.steps} timed generator steps; ratios to the eager and tf.function loops of the "
      "same algorithm, size and batch, in this run. What each row decides: BUILD.md, "
      "\"When a GPU is available\".", "", "The plan, in order:",
      *format_plan(plan(num_gpus, args.cpu_smoke), limit=PLAN_SPEED_ROWS_SHOWN)])
  work = tempfile.mkdtemp(prefix="gpu_check_")
  _run_correctness(args, budget, out, work)
  nccl_works = _run_nccl_probe(args, budget, out, work, num_gpus)
  _run_whole_gpus(args, budget, out, work, num_gpus, nccl_works)
  not_run, late = _run_speed(args, budget, out, work)
  status = exit_status(out.rows)
  summary = [f"Exit status {status}: {EXIT_MEANINGS[status]}; "
             f"{time.time() - budget.start:.0f} s of --budget_s={args.budget_s:g}."]
  if late:
    summary += ["", "Ratios of the rows run before the loops they are compared with:", *late]
  if not_run:
    summary += ["", f"Not measured within --budget_s ({len(not_run)} speed rows): "
                + "; ".join(not_run) + "."]
  if status == 0 and all(r["status"] in ("PASS", "ok", "info") for r in out.rows):
    shutil.rmtree(work, ignore_errors=True)
  else:
    summary += ["", f"The child processes' logs: {work}"]
  out.close(summary)
  print(f"\nwrote {path}")
  return status


# ---------------------------------------------------------------------------
# The children.


def _emit(row_id, row):
  print(ROW_MARK + json.dumps(dict(row, id=row_id)), flush=True)


def _child(args):
  logging.set_verbosity(logging.WARNING)
  rows_lib.configure_devices(
      args.cpu_smoke, split=args.child == "correctness" or (
          args.child == "whole" and args.cpu_smoke),
      every_gpu=args.child in ("nccl", "whole"))
  if args.child == "nccl":
    _emit("3n", rows_lib.nccl_probe())
    return 0
  if args.child == "speed":
    spec = json.loads(args.spec)
    try:
      row = rows_lib.speed_row(spec, args.steps, args.warmup, args.data_cache, args.examples)
    except Exception as e:  # pylint: disable=broad-except  (the row says what failed)
      row = {"status": "ERROR", "measured": child_lib.error_line(e)}
    _emit("", row)
    return 0
  work = tempfile.mkdtemp(prefix="gpu_check_correctness_")
  try:
    _correctness_rows(args, rows_lib.Correctness(work, args.data_cache, args.cpu_smoke))
  finally:
    shutil.rmtree(work, ignore_errors=True)
  return 0


def _correctness_rows(args, checks):
  """Runs and emits the rows of --rows, skipping those that would not end
  before --deadline (estimated by the longest row so far)."""
  longest = FIRST_ROW_ESTIMATE_S
  for row_id in args.rows.split(","):
    if time.time() + longest > args.deadline:
      _emit(row_id, {"status": "SKIPPED", "measured": "not run: --budget_s"})
      continue
    start = time.time()
    try:
      row = checks.rows[row_id]()
    except Exception as e:  # pylint: disable=broad-except  (the row says what failed)
      row = {"status": "ERROR", "measured": child_lib.error_line(e)}
    seconds = time.time() - start
    longest = max(longest, seconds)
    row["notes"] = (row.get("notes", "") + f" ({seconds:.0f} s)").strip()
    _emit(row_id, row)


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--budget_s", type=float, default=480.0,
                 help="Stop cleanly before this many seconds (rows that would not fit are "
                      "skipped and listed).")
  p.add_argument("--cpu_smoke", action="store_true",
                 help="The correctness rows and one small speed row on 2 logical CPUs.")
  p.add_argument("--results_dir", default=os.path.join(os.path.dirname(
      os.path.abspath(__file__)), "results"),
                 help="Where gpu-<date>-<device>.md is written (default: bench/results).")
  p.add_argument("--data_cache", default=None,
                 help="Cache of the converted built-in data (default: the trainer's cache).")
  p.add_argument("--steps", type=int, default=None,
                 help="Timed generator steps per speed row (default 50; 2 with --cpu_smoke).")
  p.add_argument("--warmup", type=int, default=None,
                 help="Untimed steps of the eager and tf.function loops (default 5; 1 with "
                      "--cpu_smoke).")
  p.add_argument("--examples", type=int, default=None,
                 help=f"Examples of builtin:shapes converted per image size for the speed rows "
                      f"(default {SPEED_EXAMPLES}; 256 with --cpu_smoke).")
  # What the parent passes to its children.
  p.add_argument("--plan_for", type=int, default=None, metavar="GPUS",
                 help="Print the rows this check runs on a machine with GPUS GPUs, in order, "
                      "with where each runs or why not, and exit (nothing is run).")
  p.add_argument("--child", choices=("correctness", "whole", "speed", "nccl"), default=None,
                 help=argparse.SUPPRESS)
  p.add_argument("--rows", default="", help=argparse.SUPPRESS)
  p.add_argument("--spec", default="", help=argparse.SUPPRESS)
  p.add_argument("--deadline", type=float, default=float("inf"), help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  smoke = args.cpu_smoke
  args.steps = args.steps or (2 if smoke else 50)
  args.warmup = args.warmup if args.warmup is not None else (1 if smoke else 5)
  args.examples = args.examples or (256 if smoke else SPEED_EXAMPLES)
  if args.budget_s <= MARGIN_S or args.steps < 1 or args.warmup < 0:
    p.error(f"--budget_s must be > {MARGIN_S:g}, --steps >= 1, --warmup >= 0")
  return args


def main(argv):
  args = _parse_args(argv)
  return _child(args) if args.child else _parent(args)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
