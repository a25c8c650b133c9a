"""A real one-node Slurm on this machine, for the tests (and to try the sbatch
script by hand):

    python -m launch.slurm_local start    # installs slurm-wlm and munge if missing
    SLURM_CONF=/tmp/gan-pipeline-slurm/slurm.conf sbatch ...
    python -m launch.slurm_local stop

`start` writes a one-node `slurm.conf` for this host (its CPUs and memory)
into STATE_DIR, starts `munged`, `slurmctld` and `slurmd` without systemd
(each daemonizes itself; their pid files and logs are in STATE_DIR) and waits
until `sinfo` shows the node idle. `stop` stops them. Slurm reads the
configuration through `SLURM_CONF`, so nothing under /etc/slurm changes.

Installing needs root and Debian's packages (`apt-get install slurm-wlm
munge`, Slurm 22.05 on Debian 12). Every failure raises `SlurmError` with the
reason and the daemon's last log lines; tests fail with it, they are not
skipped.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

STATE_DIR = os.environ.get("GAN_PIPELINE_SLURM_DIR", "/tmp/gan-pipeline-slurm")
PARTITION = "ci"
MUNGE_SOCKET_DIR = "/run/munge"
START_TIMEOUT_S = 60.0
PACKAGES = ("slurm-wlm", "munge")

CONF = """\
# Written by launch/slurm_local.py: one node, this host.
ClusterName=gan-pipeline-ci
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A job step credential lives cred_expire seconds, and a requeued job waits as
# long before it may start again (the node still holds the old run's revoked
# credential until then). Slurm's default is 120 s; 30 s here keeps the
# requeue test short without racing the revocation.
AuthInfo=cred_expire={cred_expire}
CredType=cred/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
KillWait={kill_wait}
MinJobAge=300
SlurmdTimeout=60
InactiveLimit=0
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""

# Slurm's default SIGTERM-to-SIGKILL grace; the preemption test reads it.
KILL_WAIT_S = 30
CRED_EXPIRE_S = 30  # Slurm's default: 120 (see CONF).


class SlurmError(RuntimeError):
  """Slurm could not be installed, started or stopped here; says why."""


def conf_path(state_dir=STATE_DIR):
  return os.path.join(state_dir, "slurm.conf")


def env(state_dir=STATE_DIR):
  """os.environ with SLURM_CONF pointing at this cluster."""
  return dict(os.environ, SLURM_CONF=conf_path(state_dir))


def _run(cmd, **kwargs):
  return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)


def _tail(path, n=8):
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return " | ".join(line.strip() for line in f.readlines()[-n:])
  except OSError:
    return f"(no {path})"


