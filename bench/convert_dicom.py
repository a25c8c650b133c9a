r"""python -m bench.convert_dicom --results_dir=bench/results

DICOM conversion throughput, side by side in one run, on the same files: the
pipeline's `dicom:DIR` conversion against the loop of pydicom reads into
16-bit PNG files that a user would write instead.

1. Builds a synthetic but realistic DICOM folder in a temp dir from pydicom's
   test file `CT_small.dcm` (128x128 CT, int16, RescaleIntercept -1024; never
   copied into the repository): `--num_series` series of `--slices` slices
   each (`--slice_size` upsamples them, e.g. to a clinical 512x512), spread
   over `--num_patients` patients. Every slice gets its own
   SOPInstanceUID, its series' SeriesInstanceUID, StudyInstanceUID and
   FrameOfReferenceUID (`pydicom.uid.generate_uid`), InstanceNumber, and an
   ImagePositionPatient stepped along z by the slice thickness; its pixels are
   the original's rolled by a per-slice offset plus Gaussian noise, so that
   no two files are alike. The files lie in nested folders
   `PATnn/<study date>/SER<hex>/`, named `IMnnnnn` from a shuffled index (so
   that name order is not slice order), about half of them without the `.dcm`
   extension.
2. Times, in rounds taking turns (the order reversed every other round),
   after one untimed warm-up round:
   - "pipeline": `input.convert.run` with `source=dicom:DIR`, the fixed
     `--window`, `encoding=raw`, 16-bit output, `num_workers` 1 and the CPUs
     available. It finds every DICOM file whatever its name, groups the
     slices into series by SeriesInstanceUID, orders them by
     ImagePositionPatient, windows each slice onto 16-bit codes, writes
     TFRecord shards (fsynced, sha256 sidecars) and a manifest with the
     series table and the windows: a training-ready dataset. With 1 worker it
     runs in this process (TensorFlow already imported after the warm-up);
     with more, the time includes spawning the workers, importing TensorFlow
     in each, and waiting for them to exit.
   - "baseline": for every file under the folder, `pydicom.dcmread`,
     `pixel_array * RescaleSlope + RescaleIntercept`, the same window onto
     uint16 codes (the same rounding), and a 16-bit grayscale PNG with Pillow
     (`Image.fromarray(uint16)`, mode I;16). One process, which is what such
     a loop is, and a `multiprocessing` pool (spawn) of the same number of
     workers as the pipeline, pool start-up included.
   - with `--diag` (the default), two fixed costs of the pipeline, in the same
     rounds: its header scan alone (`input.dicom.scan`), and `import
     tensorflow` in a fresh interpreter (what each worker, or a fresh
     `python -m pipeline.convert`, pays).
3. Checks, untimed, that both produced the same images: the multiset of
   slices is identical, and the pipeline's slices of each series are the
   files of one SeriesInstanceUID in InstanceNumber order.
4. Prints a markdown table (slices/s, median of the rounds, and the ratios
   pipeline / baseline) and, with `--results_dir`, writes it to
   RESULTS_DIR/convert_dicom-YYYY-MM-DD.md with the machine line, the CPU
   model and whether it has avx512_bf16, the load average, and the commit and
   state of input/ (the pipeline code timed).

The default run (8 series x 64 slices, 3 rounds) takes about 1.5 minutes on
a 2-core CPU. Absolute numbers depend on the machine and its load; compare the
ratios taken in the same run.
"""

import argparse
import copy
import datetime
import hashlib
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position
import pydicom  # pylint: disable=wrong-import-position
from pydicom import data as pydicom_data  # pylint: disable=wrong-import-position
from pydicom import uid as pydicom_uid  # pylint: disable=wrong-import-position

# TensorFlow (through bench/report.py and input.convert) is imported in
# `main` only: the baseline's spawned pool workers import this module, and a
# user's loop would not pay for TensorFlow.

