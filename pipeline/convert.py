r"""Converts images, arrays or TFDS datasets into sharded TFRecords.

    python -m pipeline.convert --source=folder:/data/xray --output=/data/xray-tfr \
        --image_size=128 --channels=1 --bit_depth=16

Spread over a cluster (one task per array index, then one finalize):

    python -m pipeline.convert --source=... --output=DIR --num_tasks=8 --task_index=$I
    python -m pipeline.convert --output=DIR --finalize

Exit codes: 0 done; 1 incomplete (too many skipped inputs, or missing shards at
finalize; the manifest lists what was skipped); 2 bad flags or source, with
nothing written.
"""

import shlex
import sys

from absl import app
from absl import flags
from absl import logging

from input import convert
from pipeline import flags as pipeline_flags

pipeline_flags.define_convert_flags()
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = convert.ConvertConfig(
      source=FLAGS.source or "",
      output=FLAGS.output or "",
      num_shards=FLAGS.num_shards,
      min_shards=FLAGS.min_shards,
      target_shard_mb=FLAGS.target_shard_mb,
      image_size=FLAGS.image_size,
      channels=int(FLAGS.channels) if FLAGS.channels else None,
      resize=FLAGS.resize,
      bit_depth=int(FLAGS.bit_depth),
      encoding=FLAGS.encoding,
      labels=FLAGS.labels,
      num_workers=FLAGS.num_workers,
      overwrite=FLAGS.overwrite,
      num_tasks=FLAGS.num_tasks,
      task_index=FLAGS.task_index,
      finalize=FLAGS.finalize,
      max_skip_fraction=FLAGS.max_skip_fraction,
      max_examples=FLAGS.max_examples,
      seed=FLAGS.seed,
      tfds_data_dir=FLAGS.tfds_data_dir,
      command_line=shlex.join([sys.executable, "-m", "pipeline.convert"] + sys.argv[1:]),
  )
  try:
    convert.run(config)
  except convert.ConvertError as e:
    logging.error("%s", e)
    print(f"convert: error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)


if __name__ == "__main__":
  app.run(main)
