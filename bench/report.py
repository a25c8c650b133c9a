"""What every benchmark prints around its figures: the machine, and markdown tables.

Imported by the scripts in bench/ (run as `python bench/<name>.py`, so this
folder is on sys.path).
"""

import datetime
import os
import platform

import keras
import tensorflow as tf


def cpu_model():
  """The CPU's model name, from /proc/cpuinfo where there is one."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def machine():
  """One line: usable CPUs, CPU model, GPUs, TensorFlow, Keras, Python, OS."""
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  gpus = tf.config.list_physical_devices("GPU")
  return (f"nproc {usable} (os.cpu_count {os.cpu_count()}), CPU {cpu_model()}, "
          f"{len(gpus)} GPU(s), TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def table(header, rows):
  """A markdown table; also readable as plain text."""
  widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

  def line(cells):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

  sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
  return "\n".join([line(header), sep] + [line(r) for r in rows])


def save(results_dir, name, text, when=None):
  """Writes `text` to RESULTS_DIR/NAME-YYYY-MM-DD.md (made if needed); returns the path."""
  when = when or datetime.date.today()
  os.makedirs(results_dir, exist_ok=True)
  path = os.path.join(results_dir, f"{name}-{when:%Y-%m-%d}.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return path
