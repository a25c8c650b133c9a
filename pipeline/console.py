"""What the binaries print: what a user needs, not TensorFlow's start-up noise.

`import tensorflow` prints, through absl's C++ logger before it is
initialized, lines no environment variable turns off ("All log messages
before absl::InitializeLog()", oneDNN's and the CUDA stub's notices), and at
run time C++ INFO lines, a `cuInit` error on machines without a GPU driver
and Grappler's harmless "remapper failed" message (BUILD.md). By default the
binaries therefore:

- import TensorFlow with the process's stderr (file descriptor 2) sent to a
  temporary file, and print that file if the import fails;
- set TF_CPP_MIN_LOG_LEVEL=3 (C++ FATAL only: every error that matters is
  also raised as a Python exception);
- keep TensorFlow's and Keras's Python log lines at WARNING and above.

`-v 1` (absl's --verbosity) or an explicit TF_CPP_MIN_LOG_LEVEL keeps all of
TensorFlow's output, as without this module.
"""

import logging
import os
import re
import sys
import tempfile

from absl import logging as absl_logging


def verbose(argv):
  """Whether the command line asks for absl verbosity >= 1 (-v 1, -v=1, --verbosity=1)."""
  for i, arg in enumerate(argv):
    match = re.fullmatch(r"--?(?:v|verbosity)(?:=(-?\d+))?", arg)
    if match:
      value = match.group(1)
      if value is None and i + 1 < len(argv):
        value = argv[i + 1]
      try:
        return int(value) >= 1
      except (TypeError, ValueError):
        return False
  return False


# Set beside TF_CPP_MIN_LOG_LEVEL when this module set it, so that worker
# processes (pipeline.convert's), which inherit both, stay quiet too: an
# inherited level is not the user's explicit one.
_OURS = "GAN_PIPELINE_QUIET_TF"


def quiet_tensorflow_start(argv=None):
  """Imports TensorFlow quietly unless asked to be verbose (see the module doc)."""
  argv = sys.argv if argv is None else argv
  explicit = "TF_CPP_MIN_LOG_LEVEL" in os.environ and os.environ.get(_OURS) != "1"
  if verbose(argv) or explicit or "tensorflow" in sys.modules:
    return
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  os.environ[_OURS] = "1"
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf  # pylint: disable=import-outside-toplevel
    except BaseException:
      os.dup2(saved, 2)
      captured.seek(0)
      sys.stderr.write(captured.read().decode(errors="replace"))
      raise
    finally:
      os.dup2(saved, 2)
      os.close(saved)
  tf.get_logger().setLevel(logging.WARNING)
  absl_logging.get_absl_handler().addFilter(_below_warning_from_libraries)


def _below_warning_from_libraries(record):
  """Drops TensorFlow's and Keras's own INFO lines written through absl
  (e.g. "Sharding callback duration" at every checkpoint)."""
  if record.levelno >= logging.WARNING:
    return True
  path = record.pathname.replace(os.sep, "/")
  return "/site-packages/tensorflow/" not in path and "/site-packages/keras/" not in path
