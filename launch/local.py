r"""Runs a multi-worker training as N processes on this machine (loopback).

    python -m launch.local --workers=N -- <train flags>

For example, two workers of a short GAN run:

    python -m launch.local --workers=2 -- --algo=gan --train_steps=200

Each worker is `python -m pipeline.train <train flags> --strategy=multi_worker`
with its own TF_CONFIG (one `worker` job on free 127.0.0.1 ports; worker 0 is
the chief and alone writes the run directory). Their output is merged, every
line prefixed with `[worker i] `.

- A worker that exits non-zero stops the others (SIGTERM, then SIGKILL after
  --grace_seconds), and the launcher exits with that worker's code (128+N for
  a worker killed by signal N).
- Ctrl-C or SIGTERM to the launcher stops every worker the same way; the
  launcher then exits 130 or 143. On SIGTERM the training workers save a
  checkpoint at a step boundary they agree on and exit 75, so re-running the
  same command resumes there; the grace (30 s by default) must cover a few
  steps and a save. A second Ctrl-C skips the grace period.
- A worker that dies makes the others fail by themselves within seconds
  ("lost a peer worker ..."), which the grace leaves them time to say.
- The workers run in their own process groups, so a Ctrl-C in the terminal
  reaches only the launcher, and on Linux they get SIGTERM if the launcher
  dies without stopping them.

This is for trying a multi-worker setup on one machine. Each worker gets its
own GPUs through CUDA_VISIBLE_DEVICES: the machine's GPUs (those
CUDA_VISIBLE_DEVICES lists, else those `nvidia-smi` finds) are split evenly,
so 4 GPUs and 2 workers give `0,1` and `2,3`. A count that does not divide
is refused in one line: workers that shared a GPU would each map its memory
and NCCL would refuse the duplicate ("Duplicate GPU detected"). Without GPUs
every worker runs on the CPU. For one machine `--strategy=mirrored` is the
faster choice; this tries what a cluster will run.
"""

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app
from absl import flags

from launch.common import build_tf_config
from launch.common import TRAIN_MODULE
from launch.common import worker_command
from pipeline import flags as pipeline_flags

pipeline_flags.define_launch_local_flags()
FLAGS = flags.FLAGS

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # From <linux/prctl.h>.

__all__ = ["assign_gpus", "build_tf_config", "free_ports", "run", "exit_code", "visible_gpus"]