TEST_FILE = "CT_small.dcm"
NOISE_SIGMA = 4.0  # Stored values (= HU here: slope 1) of per-pixel noise.
MAX_CODE = 65535
PIPELINE = "pipeline dicom: convert (raw, 16-bit)"
BINARY = "python -m pipeline.convert (fresh process)"
REF = "python -m pipeline.convert at --compare_ref"
AUTO = 0  # The pipeline's default --num_workers (None).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE_SIZE = 128  # CT_small.dcm's rows and columns.
BASELINE = "baseline loop: dcmread -> HU -> window -> 16-bit PNG"
DIAG_SCAN = "[diag] pipeline header scan alone (input.dicom.scan)"
DIAG_TF = "[diag] import tensorflow in a fresh process"


def _worker_list(text):
  """An argparse type: comma-separated worker counts, each >= 1."""
  try:
    counts = [int(w) for w in text.split(",")]
  except ValueError:
    raise argparse.ArgumentTypeError(f"worker counts must be integers, got {text!r}") from None
  if any(w < 1 for w in counts):
    raise argparse.ArgumentTypeError(f"worker counts must be >= 1, got {text!r}")
  return counts


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--num_series", type=int, default=8, help="DICOM series to generate.")
  p.add_argument("--slices", type=int, default=64, help="Slices per series.")
  p.add_argument("--num_patients", type=int, default=3,
                 help="Patients the series are spread over.")
  p.add_argument("--slice_size", type=int, default=TEMPLATE_SIZE,
                 help=f"Slice size NxN: {TEMPLATE_SIZE} is CT_small.dcm's own; a multiple of it "
                      "upsamples the pixels (nearest neighbour), e.g. 512 as in clinical CT.")
  p.add_argument("--window", default="ct_brain",
                 help="A fixed window for both sides: a preset of input/medical/window.py, "
                      "CENTER,WIDTH, or auto (ct_full: the data is CT). Percentile windows are "
                      "per series and have no one-line baseline.")
  p.add_argument("--workers", type=_worker_list, default=None,
                 help="Comma-separated worker counts to time (pipeline num_workers and "
                      "baseline pool size); the pipeline's default (auto: input/workers.py) "
                      "is always timed too. Default: 1 and the CPUs available.")
  p.add_argument("--binary", action=argparse.BooleanOptionalAction, default=True,
                 help="Also time `python -m pipeline.convert` in a fresh process, as a user "
                      "runs it, at each worker count and at its default.")
  p.add_argument("--compare_ref", default=None,
                 help="A git commit (e.g. the one before a change) whose `python -m "
                      "pipeline.convert` with its default workers is timed in the same rounds, "
                      "from a temporary worktree.")
  p.add_argument("--repeats", type=int, default=3,
                 help="Timed rounds (after one warm-up round); median shown.")
  p.add_argument("--baseline_pool", action=argparse.BooleanOptionalAction, default=True,
                 help="Also time the baseline loop in a multiprocessing pool of each worker "
                      "count > 1.")
  p.add_argument("--diag", action=argparse.BooleanOptionalAction, default=True,
                 help="Also time, in the same rounds, two fixed costs of the pipeline: its "
                      "header scan alone (input.dicom.scan) and `import tensorflow` in a fresh "
                      "process.")
  p.add_argument("--seed", type=int, default=0, help="Seed of the synthetic data.")
  p.add_argument("--work_dir", default=None,
                 help="Where to put the DICOM files and the outputs (default: a temp dir, "
                      "removed).")
  p.add_argument("--results_dir", default=None,
                 help="If set, also write the report to RESULTS_DIR/convert_dicom-YYYY-MM-DD.md.")
  args = p.parse_args(argv)
  if min(args.num_series, args.slices, args.num_patients, args.repeats) < 1:
    p.error("--num_series, --slices, --num_patients and --repeats must be >= 1")
  if args.slice_size < TEMPLATE_SIZE or args.slice_size % TEMPLATE_SIZE:
    p.error(f"--slice_size must be a multiple of {TEMPLATE_SIZE}, got {args.slice_size}")
  try:
    args.window_hu = _fixed_window(args.window)
  except ValueError as e:
    p.error(str(e))
  return args


# ---------------------------------------------------------------------------
# Data.


