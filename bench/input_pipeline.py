"""python bench/input_pipeline.py --num_images=4000 --results_dir=bench/results

Input-pipeline throughput, side by side in one run, on the same images.

1. Generates `--num_images` 64x64 RGB PNG files with the built-in `shapes`
   generator, in class subfolders `circle/`, `square/`, `triangle/`.
2. Converts the folder to TFRecords with `input.convert.run`, once with
   `encoding=raw` and once with `encoding=png` (examples/s; the time includes
   spawning the worker processes and importing TensorFlow in each).
3. Reads each conversion with `input.reader.make_dataset` (images/s).
4. Reads the PNG files with the per-file loader of most TF tutorials
   (`list_files` -> `read_file` -> `decode_png` -> `resize` -> shuffle ->
   repeat -> batch -> prefetch), the baseline of the ratios (images/s).

Every loader yields float32 [B, 64, 64, 3] images in [-1, 1] with the same
batch size and shuffle buffer. Each loader gets a fresh iterator, a warm-up,
then a timed window; the loaders take turns for `--repeats` rounds and the
table shows the median. Absolute numbers on a shared machine are noise;
compare the ratios. The target is reader >= 5x the per-file loader.

On a GPU machine run the same command: the input pipeline runs on the host
CPU either way, so compare the ratios, not the absolute numbers.
"""

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from input import builtin  # pylint: disable=wrong-import-position
from input import convert  # pylint: disable=wrong-import-position
from input import reader  # pylint: disable=wrong-import-position

IMAGE_SIZE = 64
TARGET_RATIO = 5.0
BASELINE = "per-file PNG loader"


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--num_images", type=int, default=4000, help="PNG files to generate.")
  p.add_argument("--num_workers", type=int, default=2, help="Conversion worker processes.")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--shuffle_buffer", type=int, default=10_000,
                 help="Shuffle buffer (examples) of every loader.")
  p.add_argument("--warmup_batches", type=int, default=10,
                 help="Batches read before timing (includes filling the shuffle buffer).")
  p.add_argument("--timed_batches", type=int, default=200,
                 help="Minimum batches per timed window.")
  p.add_argument("--min_seconds", type=float, default=3.0,
                 help="Minimum seconds per timed window (reads more batches if needed).")
  p.add_argument("--repeats", type=int, default=3,
                 help="Rounds in which every loader is timed once; the median is reported.")
  p.add_argument("--private_threadpool_size", type=int, default=0,
                 help="tf.data options.threading.private_threadpool_size for every loader "
                      "(0: TensorFlow's default, the shared inter-op pool).")
  p.add_argument("--max_intra_op_parallelism", type=int, default=0,
                 help="tf.data options.threading.max_intra_op_parallelism for every loader "
                      "(0: TensorFlow's default).")
  p.add_argument("--work_dir", default=None,
                 help="Where to put the images and TFRecords (default: a temp dir, removed).")
  p.add_argument("--results_dir", default=None,
                 help="If set, also write the tables as markdown to "
                      "RESULTS_DIR/input_pipeline-YYYY-MM-DD.md.")
  return p.parse_args(argv)


# ---------------------------------------------------------------------------
# Data.


def _write_pngs(folder, num_images):
  """Writes `num_images` built-in `shapes` images as PNG files in class subfolders."""
  for name in builtin.SHAPE_NAMES:
    os.makedirs(os.path.join(folder, name), exist_ok=True)
  for i in range(num_images):
    arrays, label = builtin.generate("shapes", "train", i, seed=0, image_size=IMAGE_SIZE)
    path = os.path.join(folder, builtin.SHAPE_NAMES[label], f"{i:06d}.png")
    Image.fromarray(arrays["image"]).save(path)


def _convert(folder, out_dir, encoding, num_workers):
  """Converts `folder` to TFRecords; returns (examples, seconds)."""
  start = time.perf_counter()
  manifest = convert.run(convert.ConvertConfig(source=f"folder:{folder}", output=out_dir,
                                               encoding=encoding, num_workers=num_workers))
  seconds = time.perf_counter() - start
  return manifest["splits"]["train"]["num_examples"], seconds


# ---------------------------------------------------------------------------
# Loaders. Each is a function returning a fresh, infinite dataset of batches.


def _per_file_loader(folder, batch_size, shuffle_buffer):
  """The tutorial pipeline: one file read and one PNG decode per image."""

  def load(path):
    image = tf.io.decode_png(tf.io.read_file(path), channels=3)
    return tf.image.resize(image, [IMAGE_SIZE, IMAGE_SIZE]) / 127.5 - 1

  pattern = os.path.join(folder, "*", "*.png")
  ds = tf.data.Dataset.list_files(pattern, shuffle=True, seed=0)
  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.shuffle(shuffle_buffer, seed=0)
  ds = ds.repeat()
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def _reader_loader(data_dir, batch_size, shuffle_buffer):
  config = reader.ReaderConfig(data_dir, shuffle_buffer=shuffle_buffer)
  return reader.make_dataset(config, batch_size)


def _with_threading(ds, args):
  """Applies the --private_threadpool_size / --max_intra_op_parallelism options."""
  if not (args.private_threadpool_size or args.max_intra_op_parallelism):
    return ds
  options = tf.data.Options()
  if args.private_threadpool_size:
    options.threading.private_threadpool_size = args.private_threadpool_size
  if args.max_intra_op_parallelism:
    options.threading.max_intra_op_parallelism = args.max_intra_op_parallelism
  return ds.with_options(options)


def _images(batch):
  return batch["image"] if isinstance(batch, dict) else batch


