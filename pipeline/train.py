r"""Trains a GAN under tf.distribute.

    python -m pipeline.train --algo=sngan --strategy=mirrored

Runs offline with its defaults (built-in data). Re-running the same command
resumes from the latest checkpoint in --model_dir. Try a multi-replica config
on a CPU-only machine with --cpu_replicas=2.

Exit codes:
  0   trained to --train_steps (or had already).
  1   training failed: non-finite losses, a --model_dir holding another run,
      a multi_worker cluster that did not form within --cluster_timeout, or a
      lost peer worker (the message says which checkpoint a re-run resumes
      from).
  2   bad flags or data.
  75  preempted (EX_TEMPFAIL): SIGTERM arrived during training, a checkpoint
      was saved at the next step boundary (with multi_worker: at a boundary
      all workers agreed on, every worker exiting 75), and re-running the same
      command resumes from it. Schedulers can treat 75 as "retry".
"""

import sys

from absl import app
from absl import flags
from absl import logging

from evaluation import during_training
from pipeline import flags as pipeline_flags
from training import config as config_lib
from training import errors
from training import trainer

pipeline_flags.define_config_flags(config_lib.TrainConfig)
FLAGS = flags.FLAGS

EXIT_PREEMPTED = 75  # EX_TEMPFAIL in <sysexits.h>: temporary failure, retry.


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = pipeline_flags.config_from_flags(config_lib.TrainConfig, FLAGS)
    result = trainer.run(config, during_training.DuringTraining)
  except errors.Preempted as e:
    print(f"train: {e}", file=sys.stderr)
    sys.exit(EXIT_PREEMPTED)
  except (ValueError, errors.TrainingError) as e:  # One line, no traceback.
    print(f"train: error: {e}", file=sys.stderr)
    sys.exit(2 if isinstance(e, ValueError) else 1)
  logging.info("Done: step %d, checkpoint %s, samples in %s/samples", result.step,
               result.checkpoint, result.model_dir)


if __name__ == "__main__":
  app.run(main)
