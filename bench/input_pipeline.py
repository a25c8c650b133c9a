"""python -m bench.input_pipeline --results_dir=bench/results

Input-pipeline throughput, side by side in one run, on the same images.

For each content type of `--content` (`shapes`, `textured`, or `both`, the
default):

1. Generates `--num_images` 64x64 RGB PNG files in class subfolders
   `circle/`, `square/`, `triangle/`:
   - `shapes`: the built-in `shapes` images, one flat-coloured shape on black
     (PNG files of ~600 bytes). Decoding such a PNG is almost free, so this is
     the per-file loader's best case.
   - `textured`: the same shape images plus a smooth random background
     gradient and per-pixel Gaussian noise (sigma 12 levels), seeded by the
     image index, so that the PNG files are ~10 KB like real 64x64 photos.
2. Converts the folder to TFRecords with `input.convert.run`, once with
   `encoding=raw` and once with `encoding=png` (examples/s; the time includes
   spawning the worker processes and importing TensorFlow in each).
3. Reads each conversion with `input.reader.make_dataset` (images/s), twice:
   - `reader raw` / `reader png`: `normalize=True`, float32 [-1, 1] images
     made on the host, like the per-file loader's;
   - `reader raw, uint8 out` / `reader png, uint8 out`: `normalize=False`,
     uint8 images as stored. This is how the project's trainer uses the
     reader: it converts the images to float32 [-1, 1] later, on the
     accelerator, inside the training step (`reader.normalize_images`). The
     row times the dataset alone; that conversion is not part of it.
4. Reads the PNG files with the per-file loader of most TF tutorials
   (`list_files` -> `read_file` -> `decode_png` -> `resize` -> `/127.5 - 1` ->
   shuffle -> repeat -> batch -> prefetch, AUTOTUNE parallelism), the baseline
   of that content type's ratios (images/s).

Every loader yields [B, 64, 64, 3] batches with the same batch size and
shuffle buffer: float32 in [-1, 1], except the uint8-out rows. With `--stages`
(the default) a diagnostic row times the raw reader's read stage alone
(record-count check, shuffle, batch; no parse or decode). Each loader gets a
fresh iterator, a warm-up, then a timed window; the loaders take turns for
`--repeats` rounds and the table shows the median. Absolute numbers on a
shared machine are noise; compare the ratios. The target is reader >= 5x the
per-file loader.

On a GPU machine run the same command: the input pipeline runs on the host
CPU either way, so compare the ratios, not the absolute numbers.
"""

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from bench import report  # pylint: disable=wrong-import-position
from input import builtin  # pylint: disable=wrong-import-position
from input import convert  # pylint: disable=wrong-import-position
from input import manifest as manifest_lib  # pylint: disable=wrong-import-position
from input import reader  # pylint: disable=wrong-import-position

IMAGE_SIZE = 64
TARGET_RATIO = 5.0
CONTENTS = ("shapes", "textured")
BASELINE = "per-file PNG loader"
UINT8_SUFFIX = ", uint8 out"
RAW_UINT8 = "reader raw, uint8 out (normalized in the train step on the device)"
PNG_UINT8 = "reader png, uint8 out"
DIAG_RECORDS = "[diag] reader raw: read stage only, no parse/decode"
# Rows checked against the target, with the name used in the summary lines.
TARGET_ROWS = (("reader raw", "reader-raw"), ("reader png", "reader-png"),
               (RAW_UINT8, "reader-raw uint8-out"), (PNG_UINT8, "reader-png uint8-out"))