def _make_dicom_folder(root, num_series, slices, num_patients, slice_size, seed):
  """Writes the synthetic DICOM folder.

  Args:
    root: the folder to fill (created).
    num_series: series to write.
    slices: slices per series.
    num_patients: patients the series are spread over (round robin).
    slice_size: rows and columns of every slice, a multiple of the template's.
    seed: seeds the pixel noise and the file names.

  Returns:
    (number of files written, their total bytes).
  """
  template = pydicom.dcmread(pydicom_data.get_testdata_file(TEST_FILE))
  pixels = template.pixel_array  # int16 [128, 128]
  factor = slice_size // pixels.shape[0]
  if pixels.shape != (TEMPLATE_SIZE, TEMPLATE_SIZE) or factor * pixels.shape[0] != slice_size:
    raise ValueError(f"{TEST_FILE} is {pixels.shape}, not {TEMPLATE_SIZE}x{TEMPLATE_SIZE}, or "
                     f"--slice_size={slice_size} is not a multiple of it")
  if factor > 1:
    pixels = np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)
    template.Rows = template.Columns = slice_size
    template.PixelSpacing = [float(v) / factor for v in template.PixelSpacing]
  info = np.iinfo(pixels.dtype)
  rng = np.random.default_rng(seed)
  thickness = float(template.get("SliceThickness", 5.0) or 5.0)
  x0, y0, z0 = (float(v) for v in template.ImagePositionPatient)
  studies = {p: (pydicom_uid.generate_uid(), f"2026{1 + p % 12:02d}{1 + (7 * p) % 28:02d}")
             for p in range(num_patients)}
  total = num_series * slices
  names = rng.permutation(total)  # File k of the whole folder gets name IM<names[k]>.
  extension = rng.random(total) < 0.5
  count, size = 0, 0
  for s in range(num_series):
    patient = s % num_patients
    study_uid, study_date = studies[patient]
    series_uid = pydicom_uid.generate_uid()
    frame_uid = pydicom_uid.generate_uid()
    folder = os.path.join(root, f"PAT{patient:02d}", study_date, f"SER{series_uid[-8:]}")
    os.makedirs(folder, exist_ok=True)
    for k in range(slices):
      ds = copy.deepcopy(template)
      sop_uid = pydicom_uid.generate_uid()
      ds.SOPInstanceUID = sop_uid
      ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
      ds.StudyInstanceUID = study_uid
      ds.StudyDate = study_date
      ds.SeriesInstanceUID = series_uid
      ds.FrameOfReferenceUID = frame_uid
      ds.SeriesNumber = s + 1
      ds.SeriesDescription = f"BENCH SERIES {s + 1}"
      ds.PatientID = f"BENCH{patient:03d}"
      ds.PatientName = f"Bench^Patient{patient:03d}"
      ds.InstanceNumber = k + 1
      z = z0 + k * thickness
      ds.ImagePositionPatient = [x0, y0, z]
      ds.SliceLocation = z
      arr = np.roll(pixels, (k % 16, s % 16), axis=(0, 1)).astype(np.float64)
      arr += rng.normal(0.0, NOISE_SIGMA, arr.shape)
      arr = np.clip(np.round(arr), info.min, info.max).astype(pixels.dtype)
      ds.PixelData = arr.tobytes()
      index = s * slices + k
      name = f"IM{names[index]:05d}" + (".dcm" if extension[index] else "")
      path = os.path.join(folder, name)
      ds.save_as(path, enforce_file_format=True)
      count += 1
      size += os.path.getsize(path)
  return count, size


def _all_files(root):
  """Every file under `root`, sorted: the baseline's discovery."""
  return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def _total_bytes(folder, suffix):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder)
             for f in files if f.endswith(suffix))


def _fixed_window(spec):
  """(low, high) in HU of `--window`, via input/medical/window.py's parser.

  Raises:
    ValueError: not a fixed window.
  """
  from input.medical import window as window_lib  # pylint: disable=import-outside-toplevel
  parsed = window_lib.parse(spec)
  if parsed.kind == "auto":  # The synthetic series are CT: auto means ct_full.
    parsed = window_lib.parse("ct_full")
  if parsed.kind != "fixed":
    raise ValueError(f"--window={spec}: the baseline needs a fixed window "
                     "(a preset, CENTER,WIDTH or auto)")
  return parsed.low, parsed.high


