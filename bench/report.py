"""What every benchmark prints around its figures, and where it writes them.

The machine line, markdown tables, the command as typed, and the results
files: `save` writes a finished report to RESULTS_DIR/NAME-YYYY-MM-DD.md;
`LiveFile` writes one line by line as a long benchmark measures
(bench/gpu_check.py), so that one stopped part way keeps what it measured.
"""

import datetime
import os
import platform
import shlex
import sys

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


def usable_cpus():
  """The CPUs this process may run on (its affinity; all of them where that is unknown)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def machine():
  """One line: usable CPUs, CPU model, GPUs, TensorFlow, Keras, Python, OS."""
  gpus = tf.config.list_physical_devices("GPU")
  return (f"nproc {usable_cpus()} (os.cpu_count {os.cpu_count()}), CPU {cpu_model()}, "
          f"{len(gpus)} GPU(s), TensorFlow {tf.__version__}, Keras {keras.__version__}, "
          f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def command(module, argv=None):
  """The command that ran this benchmark, as typed: `python -m MODULE ARGS`
  (`argv`: its arguments; default sys.argv[1:])."""
  args = sys.argv[1:] if argv is None else argv
  return " ".join(["python", "-m", module] + [shlex.quote(a) for a in args])


def header(title, module, when, machine_line=None):
  """The lines a report opens with: "# TITLE, WHEN", the command as typed
  (`command(module)`) and the machine line (default `machine()`), each
  followed by a blank line. `when`: a datetime (or a date)."""
  stamp = (f"{when:%Y-%m-%d %H:%M:%S}" if isinstance(when, datetime.datetime)
           else when.isoformat())
  return [f"# {title}, {stamp}", "", f"Command: `{command(module)}`", "",
          f"Machine: {machine_line or machine()}", ""]


def table(header_cells, rows):
  """A markdown table; also readable as plain text."""
  widths = [max(len(str(c)) for c in col) for col in zip(header_cells, *rows)]

  def line(cells):
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

  sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
  return "\n".join([line(header_cells), sep] + [line(r) for r in rows])


def results_path(results_dir, name, when=None, tag=None):
  """RESULTS_DIR/NAME-YYYY-MM-DD[-TAG].md (`when`: a date, default today)."""
  when = when or datetime.date.today()
  return os.path.join(results_dir, f"{name}-{when:%Y-%m-%d}" + (f"-{tag}" if tag else "") + ".md")


def save(results_dir, name, text, when=None, tag=None):
  """Writes `text` to `results_path(...)` (the folder made if needed); returns the path."""
  path = results_path(results_dir, name, when, tag)
  os.makedirs(results_dir, exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)
  return path


class LiveFile:
  """A results file written as the benchmark goes: every line is printed and
  appended at once (flushed and fsynced)."""

  def __init__(self, path):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._f = open(path, "w", encoding="utf-8")  # pylint: disable=consider-using-with

  def write(self, lines):
    for line in lines:
      print(line, flush=True)
      self._f.write(line + "\n")
    self._f.flush()
    os.fsync(self._f.fileno())

  def close(self, lines=()):
    self.write(lines)
    self._f.close()