NOISE_SIGMA = 12.0  # Levels of per-pixel Gaussian noise in `textured` images.


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--content", choices=("shapes", "textured", "both"), default="both",
                 help="Image content: flat-coloured built-in shapes (the per-file loader's "
                      "best case), textured photo-like images, or both (one table each).")
  p.add_argument("--num_images", type=int, default=4000,
                 help="PNG files to generate per content type.")
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
  p.add_argument("--stages", action=argparse.BooleanOptionalAction, default=True,
                 help="Also time the raw reader's read stage alone (a diagnostic row).")
  p.add_argument("--work_dir", default=None,
                 help="Where to put the images and TFRecords (default: a temp dir, removed).")
  p.add_argument("--results_dir", default=None,
                 help="If set, also write the tables as markdown to "
                      "RESULTS_DIR/input_pipeline-YYYY-MM-DD.md.")
  args = p.parse_args(argv)
  if args.repeats < 1 or args.num_images < 1 or args.batch_size < 1:
    p.error("--repeats, --num_images and --batch_size must be >= 1")
  return args


# ---------------------------------------------------------------------------
# Data.


def _textured(image, index):
  """`image` (a flat shape on black) on a smooth random gradient background,
  plus Gaussian noise everywhere; deterministic in `index`."""
  rng = np.random.default_rng([20_240_601, index])
  x = image.astype(np.float32)
  # Foreground weight from the shape's (antialiased) coverage; background is black.
  fg = x.max(axis=-1, keepdims=True) / max(float(x.max()), 1.0)
  yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) / (IMAGE_SIZE - 1) - 0.5
  theta = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(theta) * xx + np.sin(theta) * yy)[..., None]
  background = rng.uniform(40, 200, size=3) + ramp * rng.uniform(-80, 80, size=3)
  out = fg * x + (1 - fg) * background + rng.normal(0, NOISE_SIGMA, size=x.shape)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _write_pngs(folder, num_images, content):
  """Writes `num_images` images of `content` as PNG files in class subfolders."""
  for name in builtin.SHAPE_NAMES:
    os.makedirs(os.path.join(folder, name), exist_ok=True)
  for i in range(num_images):
    arrays, label = builtin.generate("shapes", "train", i, seed=0, image_size=IMAGE_SIZE)
    image = arrays["image"] if content == "shapes" else _textured(arrays["image"], i)
    path = os.path.join(folder, builtin.SHAPE_NAMES[label], f"{i:06d}.png")
    Image.fromarray(image).save(path)


def _convert(folder, out_dir, encoding, num_workers):
  """Converts `folder` to TFRecords; returns (examples, seconds)."""
  start = time.perf_counter()
  manifest = convert.run(convert.ConvertConfig(source=f"folder:{folder}", output=out_dir,
                                               encoding=encoding, num_workers=num_workers))
  seconds = time.perf_counter() - start
  return manifest["splits"]["train"]["num_examples"], seconds


def _total_bytes(folder, suffix):
  """Total size of the files under `folder` whose names end with `suffix`."""
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder)
             for f in files if f.endswith(suffix))


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


def _reader_loader(data_dir, batch_size, shuffle_buffer, normalize=True):
  config = reader.ReaderConfig(data_dir, shuffle_buffer=shuffle_buffer, normalize=normalize)
  return reader.make_dataset(config, batch_size)


def _records_only_loader(data_dir, batch_size, shuffle_buffer):
  """Diagnostic: the reader's read stage alone (per-shard record check, shuffle,
  batch), without parsing or decoding. Yields batches of serialized records."""
  manifest = manifest_lib.load(data_dir)
  paths = manifest_lib.shard_paths(data_dir, manifest, "train")
  counts = [s["num_records"] for s in manifest["splits"]["train"]["shards"]]
  files = tf.data.Dataset.from_tensor_slices((paths, tf.constant(counts, tf.int64)))
  ds = files.shuffle(len(paths), seed=0).interleave(
      lambda p, n: reader._checked_records(p, n, False),  # pylint: disable=protected-access
      cycle_length=min(8, len(paths)), num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=False)
  ds = ds.shuffle(shuffle_buffer, seed=0).repeat().batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE)


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


def _time_loader(make_ds, args, dtype):
  """Images/s of one fresh iterator after a warm-up; batches must have `dtype`
  (tf.string for the read-stage diagnostic, which yields serialized records)."""
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
  want = (args.batch_size,) if dtype == tf.string else (
      args.batch_size, IMAGE_SIZE, IMAGE_SIZE, 3)
  if x.shape != want or x.dtype != dtype:
    raise AssertionError(f"unexpected batch {x.shape} {x.dtype}, want {want} {dtype.name}")
  del it
  return batches * args.batch_size / elapsed


