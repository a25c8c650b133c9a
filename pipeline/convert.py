r"""Converts images, arrays or TFDS datasets into sharded TFRecords.

    python -m pipeline.convert --source=folder:/data/xray --output=/data/xray-tfr \
        --image_size=128 --channels=1 --bit_depth=16

Whole volumes (DxHxWx1 records; paired 3-D patches with --patch_size):

    python -m pipeline.convert --source=nifti:/data/phantom/T1w --output=/data/t1-vol \
        --volumes --spacing=2 --volume_size=64 --holdout=0.2

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

from input import convert
from pipeline import flags as pipeline_flags

pipeline_flags.define_config_flags(convert.ConvertConfig)
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = pipeline_flags.config_from_flags(
        convert.ConvertConfig, FLAGS,
        command_line=shlex.join([sys.executable, "-m", "pipeline.convert"] + sys.argv[1:]))
    convert.run(config)
  except ValueError as e:  # A required flag missing.
    print(f"convert: error: {e}", file=sys.stderr)
    sys.exit(convert.EXIT_USAGE)
  except convert.ConvertError as e:
    print(f"convert: error: {e}", file=sys.stderr)
    sys.exit(e.exit_code)


if __name__ == "__main__":
  app.run(main)
