r"""Sets TF_CONFIG from a Kubernetes Indexed Job's environment, then runs the training.

    python -m launch.k8s_tf_config -- <train flags>

The container command of launch/k8s/job.yaml. Kubernetes gives each pod of an
Indexed Job its index (JOB_COMPLETION_INDEX) and, with the pod template's
`subdomain` naming a headless Service, the DNS name
`<JOB_NAME>-<index>.<SERVICE_NAME>`. From these every pod builds the same
cluster, one `worker` job whose worker 0 is the chief, and its own task, then
replaces itself (exec) with `python -m pipeline.train <train flags>
--strategy=multi_worker`, so that the training process receives the pod's
signals and its exit code is the container's.

Environment:
  JOB_COMPLETION_INDEX: this pod's index (set by Kubernetes).
  NUM_WORKERS: the number of pods (the Job's `completions`).
  JOB_NAME: the Job's name (the pods' host names are JOB_NAME-<index>).
  SERVICE_NAME: the headless Service named by the pods' `subdomain`.
  PORT: the port every worker listens on (default 2222).
"""

import json
import os
import sys

from absl import app
from absl import flags

from launch.common import build_tf_config
from launch.common import worker_command
from pipeline import flags as pipeline_flags

pipeline_flags.define_worker_command_flags()
FLAGS = flags.FLAGS

DEFAULT_PORT = 2222


def _int_env(env, name, default=None):
  value = env.get(name)
  if value is None or value == "":
    if default is None:
      raise ValueError(f"environment variable {name} is not set")
    return default
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name}={value!r} is not an integer") from None


def k8s_tf_config(env):
  """The TF_CONFIG of this pod of an Indexed Job.

  Args:
    env: a mapping like `os.environ` with the variables of the module doc.

  Returns:
    The TF_CONFIG dict (`launch.common.build_tf_config`): workers
    `<JOB_NAME>-<i>.<SERVICE_NAME>:<PORT>` for i in 0..NUM_WORKERS-1, and
    this pod's index.

  Raises:
    ValueError: a variable missing or not an integer, or an index outside
      0..NUM_WORKERS-1, naming it.
  """
  index = _int_env(env, "JOB_COMPLETION_INDEX")
  num_workers = _int_env(env, "NUM_WORKERS")
  port = _int_env(env, "PORT", DEFAULT_PORT)
  names = {}
  for name in ("JOB_NAME", "SERVICE_NAME"):
    names[name] = env.get(name, "")
    if not names[name]:
      raise ValueError(f"environment variable {name} is not set")
  if num_workers < 1:
    raise ValueError(f"NUM_WORKERS must be >= 1, got {num_workers}")
  if not 0 <= index < num_workers:
    raise ValueError(f"JOB_COMPLETION_INDEX={index} is outside 0..{num_workers - 1}; "
                     "NUM_WORKERS must equal the Job's completions")
  hosts = [f"{names['JOB_NAME']}-{i}.{names['SERVICE_NAME']}:{port}"
           for i in range(num_workers)]
  return build_tf_config(hosts, index)


def main(argv):
  try:
    tf_config = k8s_tf_config(os.environ)
    command = worker_command(FLAGS.python or sys.executable, FLAGS.module, argv[1:])
  except ValueError as e:
    print(f"k8s_tf_config: error: {e}", file=sys.stderr)
    sys.exit(2)
  env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
  print(f"k8s_tf_config: worker {tf_config['task']['index']} of "
        f"{len(tf_config['cluster']['worker'])}: TF_CONFIG={env['TF_CONFIG']}",
        file=sys.stderr, flush=True)
  os.execve(command[0], command, env)


if __name__ == "__main__":
  app.run(main)
