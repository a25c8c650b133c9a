"""Every flag of every binary, defined in one place.

Each binary calls the `define_*` function it needs at import time and reads
FLAGS only in its `main`, where it builds one frozen config. Library code never
reads FLAGS, so tests build configs directly. Every flag has a default.
"""

from absl import flags


def define_convert_flags():
  """Flags of `pipeline.convert` (fields of `input.convert.ConvertConfig`)."""
  flags.DEFINE_string(
      "source", None,
      "What to convert: folder:DIR | tfds:NAME[:SPLIT] | npz:FILE | paired:DIR_A,DIR_B | "
      "paired:DIR (A|B side by side) | unpaired:DIR_A,DIR_B | builtin:NAME "
      "(shapes, ring2d, grid2d, shapes_paired, shapes_unpaired).")
  flags.DEFINE_string("output", None, "Output directory for shards and manifest.json.")
  flags.DEFINE_integer(
      "num_shards", None,
      "Shards per split. Default: about --target_shard_mb per shard, never fewer than "
      "--min_shards (nor more than there are examples).")
  flags.DEFINE_integer("min_shards", 16,
                       "Least number of shards per split, so that many workers can shard "
                       "by file.")
  flags.DEFINE_float("target_shard_mb", 150.0, "Target shard size in MB for --num_shards.")
  flags.DEFINE_integer("image_size", None,
                       "Output size NxN. Default: keep the source's size (all images must "
                       "then share one size). For builtin: the size to draw at (32).")
  flags.DEFINE_enum("channels", None, ["1", "3"],
                    "Output channels. Default: the source's (1 if every image is gray).")
  flags.DEFINE_enum("resize", "crop", ["crop", "pad", "stretch"],
                    "Fitting images of another aspect ratio: center-crop, pad with black "
                    "to the target aspect, or stretch.")
  flags.DEFINE_enum("bit_depth", "8", ["8", "16"],
                    "Stored bit depth; 16 keeps 16-bit PNGs (medical images) exact.")
  flags.DEFINE_enum("encoding", "raw", ["raw", "png"],
                    "raw: fastest to read; png: lossless and smaller on disk.")
  flags.DEFINE_enum("labels", "auto", ["auto", "subfolder", "none"],
                    "folder: labels from first-level subfolder names (auto: when every "
                    "image is in one).")
  flags.DEFINE_integer("num_workers", None,
                       "Parallel writer processes. Default: the CPUs available.")
  flags.DEFINE_bool("overwrite", False,
                    "Start over: rewrite every shard even if complete ones exist.")
  flags.DEFINE_integer("num_tasks", 1,
                       "Split the conversion over this many tasks (Slurm array, Kubernetes "
                       "Indexed Job); each writes a disjoint range of shards.")
  flags.DEFINE_integer("task_index", 0, "This task's index in [0, --num_tasks).")
  flags.DEFINE_bool("finalize", False,
                    "After all tasks: check every shard and write manifest.json.")
  flags.DEFINE_float("max_skip_fraction", 0.01,
                     "Fail (exit 1) when more than this fraction of inputs was skipped.")
  flags.DEFINE_integer("max_examples", None, "Convert at most this many examples per split.")
  flags.DEFINE_integer("seed", 0,
                       "Seed of the shard order shuffle and of builtin data generation.")
  flags.DEFINE_string("tfds_data_dir", None, "tensorflow-datasets data_dir.")