# ---------------------------------------------------------------------------
# The baseline: what a user writes.


def _baseline_file(task):
  """One file: read, rescale to HU, window onto uint16, write a 16-bit PNG."""
  path, out_path, low, high = task
  ds = pydicom.dcmread(path)
  hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
  codes = np.clip(np.round((hu - low) * (MAX_CODE / (high - low))), 0, MAX_CODE)
  Image.fromarray(codes.astype(np.uint16)).save(out_path)
  return 1


def _baseline(root, out_dir, window, workers):
  """Converts every file under `root`; returns the number of PNG files."""
  os.makedirs(out_dir)
  tasks = [(p, os.path.join(out_dir, os.path.relpath(p, root).replace(os.sep, "_") + ".png"),
            *window) for p in _all_files(root)]
  if workers == 1:
    return sum(_baseline_file(t) for t in tasks)
  # spawn, as the pipeline: this process has TensorFlow loaded after the first
  # pipeline run, and fork is unsafe then.
  ctx = multiprocessing.get_context("spawn")
  with ctx.Pool(workers) as pool:
    return sum(pool.imap_unordered(_baseline_file, tasks, chunksize=16))


def _pipeline(root, out_dir, window_spec, workers):
  """Converts `root` with the pipeline; returns the number of examples."""
  from input import convert  # pylint: disable=import-outside-toplevel
  manifest = convert.run(convert.ConvertConfig(
      source=f"dicom:{root}", output=out_dir, num_workers=workers or None, window=window_spec,
      encoding="raw"))
  return manifest["splits"]["train"]["num_examples"]


def _binary(root, out_dir, window_spec, workers, repo=REPO):
  """`python -m pipeline.convert` in a fresh process; returns the number of examples."""
  cmd = [sys.executable, "-m", "pipeline.convert", f"--source=dicom:{root}",
         f"--output={out_dir}", f"--window={window_spec}", "--encoding=raw"]
  if workers != AUTO:
    cmd.append(f"--num_workers={workers}")
  subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
  with open(os.path.join(out_dir, "manifest.json"), encoding="utf-8") as f:
    return json.load(f)["splits"]["train"]["num_examples"]


def _label(workers):
  return "auto" if workers == AUTO else str(workers)


def _scan(root):
  """The pipeline's header scan alone; returns the number of slices found."""
  from input.medical import dicom  # pylint: disable=import-outside-toplevel
  from input.medical import pseudonyms as medical_base  # pylint: disable=import-outside-toplevel
  volumes = dicom.scan(root, medical_base.Pseudonym("0" * 64))[0]
  return sum(v.num_slices for v in volumes)


def _import_tensorflow():
  """`import tensorflow` in a fresh interpreter, as each pipeline worker does."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  subprocess.run([sys.executable, "-c", "import tensorflow"], check=True, env=env,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  return None


# ---------------------------------------------------------------------------
# The check: both made the same images, and the pipeline ordered them.


def _digest(arr):
  return hashlib.sha256(np.ascontiguousarray(arr, np.uint16).tobytes()).hexdigest()


def _check(root, pipeline_dir, baseline_dir, num_series):
  """Raises AssertionError unless both outputs hold the same slices and the
  pipeline's series are the `num_series` series of the files, in
  InstanceNumber order."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from input import manifest as manifest_lib  # pylint: disable=import-outside-toplevel
  by_digest = {}  # baseline digest -> (SeriesInstanceUID, InstanceNumber)
  for path in _all_files(root):
    png = os.path.join(baseline_dir, os.path.relpath(path, root).replace(os.sep, "_") + ".png")
    with Image.open(png) as im:
      if im.mode != "I;16":
        raise AssertionError(f"{png}: PNG mode {im.mode}, want I;16")
      arr = np.array(im)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    by_digest[_digest(arr)] = (str(ds.SeriesInstanceUID), int(ds.InstanceNumber))
  manifest = manifest_lib.load(pipeline_dir)
  feature = manifest["features"]["image"]
  shape = feature["shape"]
  series = {}  # pipeline series id -> {SeriesInstanceUID}
  found = 0
  for path in manifest_lib.shard_paths(pipeline_dir, manifest, "train"):
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
      ex = tf.train.Example.FromString(record).features.feature
      key = ex["key"].bytes_list.value[0].decode()
      arr = np.frombuffer(ex["image"].bytes_list.value[0], "<u2").reshape(shape)[..., 0]
      hit = by_digest.get(_digest(arr))
      if hit is None:
        raise AssertionError(f"pipeline slice {key} matches no baseline PNG")
      vid, index = key.rsplit("/", 1)
      if hit[1] != int(index) + 1:
        raise AssertionError(f"pipeline slice {key} is InstanceNumber {hit[1]}")
      series.setdefault(vid, set()).add(hit[0])
      found += 1
  if found != len(by_digest):
    raise AssertionError(f"pipeline wrote {found} slices, baseline {len(by_digest)}")
  if any(len(uids) != 1 for uids in series.values()) or len(series) != num_series:
    raise AssertionError(f"pipeline series do not match the files' series: {series}")
  return found