def _time_loader(make_ds, args):
  """Images/s of one fresh iterator after a warm-up."""
  it = iter(make_ds())
  for _ in range(args.warmup_batches):
    _images(next(it))
  batches = 0
  start = time.perf_counter()
  while True:
    x = _images(next(it))
    batches += 1
    elapsed = time.perf_counter() - start
    if batches >= args.timed_batches and elapsed >= args.min_seconds:
      break
  if x.shape != (args.batch_size, IMAGE_SIZE, IMAGE_SIZE, 3) or x.dtype != tf.float32:
    raise AssertionError(f"unexpected batch {x.shape} {x.dtype}")
  del it
  return batches * args.batch_size / elapsed


# ---------------------------------------------------------------------------
# Reporting.


def _cpu_model():
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def _machine():
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  gpus = tf.config.list_physical_devices("GPU")
  return (f"nproc {usable} (os.cpu_count {os.cpu_count()}), CPU {_cpu_model()}, "
          f"{len(gpus)} GPU(s), TensorFlow {tf.__version__}, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")


def _table(header, rows):
  """A markdown table; also readable as plain text."""
  widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

  def line(cells):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

  sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
  return "\n".join([line(header), sep] + [line(r) for r in rows])


def _report(args, machine, when, conversions, rates):
  """The whole report as markdown text."""
  base = statistics.median(rates[BASELINE])
  read_rows = []
  for name, values in rates.items():
    med = statistics.median(values)
    read_rows.append([name, f"{med:,.0f}", f"{min(values):,.0f} - {max(values):,.0f}",
                      f"{med / base:.2f}x"])
  conv_rows = [[f"convert {enc} ({args.num_workers} workers)", f"{n:,}", f"{s:.1f}",
                f"{n / s:,.0f}"] for enc, (n, s) in conversions.items()]
  lines = [
      f"# Input pipeline benchmark, {when:%Y-%m-%d %H:%M:%S}",
      "",
      f"Command: `{' '.join(['python bench/input_pipeline.py'] + sys.argv[1:])}`",
      "",
      f"Machine: {machine}",
      "",
      f"Data: {args.num_images} built-in `shapes` images, {IMAGE_SIZE}x{IMAGE_SIZE} RGB PNG "
      f"files in 3 class subfolders. Every loader: batch {args.batch_size}, shuffle buffer "
      f"{args.shuffle_buffer}, float32 [-1, 1] output; {args.warmup_batches} warm-up batches, "
      f"then >= {args.timed_batches} batches and >= {args.min_seconds:g} s timed, "
      f"{args.repeats} rounds taking turns, median shown."
      + (f" tf.data threading: private_threadpool_size={args.private_threadpool_size}, "
         f"max_intra_op_parallelism={args.max_intra_op_parallelism}."
         if args.private_threadpool_size or args.max_intra_op_parallelism else ""),
      "",
      "## Reading (images/s)",
      "",
      _table(["method", "images/s (median)", "min - max", f"ratio to {BASELINE}"], read_rows),
      "",
  ]
  for enc in ("raw", "png"):
    ratio = statistics.median(rates[f"reader {enc}"]) / base
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    lines.append(f"- reader-{enc} / per-file = {ratio:.2f}x: target >= {TARGET_RATIO:g}x "
                 f"{verdict}")
  lines += [
      "",
      "## Conversion (examples/s)",
      "",
      _table(["method", "examples", "seconds", "examples/s"], conv_rows),
      "",
      "Conversion time includes probing the file headers, spawning the worker processes and "
      "importing TensorFlow in each, hashing and fsyncing the shards.",
      "",
      "Absolute numbers on a shared machine are noise; compare the ratios.",
  ]
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------


def main(argv):
  args = _parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  when = datetime.datetime.now()
  machine = _machine()
  print(f"{when:%Y-%m-%d %H:%M:%S}  {machine}", flush=True)
  work = args.work_dir or tempfile.mkdtemp(prefix="bench_input_pipeline_")
  folder = os.path.join(work, "png")
  try:
    start = time.perf_counter()
    _write_pngs(folder, args.num_images)
    print(f"wrote {args.num_images} PNG files in {time.perf_counter() - start:.1f} s",
          flush=True)

    conversions = {}
    for enc in ("raw", "png"):
      out_dir = os.path.join(work, f"tfrecord-{enc}")
      shutil.rmtree(out_dir, ignore_errors=True)
      conversions[enc] = _convert(folder, out_dir, enc, args.num_workers)
      n, s = conversions[enc]
      print(f"convert {enc}: {n} examples in {s:.1f} s = {n / s:,.0f} examples/s", flush=True)

    loaders = {
        BASELINE: lambda: _per_file_loader(folder, args.batch_size, args.shuffle_buffer),
        "reader raw": lambda: _reader_loader(os.path.join(work, "tfrecord-raw"),
                                             args.batch_size, args.shuffle_buffer),
        "reader png": lambda: _reader_loader(os.path.join(work, "tfrecord-png"),
                                             args.batch_size, args.shuffle_buffer),
    }
    rates = {name: [] for name in loaders}
    for r in range(args.repeats):
      names = list(loaders)
      if r % 2:  # Alternate the order so that no loader always goes first.
        names.reverse()
      for name in names:
        rate = _time_loader(lambda: _with_threading(loaders[name](), args), args)
        rates[name].append(rate)
        print(f"round {r + 1}/{args.repeats}  {name}: {rate:,.0f} images/s", flush=True)

    report = _report(args, machine, when, conversions, rates)
    print()
    print(report, end="")
    if args.results_dir:
      os.makedirs(args.results_dir, exist_ok=True)
      path = os.path.join(args.results_dir, f"input_pipeline-{when:%Y-%m-%d}.md")
      with open(path, "w", encoding="utf-8") as f:
        f.write(report)
      print(f"\nwrote {path}")
  finally:
    if not args.work_dir:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main(sys.argv[1:])
