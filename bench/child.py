"""Measurements in child processes: each gets its own peak memory, devices
and TensorFlow state. A child is a bench module run as `python -m`, and it
answers with one JSON line on stdout.

Imports no TensorFlow: bench/torch_train_step.py uses it too.
"""

import json
import os
import resource
import subprocess
import sys


def command(module, *flags):
  """The command line running bench module `module` (e.g. "bench.layout")
  with `flags` in a fresh interpreter of this one."""
  return [sys.executable, "-m", module, *flags]


def answer(result):
  """Prints `result` (a dict) as the child's answer: one JSON line."""
  print(json.dumps(result), flush=True)


def run(cmd, timeout=None, **kwargs):
  """Runs `cmd` and waits; returns (its answer: the last JSON object line of
  its stdout, or None; the CompletedProcess). `kwargs` go to subprocess.run.

  Raises:
    subprocess.TimeoutExpired: it ran past `timeout` seconds (and was killed).
  """
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                        **kwargs)
  for line in reversed(proc.stdout.splitlines()):
    if line.startswith("{"):
      try:
        return json.loads(line), proc
      except json.JSONDecodeError:
        pass
  return None, proc


def last_line(text):
  """The last non-blank line of `text` (a child's stderr), at most 300 characters."""
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  return lines[-1][:300] if lines else ""


def error_line(e):
  """The line of an exception that says what happened (for a tf.function's
  error, which opens with "in user code:" and a traceback, the last one)."""
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  line = (lines[-1] if lines[0].startswith("in user code") else lines[0]) if lines else ""
  return f"{type(e).__name__}: {line}"[:300]


def peak_rss_mib():
  """This process's peak resident memory (MiB): `ru_maxrss`."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def exit_now(status=0):
  """Flushes and exits at once, skipping the interpreter's teardown, where
  TensorFlow's exit-time teardown can hang."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access