def _loaders(args, folder, raw_dir, png_dir):
  """{row name: (make dataset, expected image dtype)} for one content type."""
  b, s = args.batch_size, args.shuffle_buffer
  loaders = {
      BASELINE: (lambda: _per_file_loader(folder, b, s), tf.float32),
      "reader raw": (lambda: _reader_loader(raw_dir, b, s), tf.float32),
      "reader png": (lambda: _reader_loader(png_dir, b, s), tf.float32),
      RAW_UINT8: (lambda: _reader_loader(raw_dir, b, s, normalize=False), tf.uint8),
      PNG_UINT8: (lambda: _reader_loader(png_dir, b, s, normalize=False), tf.uint8),
  }
  if args.stages:
    loaders[DIAG_RECORDS] = (lambda: _records_only_loader(raw_dir, b, s), tf.string)
  return loaders


# ---------------------------------------------------------------------------
# Reporting.


_CONTENT_TEXT = {
    "shapes": "built-in `shapes` images: one flat-coloured shape on black, the per-file "
              "loader's best case (a flat PNG decodes almost for free)",
    "textured": "`textured` images: the `shapes` images on a smooth random gradient "
                f"background plus Gaussian noise (sigma {NOISE_SIGMA:g} levels), seeded by "
                "the image index, photo-like file sizes",
}


def _content_section(args, content, result):
  """The markdown section of one content type."""
  rates, conversions, sizes = result["rates"], result["conversions"], result["sizes"]
  base = statistics.median(rates[BASELINE])
  read_rows = []
  for name, values in rates.items():
    med = statistics.median(values)
    read_rows.append([name, f"{med:,.0f}", f"{min(values):,.0f} - {max(values):,.0f}",
                      f"{med / base:.2f}x"])
  conv_rows = [[f"convert {enc} ({args.num_workers} workers)", f"{n:,}", f"{s:.1f}",
                f"{n / s:,.0f}"] for enc, (n, s) in conversions.items()]
  lines = [
      f"## Content: {content}",
      "",
      f"Data: {args.num_images} {_CONTENT_TEXT[content]}; {IMAGE_SIZE}x{IMAGE_SIZE} RGB PNG "
      f"files in 3 class subfolders. Bytes per image: PNG file {sizes['png file']:,.0f}, raw "
      f"TFRecord {sizes['raw']:,.0f}, png TFRecord {sizes['png']:,.0f}.",
      "",
      f"### Reading, {content} (images/s)",
      "",
      report.table(["method", "images/s (median)", "min - max", f"ratio to {BASELINE}"],
                   read_rows),
      "",
  ]
  for row, label in TARGET_ROWS:
    ratio = statistics.median(rates[row]) / base
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    lines.append(f"- [{content}] {label} / per-file = {ratio:.2f}x: target >= "
                 f"{TARGET_RATIO:g}x {verdict}")
  lines += [
      "",
      f"### Conversion, {content} (examples/s)",
      "",
      report.table(["method", "examples", "seconds", "examples/s"], conv_rows),
      "",
  ]
  return lines