# ---------------------------------------------------------------------------
# Reporting.


def _cpu_line(report):
  """The CPU model, whether it has avx512_bf16, and the usable cores."""
  flags_line = ""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          flags_line = line
          break
  except OSError:
    pass
  bf16 = "avx512_bf16" in flags_line.split()
  return (f"{report.cpu_model()}, avx512_bf16 {'yes' if bf16 else 'no'}, "
          f"{report.usable_cpus()} usable core(s) (os.cpu_count {os.cpu_count()})")


def _code_state():
  """The commit and whether input/ differs from it, to tell runs apart while
  the pipeline changes (read-only git; no index refresh)."""
  digest = hashlib.sha256()
  folder = os.path.join(REPO, "input")
  for name in sorted(os.listdir(folder)):
    if name.endswith(".py"):
      with open(os.path.join(folder, name), "rb") as f:
        digest.update(name.encode() + b"\0" + f.read() + b"\0")
  try:
    git = ["git", "--no-optional-locks", "-C", REPO]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(git + ["status", "--porcelain", "--", "input"], check=True,
                             capture_output=True, text=True).stdout.splitlines()
  except (OSError, subprocess.CalledProcessError):
    return f"input/*.py sha256 {digest.hexdigest()[:12]} (no git)"
  state = (f"{len(changed)} uncommitted or untracked file(s) in input/" if changed
           else "input/ as committed")
  return f"commit {head}, {state}; input/*.py sha256 {digest.hexdigest()[:12]}"


def _load():
  try:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "unknown"


