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

import atexit
import os
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
    _exit(EXIT_PREEMPTED)
  except (ValueError, errors.TrainingError) as e:  # One line, no traceback.
    print(f"train: error: {e}", file=sys.stderr)
    _exit(2 if isinstance(e, ValueError) else 1)
  logging.info("Done: step %d, checkpoint %s, samples in %s/samples", result.step,
               result.checkpoint, result.model_dir)
  _exit(0)


def _exit(code):
  """Exits with `code` at once, without the interpreter's teardown.

  Everything the run wrote is already on disk when this is called: the
  checkpoints are written synchronously, `trainer.run` has closed train.log
  and flushed the TensorBoard writer. What a normal exit would still do is
  done here: the atexit handlers (`logging.shutdown()`, which flushes and
  closes every log handler; autograph's temporary files) and flushing stdio.

  What is skipped is destroying the objects left, and with them the input
  iterator, which TensorFlow keeps alive to the end: the gradient function
  that Keras' all-reduce registers through `tf.custom_gradient` stays in TF's
  global gradient registry, and through the traced loop it holds the
  iterator. Destroying an autotuned iterator waits for its autotune thread,
  which often misses the cancellation (woken before the cancellation is
  marked) and sleeps out its period, which doubles up to 60 s. Destroying it
  earlier, at the end of `run()`, would wait the same before "Done". Measured
  on one core, Done to exit: about 6 s in 10 of 15 runs of 100 sngan steps
  (0.8 s at best: TensorFlow's own teardown), 39 s after 7 minutes, and
  0.03-0.08 s with this exit. docs/tf-facts.md ("Input pipelines") has the
  details.

  With --strategy=multi_worker the normal exit stays: the workers' shutdown
  through TF's coordination service was verified that way only.
  """
  if FLAGS.strategy == "multi_worker":
    sys.exit(code)
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


if __name__ == "__main__":
  app.run(main)
