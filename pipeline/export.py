r"""Exports a trained generator as a SavedModel that needs only TensorFlow.

    python -m pipeline.export --model_dir=runs/sngan-shapes --output=exported/sngan

Sampling algorithms get `serving_default(z[, labels]) -> images` (the EMA
generator when the run has one); translation algorithms get
`serving_default(images) -> images` at any size. Runs trained on volumes
export the same one rank up (z -> [B, D, H, W, C]; [B, D, H, W, C] -> the
same, the training patch size in export_info.json). Both take and return the
model's range [-1, 1]; export_info.json records the data's window (DICOM and
NIfTI data) to map outputs back to modality units. See `inference/export.py`.
Exit codes: 0 written, 2 bad flags or model directory.
"""

import sys

from absl import app
from absl import flags

from inference import export
from pipeline import flags as pipeline_flags

pipeline_flags.define_config_flags(export.ExportConfig)
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = pipeline_flags.config_from_flags(export.ExportConfig, FLAGS)
    info = export.run(config)
  except ValueError as e:
    print(f"export: error: {e}", file=sys.stderr)
    sys.exit(2)
  inputs = ", ".join(f"{k} {v}" for k, v in info["inputs"].items())
  print(f"Exported {info['algo']} (step {info['step']}) to {config.output}: "
        f"serving_default({inputs}) -> images {info['output_shape']}")


if __name__ == "__main__":
  app.run(main)