def _report(args, report, context, methods, diags, times, data):
  """The whole report as markdown text."""
  n = data["slices"]
  med = {m: statistics.median(ts) for m, ts in times.items() if ts}
  base1 = med[(BASELINE, 1)]
  rows = []
  for name, w in methods:
    ts, t = times[(name, w)], med[(name, w)]
    same = (BASELINE, w)
    vs_same = f"{med[same] / t:.2f}x" if same in med else "-"
    rows.append([name, _label(w), f"{n:,}", f"{t:.2f}", f"{min(ts):.2f} - {max(ts):.2f}",
                 f"{n / t:,.0f}", f"{base1 / t:.2f}x", vs_same])
  header = ["method", "workers", "slices", "seconds (median)", "min - max", "slices/s",
            "vs baseline, 1 process", "vs baseline, same workers"]
  patients = min(args.num_patients, args.num_series)
  lines = report.header("DICOM conversion benchmark", "bench.convert_dicom", context["when"],
                        context["machine"]) + [
      f"CPU: {context['cpu']}. Load average (1/5/15 min) at start {context['load_start']}, "
      f"at end {context['load_end']}.",
      "",
      f"Pipeline code: {context['code']}.",
      "",
      f"Data: {args.num_series} CT series x {args.slices} slices = {n:,} files "
      f"({patients} patient{'s' if patients > 1 else ''}), made from pydicom's `{TEST_FILE}`"
      f"{' upsampled' if data['height'] != 128 else ''}: {data['height']}x{data['width']} "
      "int16 slices, explicit VR little endian, uncompressed; each slice rolled and with "
      f"Gaussian noise (sigma {NOISE_SIGMA:g}), own UIDs, InstanceNumber and z position; "
      "nested folders, shuffled file names, about half without `.dcm`. Window "
      f"`{args.window}` = [{data['window'][0]:g}, {data['window'][1]:g}] HU onto 16-bit "
      f"codes on both sides. Bytes per slice: DICOM file {data['dicom_bytes']:,.0f}, 16-bit "
      f"PNG {data['png_bytes']:,.0f}, raw TFRecord {data['tfrecord_bytes']:,.0f}.",
      "",
      f"{args.repeats} timed rounds after one warm-up round, methods taking turns (order "
      "reversed every other round); median and range of the wall time per method.",
      "",
      report.table(header, rows),
      "",
  ]
  for name, w in methods:
    if name in (BINARY, REF) and (BINARY, 1) in med:
      lines.append(f"- {name} ({_label(w)} workers) / the same with --num_workers=1 = "
                   f"{med[(BINARY, 1)] / med[(name, w)]:.2f}x (above 1: faster)")
    if name == PIPELINE:
      line = (f"- pipeline ({_label(w)} worker{'s' if w != 1 else ''}) / baseline loop "
              f"(1 process) = {base1 / med[(name, w)]:.2f}x")
      if w > 1 and (BASELINE, w) in med:
        line += (f"; / baseline pool ({w} workers) = "
                 f"{med[(BASELINE, w)] / med[(name, w)]:.2f}x")
      lines.append(line)
  lines += [
      f"- check: both sides wrote the same {data['checked']:,} slices (bit-identical 16-bit "
      "codes), and the pipeline's slices of each series are one SeriesInstanceUID in "
      "InstanceNumber order",
      "",
  ]
  if diags:
    diag_rows = []
    for name in diags:
      ts = times[(name, 1)]
      t = med[(name, 1)]
      diag_rows.append([name, f"{t:.2f}", f"{min(ts):.2f} - {max(ts):.2f}",
                        f"{t / n * 1e3:.2f}" if name == DIAG_SCAN else "-"])
    lines += [
        "Fixed costs inside the pipeline rows, timed in the same rounds:",
        "",
        report.table(["diagnostic", "seconds (median)", "min - max", "ms per slice"],
                     diag_rows),
        "",
    ]
  lines += [
      "The sides do not do the same work. The baseline writes one PNG per file and "
      "nothing else. The pipeline first reads every header (finding DICOM files "
      "whatever their names, grouping series by SeriesInstanceUID, ordering slices by "
      "ImagePositionPatient, pseudonymizing series and patients; one process), then reads "
      "each file again for its pixels, writes TFRecord shards (temp name, fsync, rename, "
      "sha256 sidecar) and a manifest with the series table and each series' window: a "
      "dataset the trainer reads as is.",
      "",
      "With 1 worker the pipeline runs in this process, which has TensorFlow loaded "
      "after the warm-up round: a fresh `python -m pipeline.convert --num_workers=1` pays "
      "one TensorFlow import on top (the [diag] row). With more workers, each spawned "
      "worker imports TensorFlow, and the time includes the pool's shutdown (waiting "
      "for the workers to exit). The baseline pool's time includes spawning its "
      "processes (numpy, pydicom and Pillow only).",
      "",
      "Absolute numbers on a shared machine are noise; compare the ratios.",
  ]
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------