def ensure_installed():
  """Installs slurm-wlm and munge from Debian's packages where missing."""
  if all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")) or all(
      os.path.exists(p) for p in ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged")):
    return
  if os.geteuid() != 0:
    raise SlurmError(f"Slurm is not installed and this is not root: run "
                     f"'apt-get install -y {' '.join(PACKAGES)}' as root")
  proc = _run(["apt-get", "install", "-y", "-q", *PACKAGES],
              env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
  if proc.returncode:
    proc = _run(["sh", "-c", f"apt-get update -q && apt-get install -y -q {' '.join(PACKAGES)}"],
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
  if proc.returncode:
    raise SlurmError(f"apt-get install {' '.join(PACKAGES)} failed: {proc.stderr.strip()[-500:]}")


def _munge_works():
  encoded = _run(["munge", "-n"])
  return encoded.returncode == 0 and _run(["unmunge"], input=encoded.stdout).returncode == 0


def _start_munge():
  if _munge_works():
    return
  os.makedirs(MUNGE_SOCKET_DIR, exist_ok=True)
  shutil.chown(MUNGE_SOCKET_DIR, "munge", "munge")
  proc = _run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"])
  deadline = time.time() + 10
  while time.time() < deadline:
    if _munge_works():
      return
    time.sleep(0.2)
  raise SlurmError(f"munged did not start: {proc.stderr.strip()[-300:]}")


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _memory_mb():
  with open("/proc/meminfo", encoding="utf-8") as f:
    kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
  return max(1, kb // 1024 - 1024)  # Leave 1 GiB to the system.


def node_name():
  """The node name Slurm uses: the short host name."""
  return _run(["hostname", "-s"]).stdout.strip() or socket.gethostname().split(".")[0]


def _node_state(state_dir):
  proc = _run(["sinfo", "-h", "-N", "-o", "%t"], env=env(state_dir))
  return proc.stdout.strip() if proc.returncode == 0 else None


def start(state_dir=STATE_DIR, cpus=None):
  """Installs (if needed) and starts a one-node cluster; returns the seconds
  it took from here until the node was idle."""
  started = time.time()
  ensure_installed()
  stop(state_dir, quiet=True)  # Left from a run that was killed.
  for sub in ("ctld", "spool"):
    os.makedirs(os.path.join(state_dir, sub), exist_ok=True)
  with open(conf_path(state_dir), "w", encoding="utf-8") as f:
    f.write(CONF.format(host=node_name(), state=state_dir, cpus=cpus or os.cpu_count(),
                        memory_mb=_memory_mb(), partition=PARTITION,
                        ctld_port=_free_port(), d_port=_free_port(), kill_wait=KILL_WAIT_S,
                        cred_expire=CRED_EXPIRE_S))
  _start_munge()
  for daemon in ("slurmctld", "slurmd"):
    # -c: a clean start (no jobs or nodes kept from an earlier state).
    proc = _run([f"/usr/sbin/{daemon}", "-c"] if daemon == "slurmctld" else
                [f"/usr/sbin/{daemon}"], env=env(state_dir))
    if proc.returncode:
      raise SlurmError(f"{daemon} did not start ({proc.returncode}): "
                       f"{(proc.stderr or proc.stdout).strip()[-300:]} "
                       f"log: {_tail(os.path.join(state_dir, daemon + '.log'))}")
  deadline = time.time() + START_TIMEOUT_S
  state = None
  while time.time() < deadline:
    state = _node_state(state_dir)
    if state == "idle":
      return time.time() - started
    if state and state.startswith(("down", "drain")):
      _run(["scontrol", "update", f"nodename={node_name()}", "state=resume"], env=env(state_dir))
    time.sleep(0.5)
  raise SlurmError(f"the node is not idle after {START_TIMEOUT_S:g} s (sinfo: {state!r}); "
                   f"slurmctld: {_tail(os.path.join(state_dir, 'slurmctld.log'))}; "
                   f"slurmd: {_tail(os.path.join(state_dir, 'slurmd.log'))}")


def stop(state_dir=STATE_DIR, quiet=False):
  """Stops slurmd and slurmctld (munged stays: other users may need it)."""
  for daemon in ("slurmd", "slurmctld"):
    pid_file = os.path.join(state_dir, f"{daemon}.pid")
    try:
      with open(pid_file, encoding="utf-8") as f:
        pid = int(f.read().strip())
    except (OSError, ValueError):
      continue
    try:
      os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
      continue
    deadline = time.time() + 15
    while time.time() < deadline:
      try:
        os.kill(pid, 0)
      except ProcessLookupError:
        break
      time.sleep(0.2)
    else:
      if not quiet:
        print(f"{daemon} (pid {pid}) did not stop in 15 s: killing it", file=sys.stderr)
      try:
        os.kill(pid, signal.SIGKILL)
      except ProcessLookupError:
        pass


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  p.add_argument("action", choices=("start", "stop", "status"))
  p.add_argument("--state_dir", default=STATE_DIR)
  args = p.parse_args(argv)
  try:
    if args.action == "start":
      seconds = start(args.state_dir)
      print(f"Slurm is up in {seconds:.1f} s: export SLURM_CONF={conf_path(args.state_dir)}")
    elif args.action == "stop":
      stop(args.state_dir)
    else:
      print(_node_state(args.state_dir) or "not running")
  except SlurmError as e:
    print(f"slurm_local: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
