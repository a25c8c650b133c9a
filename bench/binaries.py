"""Running the project's binaries from a benchmark, as a user runs them:
`python -m pipeline.<job> ...` in a fresh interpreter, its output in a log,
stopped with SIGTERM after a wall-clock budget (`pipeline.train` then saves
at a step boundary and exits 75, as on a preempted cluster).

Imports no TensorFlow.
"""

import os
import signal
import subprocess
import sys
import time

MIB = 1 << 20
STOPPED = 75  # pipeline.train's exit status after SIGTERM (saved at a step boundary).


def run(cmd, log, timeout=None):
  """Runs `python -m cmd...` with its output in `log`; stops it with SIGTERM
  after `timeout` seconds (None: never).

  Returns:
    (exit code, seconds, peak RSS of the process in MiB, from os.wait4).
  """
  start = time.time()
  with open(log, "w", encoding="utf-8") as out:
    proc = subprocess.Popen([sys.executable, "-m", *cmd], stdout=out, stderr=subprocess.STDOUT)
    deadline = None if timeout is None else start + timeout
    while True:
      pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
      if pid:
        break
      if deadline is not None and time.time() > deadline:
        proc.send_signal(signal.SIGTERM)
        deadline = None
      time.sleep(0.5)
    proc.returncode = os.waitstatus_to_exitcode(status)
  return proc.returncode, time.time() - start, usage.ru_maxrss / 1024


def check(code, what, log, allowed=(0,)):
  """Stops the benchmark with the log's tail when `code` is not in `allowed`."""
  if code not in allowed:
    with open(log, encoding="utf-8", errors="replace") as f:
      tail = f.read()[-3000:]
    raise SystemExit(f"{what} exited {code} (log {log}):\n{tail}")


def step(work, name, cmd, done, reused, timeout=None, allowed=(0,)):
  """Runs `cmd` (log `work/name.log`) unless `done` (a path) exists, in which
  case `name` is appended to `reused` (for the report).

  Returns:
    (seconds, peak RSS MiB), or None when skipped.
  """
  if os.path.exists(done):
    print(f"  {name}: already there ({done})", flush=True)
    reused.append(name)
    return None
  log = os.path.join(work, f"{name}.log")
  code, seconds, rss = run(cmd, log, timeout)
  check(code, name, log, allowed)
  print(f"  {name}: {seconds:.0f} s", flush=True)
  return seconds, rss