def main(argv=None):
  args = _parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  from bench import report  # pylint: disable=import-outside-toplevel  (TensorFlow: see above)
  window = args.window_hu
  counts = sorted(set(args.workers or [1, report.usable_cpus()]))
  context = {"when": datetime.datetime.now(), "load_start": _load(), "code": _code_state(),
             "machine": report.machine(), "cpu": _cpu_line(report)}
  print(f"{context['when']:%Y-%m-%d %H:%M:%S}  {context['machine']}\n{context['cpu']}, "
        f"load {context['load_start']}\n{context['code']}", flush=True)

  methods = [(BASELINE, 1)]
  if args.baseline_pool:
    methods += [(BASELINE, w) for w in counts if w > 1]
  methods += [(PIPELINE, w) for w in counts + [AUTO]]
  if args.binary:
    methods += [(BINARY, w) for w in counts + [AUTO]]
  if args.compare_ref:
    methods.append((REF, AUTO))
  diags = [DIAG_SCAN, DIAG_TF] if args.diag else []

  work = args.work_dir or tempfile.mkdtemp(prefix="bench_convert_dicom_")
  ref_tree = os.path.join(work, "ref")
  if args.compare_ref:
    subprocess.run(["git", "worktree", "add", "--detach", ref_tree, args.compare_ref],
                   cwd=REPO, check=True, capture_output=True)
    context["code"] += f"; --compare_ref {args.compare_ref}"
  root = os.path.join(work, "dicom")
  try:
    shutil.rmtree(root, ignore_errors=True)
    start = time.perf_counter()
    num_files, dicom_bytes = _make_dicom_folder(root, args.num_series, args.slices,
                                                args.num_patients, args.slice_size,
                                                args.seed)
    print(f"wrote {num_files} DICOM files ({dicom_bytes / 1e6:.1f} MB) in "
          f"{time.perf_counter() - start:.1f} s", flush=True)

    runs = methods + [(d, 1) for d in diags]
    times = {m: [] for m in runs}
    kept = {}  # The last output of each side, for the check and the sizes.
    for r in range(args.repeats + 1):
      order = list(runs) if r % 2 == 0 else list(reversed(runs))
      for name, w in order:
        side = {PIPELINE: "pipeline", BINARY: "binary", REF: "ref", BASELINE: "baseline"}.get(name)
        out = os.path.join(work, f"out-{side}-{w}")  # Diagnostics write nothing.
        if side:
          shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        if name == PIPELINE:
          n = _pipeline(root, out, args.window, w)
        elif name == BINARY:
          n = _binary(root, out, args.window, w)
        elif name == REF:
          n = _binary(root, out, args.window, w, repo=ref_tree)
        elif name == BASELINE:
          n = _baseline(root, out, window, w)
        elif name == DIAG_SCAN:
          n = _scan(root)
        else:
          n = _import_tensorflow()
        seconds = time.perf_counter() - start
        if n is not None and n != num_files:
          raise AssertionError(f"{name} ({w} workers) found {n} of {num_files} slices")
        tag = "warm-up" if r == 0 else f"round {r}/{args.repeats}"
        rate = f" = {n / seconds:,.0f} slices/s" if n else ""
        who = "" if name in diags else f", {_label(w)} worker(s)"
        print(f"{tag}  {name}{who}: {seconds:.2f} s{rate}", flush=True)
        if r:
          times[(name, w)].append(seconds)
        if name in (PIPELINE, BASELINE):
          kept[name] = out
    context["load_end"] = _load()

    checked = _check(root, kept[PIPELINE], kept[BASELINE], args.num_series)
    print(f"check: pipeline and baseline hold the same {checked} slices, in series order",
          flush=True)
    ds = pydicom.dcmread(_all_files(root)[0], stop_before_pixels=True)
    data = {"slices": num_files, "height": int(ds.Rows), "width": int(ds.Columns),
            "window": window, "checked": checked, "dicom_bytes": dicom_bytes / num_files,
            "png_bytes": _total_bytes(kept[BASELINE], ".png") / num_files,
            "tfrecord_bytes": _total_bytes(kept[PIPELINE], ".tfrecord") / num_files}
    text = _report(args, report, context, methods, diags, times, data)
    print()
    print(text, end="")
    if args.results_dir:
      path = report.save(args.results_dir, "convert_dicom", text, context["when"])
      print(f"\nwrote {path}")
  finally:
    if args.compare_ref:
      subprocess.run(["git", "worktree", "remove", "--force", ref_tree], cwd=REPO, check=False,
                     capture_output=True)
    if not args.work_dir:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main()
