"""What every launcher needs: TF_CONFIG and the training command line.

Every launcher forms one `worker` job whose worker 0 is the chief, as
Kubeflow's TFJob does with only workers, so `distribute.strategy.worker_info`
sees the same cluster whichever launcher started the processes.
"""

import re

TRAIN_MODULE = "pipeline.train"

_STRATEGY_FLAG = re.compile(r"^--?strategy(=(.*))?$")


def build_tf_config(hosts, index):
  """The TF_CONFIG of worker `index` in a cluster of `hosts`.

  Args:
    hosts: ["host:port", ...], one per worker; worker 0 is the chief.
    index: this worker's index in `hosts`.

  Returns:
    A dict; `json.dumps` it into the TF_CONFIG environment variable.

  Raises:
    ValueError: no hosts, a host without a port, or an index outside them.
  """
  hosts = list(hosts)
  if not hosts:
    raise ValueError("TF_CONFIG needs at least one host")
  for host in hosts:
    name, _, port = host.rpartition(":")
    if not name or not port.isdigit():
      raise ValueError(f"host {host!r} is not HOST:PORT")
  if not 0 <= index < len(hosts):
    raise ValueError(f"worker index {index} is outside 0..{len(hosts) - 1}")
  return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def worker_command(python, module, train_args):
  """The command line of one training process: `--strategy=multi_worker` added.

  Args:
    python: the interpreter.
    module: the module to run with `-m` (normally `pipeline.train`).
    train_args: the training flags.

  Returns:
    A list of arguments for `subprocess` or `os.execv`.

  Raises:
    ValueError: `train_args` choose another strategy.
  """
  train_args = list(train_args)
  for i, arg in enumerate(train_args):
    match = _STRATEGY_FLAG.match(arg)
    if match:
      value = match.group(2) if match.group(1) else (
          train_args[i + 1] if i + 1 < len(train_args) else "")
      if value != "multi_worker":
        raise ValueError(f"the launchers run --strategy=multi_worker; drop {arg!r} from the "
                         "training flags")
  return [python, "-m", module, *train_args, "--strategy=multi_worker"]