def free_ports(n, host=LOOPBACK):
  """`n` distinct TCP ports that are free on `host` now.

  The sockets are held until all `n` are found, so the ports differ. Another
  process may still take one before a worker binds it; the worker then fails
  to start and the launcher stops the rest.
  """
  sockets = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      sockets.append(s)
      s.bind((host, 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def visible_gpus(environ):
  """The GPU ids this machine offers its workers: CUDA_VISIBLE_DEVICES when set
  (empty or -1: none), else `nvidia-smi`'s indices, else none."""
  if "CUDA_VISIBLE_DEVICES" in environ:
    ids = [g.strip() for g in environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    return [] if ids[:1] == ["-1"] else ids
  smi = shutil.which("nvidia-smi", path=environ.get("PATH"))
  if not smi:
    return []
  try:
    listed = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"],
                            capture_output=True, text=True, timeout=60, check=True).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  return [line.strip() for line in listed.splitlines() if line.strip()]


def assign_gpus(gpus, num_workers):
  """Each worker's CUDA_VISIBLE_DEVICES: the GPUs split into equal, disjoint runs.

  Raises:
    ValueError: GPUs that cannot be split evenly (one line, with the ways out).
  """
  if not gpus:
    return [""] * num_workers  # CPU workers; "" hides any GPU from TensorFlow.
  if len(gpus) % num_workers:
    raise ValueError(f"--workers={num_workers} cannot share {len(gpus)} GPU(s) "
                     f"({','.join(gpus)}) evenly, and workers must not share a GPU; use "
                     f"--workers={len(gpus)} (one GPU each) or a divisor of {len(gpus)}, or "
                     "one process with --strategy=mirrored")
  per = len(gpus) // num_workers
  return [",".join(gpus[i * per:(i + 1) * per]) for i in range(num_workers)]


def exit_code(returncode):
  """A shell-style exit code: a process killed by signal N gives 128+N."""
  return returncode if returncode >= 0 else 128 - returncode


# Looked up here, not in the forked child (where loading a library could block).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent():
  """In the child before exec: SIGTERM when the launcher dies (Linux only)."""
  _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class _Output:
  """Whole lines from several threads onto one stream."""

  def __init__(self, stream):
    self._stream = stream
    self._lock = threading.Lock()

  def line(self, text):
    with self._lock:
      self._stream.write(text + "\n")
      self._stream.flush()


def _pump(pipe, prefix, output):
  """Copies every line of `pipe` to `output` behind `prefix`, until EOF."""
  with pipe:
    for raw in iter(pipe.readline, b""):
      output.line(prefix + raw.decode("utf-8", "replace").rstrip("\r\n"))


def _signal_group(proc, sig):
  if proc.poll() is None:  # Not reaped yet, so the id is still this worker's.
    try:
      os.killpg(proc.pid, sig)
    except ProcessLookupError:
      pass


def _stop(procs, grace_seconds, signals, output):
  """SIGTERM to every live worker; SIGKILL to those alive after the grace.

  A further signal to the launcher (`signals` grows) ends the grace at once.
  """
  for proc in procs:
    _signal_group(proc, signal.SIGTERM)
  seen = len(signals)
  deadline = time.monotonic() + grace_seconds
  while (any(p.poll() is None for p in procs) and time.monotonic() < deadline
         and len(signals) == seen):
    time.sleep(0.05)
  for i, proc in enumerate(procs):
    if proc.poll() is None:
      output.line(f"[launch] worker {i} still running after SIGTERM: SIGKILL")
      _signal_group(proc, signal.SIGKILL)
  for proc in procs:
    proc.wait()


def run(num_workers, train_args, python=None, module=TRAIN_MODULE, env=None, out=None,
        grace_seconds=30.0):
  """Runs `num_workers` training processes on loopback until they end.

  Called from the main thread, it handles SIGINT and SIGTERM itself while it
  runs (stopping the workers) and restores the previous handlers after.

  Args:
    num_workers: how many worker processes.
    train_args: the training flags (`--strategy=multi_worker` is added).
    python: the interpreter of the workers; default `sys.executable`.
    module: what the workers run with `python -m`.
    env: the workers' environment before TF_CONFIG; default `os.environ`.
    out: where the prefixed output goes; default `sys.stdout`.
    grace_seconds: when stopping, seconds between SIGTERM and SIGKILL.

  Returns:
    The launcher's exit code: 0 when every worker exited 0; else the code of
    the first worker that failed; 128+N when stopped by signal N.

  Raises:
    ValueError: num_workers < 1, a negative grace, train_args choosing
      another strategy, or GPUs that the workers cannot split evenly.
  """
  if num_workers < 1:
    raise ValueError(f"--workers must be >= 1, got {num_workers}")
  if grace_seconds < 0:
    raise ValueError(f"--grace_seconds must be >= 0, got {grace_seconds}")
  command = worker_command(python or sys.executable, module, train_args)
  output = _Output(out or sys.stdout)
  base_env = dict(os.environ if env is None else env)
  base_env["PYTHONUNBUFFERED"] = "1"  # Lines as they happen, not at exit.
  worker_gpus = assign_gpus(visible_gpus(base_env), num_workers)
  hosts = [f"{LOOPBACK}:{port}" for port in free_ports(num_workers)]

  signals = []
  previous = {}
  if threading.current_thread() is threading.main_thread():
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, lambda signum, frame: signals.append(signum))
  procs, pumps = [], []
  try:
    output.line(f"[launch] {num_workers} worker(s) on {', '.join(hosts)}: "
                f"{' '.join(command)}")
    if any(worker_gpus):
      output.line("[launch] GPUs: " + "; ".join(f"worker {i}: {g}"
                                               for i, g in enumerate(worker_gpus)))
    for index in range(num_workers):
      worker_env = dict(base_env, TF_CONFIG=json.dumps(build_tf_config(hosts, index)),
                        CUDA_VISIBLE_DEVICES=worker_gpus[index])
      procs.append(subprocess.Popen(
          command, env=worker_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT, process_group=0,
          preexec_fn=_die_with_parent if _PRCTL else None))
    # Threads only after every fork: preexec_fn is unsafe once threads run.
    for index, proc in enumerate(procs):
      pump = threading.Thread(target=_pump, args=(proc.stdout, f"[worker {index}] ", output),
                              daemon=True)
      pump.start()
      pumps.append(pump)

    while True:
      if signals:
        output.line(f"[launch] {signal.Signals(signals[0]).name}: stopping the workers")
        return 128 + signals[0]
      returncodes = [p.poll() for p in procs]
      failed = [(i, rc) for i, rc in enumerate(returncodes) if rc]
      if failed:
        index, rc = failed[0]
        output.line(f"[launch] worker {index} exited with code {rc}: stopping the others")
        return exit_code(rc)
      if all(rc == 0 for rc in returncodes):
        return 0
      time.sleep(0.1)
  finally:
    _stop(procs, grace_seconds, signals, output)
    for pump in pumps:
      pump.join(timeout=5)
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def main(argv):
  try:
    code = run(FLAGS.workers, argv[1:], python=FLAGS.python, module=FLAGS.module,
               grace_seconds=FLAGS.grace_seconds)
  except (ValueError, OSError) as e:  # OSError: --python could not be started.
    print(f"local: error: {e}", file=sys.stderr)
    sys.exit(2)
  sys.exit(code)


if __name__ == "__main__":
  app.run(main)