def _report(args, machine, when, results):
  """The whole report as markdown text."""
  lines = report.header("Input pipeline benchmark", "bench.input_pipeline", when, machine) + [
      f"Every loader: batch {args.batch_size}, shuffle buffer {args.shuffle_buffer}, "
      f"[B, {IMAGE_SIZE}, {IMAGE_SIZE}, 3] batches, float32 in [-1, 1] on the host except the "
      f"\"uint8 out\" rows; {args.warmup_batches} warm-up batches, then >= "
      f"{args.timed_batches} batches and >= {args.min_seconds:g} s timed, {args.repeats} "
      "rounds taking turns, median shown. Each content type has its own per-file baseline."
      + (f" tf.data threading: private_threadpool_size={args.private_threadpool_size}, "
         f"max_intra_op_parallelism={args.max_intra_op_parallelism}."
         if args.private_threadpool_size or args.max_intra_op_parallelism else ""),
      "",
      "Rows: \"per-file PNG loader\" is the TF-tutorial pipeline (list_files -> read_file -> "
      "decode_png -> resize -> /127.5 - 1 -> shuffle -> repeat -> batch -> prefetch), the "
      "baseline. \"reader raw\" / \"reader png\" are `input.reader.make_dataset` on the "
      "`encoding=raw` / `encoding=png` conversions with `normalize=True`: float32 [-1, 1] on "
      "the host, like the baseline. The \"uint8 out\" rows use `normalize=False` and yield the "
      "images as stored (uint8); this is the trainer's configuration, which converts them to "
      "float32 [-1, 1] inside the training step on the accelerator "
      "(`reader.normalize_images`). Those rows time the dataset alone.",
      "",
  ]
  for content, result in results.items():
    lines += _content_section(args, content, result)
  lines += [
      "Conversion time includes probing the file headers, spawning the worker processes and "
      "importing TensorFlow in each, hashing and fsyncing the shards.",
      "",
  ]
  if args.stages:
    lines += [
        "The [diag] row (`--stages`) is not a loader to use: it is the raw reader's read "
        "stage alone, the interleave of per-shard record-count checks "
        "(`reader._checked_records`), shuffle and batch, yielding serialized records (no "
        "parse, decode or float conversion).",
        "",
    ]
  lines.append("Absolute numbers on a shared machine are noise; compare the ratios.")
  return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------


def _run_content(args, work, content):
  """Generates, converts and times every loader for one content type."""
  folder = os.path.join(work, content, "png")
  start = time.perf_counter()
  _write_pngs(folder, args.num_images, content)
  print(f"[{content}] wrote {args.num_images} PNG files in {time.perf_counter() - start:.1f} s",
        flush=True)

  conversions = {}
  dirs = {}
  for enc in ("raw", "png"):
    dirs[enc] = os.path.join(work, content, f"tfrecord-{enc}")
    shutil.rmtree(dirs[enc], ignore_errors=True)
    conversions[enc] = _convert(folder, dirs[enc], enc, args.num_workers)
    n, s = conversions[enc]
    print(f"[{content}] convert {enc}: {n} examples in {s:.1f} s = {n / s:,.0f} examples/s",
          flush=True)

  loaders = _loaders(args, folder, dirs["raw"], dirs["png"])
  rates = {name: [] for name in loaders}
  for r in range(args.repeats):
    names = list(loaders)
    if r % 2:  # Alternate the order so that no loader always goes first.
      names.reverse()
    for name in names:
      make_ds, dtype = loaders[name]
      rate = _time_loader(lambda make_ds=make_ds: _with_threading(make_ds(), args), args,
                          dtype)
      rates[name].append(rate)
      print(f"[{content}] round {r + 1}/{args.repeats}  {name}: {rate:,.0f} images/s",
            flush=True)

  sizes = {"png file": _total_bytes(folder, ".png") / args.num_images,
           "raw": _total_bytes(dirs["raw"], ".tfrecord") / conversions["raw"][0],
           "png": _total_bytes(dirs["png"], ".tfrecord") / conversions["png"][0]}
  return {"rates": rates, "conversions": conversions, "sizes": sizes}


def main(argv):
  args = _parse_args(argv)
  logging.set_verbosity(logging.WARNING)
  when = datetime.datetime.now()
  machine = report.machine()
  print(f"{when:%Y-%m-%d %H:%M:%S}  {machine}", flush=True)
  work = args.work_dir or tempfile.mkdtemp(prefix="bench_input_pipeline_")
  contents = CONTENTS if args.content == "both" else (args.content,)
  try:
    results = {content: _run_content(args, work, content) for content in contents}
    text = _report(args, machine, when, results)
    print()
    print(text, end="")
    if args.results_dir:
      print(f"\nwrote {report.save(args.results_dir, 'input_pipeline', text, when)}")
  finally:
    if not args.work_dir:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  main(sys.argv[1:])
