r"""Trains a GAN under tf.distribute.

    python -m pipeline.train --algo=sngan --strategy=mirrored

Runs offline with its defaults (built-in data). Re-running the same command
resumes from the latest checkpoint in --model_dir. Try a multi-replica config
on a CPU-only machine with --cpu_replicas=2.
"""

import dataclasses
import sys

from absl import app
from absl import flags
from absl import logging

from pipeline import flags as pipeline_flags
from training import config as config_lib

pipeline_flags.define_train_flags()
FLAGS = flags.FLAGS


def config_from_flags():
  """The frozen TrainConfig from the parsed flags (only `main` reads FLAGS)."""
  values = {}
  for field in dataclasses.fields(config_lib.TrainConfig):
    value = FLAGS[field.name].value
    if field.name == "mlp_hidden":
      value = tuple(int(v) for v in value)
    values[field.name] = value
  return config_lib.TrainConfig(**values)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = config_from_flags()
  from training import trainer  # pylint: disable=import-outside-toplevel
  try:
    result = trainer.run(config)
  except (ValueError, trainer.TrainingError) as e:
    logging.error("%s", e)
    print(f"train: error: {e}", file=sys.stderr)
    sys.exit(2 if isinstance(e, ValueError) else 1)
  logging.info("Done: step %d, checkpoint %s, samples in %s/samples", result.step,
               result.checkpoint, result.model_dir)


if __name__ == "__main__":
  app.run(main)
