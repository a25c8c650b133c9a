"""The launchers (launch/): TF_CONFIG for each worker, the local launcher with
a fake worker and with real training, the Slurm environment, the Kubernetes
Indexed Job environment, the manifests and the sbatch script.

No Slurm or Kubernetes cluster is needed: their environments are faked, and
the sbatch script runs with stand-ins for `srun` and `scontrol`.
"""

import json
import os
import queue
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from unittest import mock

import tensorflow as tf
from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver
import yaml

from distribute import cluster as cluster_lib
from launch import common
from launch import k8s_tf_config
from launch import local
from tests import helpers
from tests import test_cli
from tests import test_train

K8S_DIR = os.path.join(helpers.REPO_ROOT, "launch", "k8s")
SBATCH = os.path.join(helpers.REPO_ROOT, "launch", "slurm", "train.sbatch")


def _pid_alive(pid):
  """True while `pid` runs (a zombie counts as gone)."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


class _Launcher:
  """`python -m launch.local ...` in a subprocess, its output read line by line."""

  def __init__(self, args, plan, extra_env=None):
    env = helpers.subprocess_env()
    env["FAKE_WORKER_PLAN"] = plan
    env.update(extra_env or {})
    self.proc = subprocess.Popen(
        [sys.executable, "-m", "launch.local", "--module=tests.fake_worker", *args],
        env=env, cwd=helpers.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    self.lines = []
    self._queue = queue.Queue()
    threading.Thread(target=self._read, daemon=True).start()

  def _read(self):
    for line in self.proc.stdout:
      self._queue.put(line.rstrip("\n"))
    self._queue.put(None)

  def wait_for(self, text, count=1, timeout=60):
    """Reads lines until `count` of them contain `text`."""
    deadline = time.monotonic() + timeout
    while sum(text in line for line in self.lines) < count:
      line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
      if line is None:
        raise AssertionError(f"launcher ended before {count} x {text!r}:\n" +
                             "\n".join(self.lines))
      self.lines.append(line)

  def finish(self, timeout=60):
    """The exit code, after reading every line."""
    code = self.proc.wait(timeout=timeout)
    while (line := self._queue.get(timeout=timeout)) is not None:
      self.lines.append(line)
    return code

  def pids(self):
    """{worker index: pid}, from the fake workers' first lines."""
    out = {}
    for line in self.lines:
      if "] task worker " in line:
        words = line.split()
        out[int(words[4])] = int(words[8])
    return out


class TfConfigTest(tf.test.TestCase):

  def test_build_tf_config_for_each_index(self):
    hosts = ["127.0.0.1:1111", "127.0.0.1:2222", "h:3"]
    for index in range(3):
      self.assertEqual(common.build_tf_config(hosts, index),
                       {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})
    self.assertIs(local.build_tf_config, common.build_tf_config)

  def test_build_tf_config_errors(self):
    for hosts, index, message in (([], 0, "at least one host"),
                                  (["a:1", "b"], 0, "host 'b' is not HOST:PORT"),
                                  (["a:1"], 1, "worker index 1 is outside 0..0")):
      with self.subTest(message=message):
        with self.assertRaisesRegex(ValueError, message):
          common.build_tf_config(hosts, index)

  def test_worker_command_adds_the_strategy(self):
    self.assertEqual(common.worker_command("py", "m", ["--algo=gan"]),
                     ["py", "-m", "m", "--algo=gan", "--strategy=multi_worker"])
    self.assertEqual(common.worker_command("py", "m", ["--strategy", "multi_worker"])[-1],
                     "--strategy=multi_worker")
    for args in (["--strategy=mirrored"], ["-strategy", "default"], ["--strategy"]):
      with self.subTest(args=args):
        with self.assertRaisesRegex(ValueError, "the launchers run --strategy=multi_worker; "
                                    "drop"):
          common.worker_command("py", "m", args)

  def test_free_ports_are_distinct_and_bindable(self):
    ports = local.free_ports(4)
    self.assertLen(set(ports), 4)
    for port in ports:
      with socket.socket() as s:
        s.bind((local.LOOPBACK, port))

  def test_exit_code(self):
    self.assertEqual([local.exit_code(rc) for rc in (0, 3, -9, -15)], [0, 3, 137, 143])


class LocalLauncherTest(tf.test.TestCase):
  """launch.local with tests/fake_worker.py in place of pipeline.train."""

  def test_prefixed_output_and_tf_config_of_every_worker(self):
    launcher = _Launcher(["--workers=3", "--", "--algo=gan", "--train_steps=5"], "0,0,0")
    self.assertEqual(launcher.finish(), 0, "\n".join(launcher.lines))
    clusters = set()
    for i in range(3):
      self.assertIn(f"[worker {i}] task worker {i} of 3 pid {launcher.pids()[i]} args "
                    "--algo=gan --train_steps=5 --strategy=multi_worker", launcher.lines)
      # stderr is merged into the prefixed stream too.
      cluster = [l for l in launcher.lines if l.startswith(f"[worker {i}] cluster ")]
      self.assertLen(cluster, 1)
      clusters.add(cluster[0].split(" cluster ")[1])
    self.assertLen(clusters, 1)  # Every worker got the same cluster...
    hosts = clusters.pop().split()
    self.assertLen(set(hosts), 3)  # ...of 3 distinct loopback ports.
    self.assertTrue(all(h.startswith("127.0.0.1:") for h in hosts))
    for line in launcher.lines:
      self.assertRegex(line, r"^\[(worker \d|launch)\] ")

  def test_each_worker_gets_its_own_gpus(self):
    launcher = _Launcher(["--workers=2", "--", "--algo=gan"], "0,0",
                         extra_env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"})
    self.assertEqual(launcher.finish(), 0, "\n".join(launcher.lines))
    self.assertIn("[worker 0] gpus [0,1]", launcher.lines)
    self.assertIn("[worker 1] gpus [2,3]", launcher.lines)
    self.assertIn("[launch] GPUs: worker 0: 0,1; worker 1: 2,3", launcher.lines)
    # GPUs the workers cannot split are refused in one line, before any starts.
    launcher = _Launcher(["--workers=2", "--", "--algo=gan"], "0,0",
                         extra_env={"CUDA_VISIBLE_DEVICES": "0,1,2"})
    self.assertEqual(launcher.finish(), 2, "\n".join(launcher.lines))
    self.assertEqual(launcher.lines, [
        "local: error: --workers=2 cannot share 3 GPU(s) (0,1,2) evenly, and workers must not "
        "share a GPU; use --workers=3 (one GPU each) or a divisor of 3, or one process with "
        "--strategy=mirrored"])

  def test_gpu_assignment(self):
    self.assertEqual(local.assign_gpus(["0", "1", "2", "3"], 2), ["0,1", "2,3"])
    self.assertEqual(local.assign_gpus(["4", "6"], 2), ["4", "6"])
    self.assertEqual(local.assign_gpus(list("01234567"), 4), ["0,1", "2,3", "4,5", "6,7"])
    self.assertEqual(local.assign_gpus([], 3), ["", "", ""])  # CPU workers.
    for gpus, n in ((["0"], 2), (["0", "1", "2"], 2)):
      with self.assertRaisesRegex(ValueError, "workers must not share a GPU"):
        local.assign_gpus(gpus, n)
    self.assertEqual(local.visible_gpus({"CUDA_VISIBLE_DEVICES": " 2, 3 "}), ["2", "3"])
    self.assertEqual(local.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}), [])
    self.assertEqual(local.visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}), [])
    bin_dir = self.create_tempdir().full_path
    self.assertEqual(local.visible_gpus({"PATH": bin_dir}), [])  # No nvidia-smi: no GPU.
    smi = os.path.join(bin_dir, "nvidia-smi")
    with open(smi, "w", encoding="utf-8") as f:
      f.write("#!/bin/sh\nprintf '0\\n1\\n'\n")
    os.chmod(smi, 0o755)
    self.assertEqual(local.visible_gpus({"PATH": bin_dir}), ["0", "1"])

  def test_failing_worker_stops_the_others_and_gives_its_code(self):
    start = time.monotonic()
    launcher = _Launcher(["--workers=2", "--"], "sleep,3")
    self.assertEqual(launcher.finish(), 3, "\n".join(launcher.lines))
    self.assertLess(time.monotonic() - start, 30)  # Worker 0 would sleep 120 s.
    self.assertIn("[launch] worker 1 exited with code 3: stopping the others", launcher.lines)
    self.assertIn("[worker 0] stopped by SIGTERM", launcher.lines)
    self.assertFalse(_pid_alive(launcher.pids()[0]))

  def test_sigint_stops_every_worker(self):
    launcher = _Launcher(["--workers=2", "--"], "sleep,sleep")
    launcher.wait_for("] ready", count=2)
    launcher.proc.send_signal(signal.SIGINT)
    self.assertEqual(launcher.finish(), 130, "\n".join(launcher.lines))
    self.assertIn("[launch] SIGINT: stopping the workers", launcher.lines)
    for i in range(2):
      self.assertIn(f"[worker {i}] stopped by SIGTERM", launcher.lines)
      self.assertFalse(_pid_alive(launcher.pids()[i]))

  def test_sigterm_kills_a_worker_that_ignores_it_after_the_grace(self):
    launcher = _Launcher(["--workers=2", "--grace_seconds=1", "--"], "stubborn,sleep")
    launcher.wait_for("] ready", count=2)
    launcher.proc.send_signal(signal.SIGTERM)
    self.assertEqual(launcher.finish(), 143, "\n".join(launcher.lines))
    self.assertIn("[worker 1] stopped by SIGTERM", launcher.lines)
    self.assertIn("[launch] worker 0 still running after SIGTERM: SIGKILL", launcher.lines)
    self.assertFalse(_pid_alive(launcher.pids()[0]))

  def test_workers_die_with_a_killed_launcher(self):
    launcher = _Launcher(["--workers=2", "--"], "sleep,sleep")
    launcher.wait_for("] ready", count=2)
    launcher.proc.kill()  # No chance to stop them: the kernel sends them SIGTERM.
    launcher.finish()
    deadline = time.monotonic() + 10
    while any(map(_pid_alive, launcher.pids().values())) and time.monotonic() < deadline:
      time.sleep(0.05)
    self.assertFalse(any(map(_pid_alive, launcher.pids().values())))

  def test_bad_flags_exit_2_with_one_line(self):
    for args, message in ((["--workers=0"], "local: error: --workers must be >= 1, got 0"),
                          (["--", "--strategy=mirrored"],
                           "local: error: the launchers run --strategy=multi_worker; drop "
                           "'--strategy=mirrored' from the training flags")):
      with self.subTest(message=message):
        launcher = _Launcher(args, "0")
        self.assertEqual(launcher.finish(), 2)
        self.assertEqual(launcher.lines, [message])


class LocalTrainingTest(tf.test.TestCase):

  def test_two_workers_train_into_one_run_directory(self):
    tmp = self.create_tempdir().full_path
    run_dir = os.path.join(tmp, "run")
    proc = subprocess.run(
        [sys.executable, "-m", "launch.local", "--workers=2", "--",
         "--algo=gan", f"--data={test_train.small_data('ring2d')}", f"--model_dir={run_dir}",
         "--train_steps=2", "--checkpoint_every=2", *test_cli.TINY],
        env=helpers.subprocess_env(), cwd=helpers.REPO_ROOT, capture_output=True, text=True,
        timeout=600, check=False)
    out = proc.stdout + proc.stderr
    self.assertEqual(proc.returncode, 0, out[-3000:])
    self.assertIn("[worker 0] ", out)
    self.assertIn("[worker 1] ", out)
    self.assertRegex(out, r"\[worker 0\] .*multi_worker: cluster of 2 task\(s\) from "
                          r"TF_CONFIG; this is worker 0")
    self.assertRegex(out, r"\[worker 0\] .*2 replica\(s\) on 2 worker\(s\), global batch 8, "
                          r"per-replica batch 4")
    self.assertEqual(os.listdir(tmp), ["run"])
    self.assertEqual(sorted(os.listdir(run_dir)),
                     ["checkpoints", "config.json", "data_info.json", "samples", "tensorboard",
                      "train.log"])
    state = tf.train.get_checkpoint_state(os.path.join(run_dir, "checkpoints"))
    self.assertEqual(os.path.basename(state.model_checkpoint_path), "ckpt-2")


def _slurm_env(procid, nodelist="node[01-02]", tasks_per_node="1(x2)", ntasks=2, **extra):
  env = {"SLURM_PROCID": str(procid), "SLURM_STEP_NUM_TASKS": str(ntasks),
         "SLURM_STEP_NODELIST": nodelist, "SLURM_STEP_TASKS_PER_NODE": tasks_per_node}
  env.update(extra)
  return env


class SlurmClusterTest(tf.test.TestCase):

  def test_one_task_per_node(self):
    for procid in range(2):
      cluster = cluster_lib.slurm_cluster_spec(_slurm_env(procid))
      self.assertEqual(cluster, cluster_lib.Cluster(
          source="slurm", spec={"worker": ["node01:8888", "node02:8888"]},
          task_type="worker", task_index=procid))
      self.assertEqual(cluster.num_tasks, 2)

  def test_falls_back_to_the_job_variables(self):
    env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_JOB_NODELIST": "gpu[7,9-10]",
           "SLURM_TASKS_PER_NODE": "2,1(x2)", "SLURMD_NODENAME": "gpu10"}
    cluster = cluster_lib.slurm_cluster_spec(env)
    self.assertEqual(cluster.spec,
                     {"worker": ["gpu7:8888", "gpu7:8889", "gpu9:8888", "gpu10:8888"]})
    self.assertEqual(cluster.task_index, 3)

  def test_port_from_the_environment(self):
    cluster = cluster_lib.slurm_cluster_spec(_slurm_env(1, GAN_PIPELINE_TF_PORT="23000"))
    self.assertEqual(cluster.spec, {"worker": ["node01:23000", "node02:23000"]})

  def test_agrees_with_slurm_cluster_resolver_on_sorted_names(self):
    for procid in range(2):
      with mock.patch.dict(os.environ, _slurm_env(procid)):
        resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
            gpus_per_node=1, auto_set_gpu=False)
        spec = resolver.cluster_spec().as_dict()
      cluster = cluster_lib.slurm_cluster_spec(_slurm_env(procid))
      self.assertEqual(cluster.spec, spec)
      self.assertEqual((cluster.task_type, cluster.task_index),
                       (resolver.task_type, resolver.task_id))

  def test_keeps_slurm_node_order_where_the_resolver_sorts_names(self):
    # Pins why slurm_cluster_spec exists: rank 0 runs on node9, the first node.
    cluster = cluster_lib.slurm_cluster_spec(
        _slurm_env(0, nodelist="node[9-10]", SLURMD_NODENAME="node9"))
    self.assertEqual(cluster.spec, {"worker": ["node9:8888", "node10:8888"]})
    with mock.patch.dict(os.environ, _slurm_env(0, nodelist="node[9-10]")):
      resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
          gpus_per_node=1, auto_set_gpu=False)
      self.assertEqual(resolver.cluster_spec().as_dict(),
                       {"worker": ["node10:8888", "node9:8888"]})
    self.assertEqual(slurm_cluster_resolver.expand_hostlist("node[9-10]"), ["node9", "node10"])

  def test_pinned_errors(self):
    cases = [
        ({"SLURM_PROCID": "0"}, "SLURM_PROCID is set but not SLURM_STEP_NUM_TASKS or "
                                "SLURM_NTASKS; start the training with srun"),
        (_slurm_env("x"), "SLURM_PROCID='x' is not an integer"),
        (_slurm_env(2), "SLURM_PROCID=2 is outside 0..1"),
        (_slurm_env(0, tasks_per_node="1"),
         "Slurm environment: 2 node(s) ['node01', 'node02'] with tasks per node '1' do not "
         "make 2 task(s)"),
        (_slurm_env(0, nodelist="node[01-02"), "Invalid hostlist format"),
        (_slurm_env(0, GAN_PIPELINE_TF_PORT="http"),
         "GAN_PIPELINE_TF_PORT='http' is not a port number"),
        (_slurm_env(1, SLURMD_NODENAME="node01"),
         "SLURM_PROCID=1 runs on node01, but Slurm's node order puts task 1 on node02:8888"),
    ]
    for env, message in cases:
      with self.subTest(message=message):
        with self.assertRaisesRegex(ValueError, re.escape(message)):
          cluster_lib.slurm_cluster_spec(env)

  def test_resolve_cluster_prefers_tf_config(self):
    tf_config = json.dumps(common.build_tf_config(["a:1", "b:2"], 1))
    cluster = cluster_lib.resolve_cluster(dict(_slurm_env(0), TF_CONFIG=tf_config))
    self.assertEqual(cluster, cluster_lib.Cluster("TF_CONFIG", {"worker": ["a:1", "b:2"]},
                                                   "worker", 1))
    self.assertEqual(cluster_lib.resolve_cluster(_slurm_env(1)).source, "slurm")
    with self.assertRaisesRegex(ValueError, r"--strategy=multi_worker needs the cluster in "
                                r"TF_CONFIG .* or a Slurm step \(srun, SLURM_PROCID\)"):
      cluster_lib.resolve_cluster({"SLURM_JOB_ID": "7"})

  def test_two_workers_join_from_a_faked_slurm_step(self):
    """get_strategy("multi_worker") in 2 processes on loopback, cluster from Slurm."""
    script = (
        "import json\n"
        "from distribute import strategy as s\n"
        "import tensorflow as tf\n"
        "st = s.get_strategy('multi_worker')\n"
        "total = st.reduce('SUM', st.run(lambda: tf.constant(1.0)), axis=None)\n"
        "print('RESULT', json.dumps([s.worker_info(st), float(total)]))\n")
    port = _two_free_ports()
    procs = []
    for procid in range(2):
      env = helpers.subprocess_env()
      env.pop("TF_CONFIG", None)
      env.update(_slurm_env(procid, nodelist="127.0.0.1", tasks_per_node="2",
                            GAN_PIPELINE_TF_PORT=str(port)))
      procs.append(subprocess.Popen([sys.executable, "-c", script], env=env,
                                    cwd=helpers.REPO_ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for procid, (proc, out) in enumerate(zip(procs, outs)):
      self.assertEqual(proc.returncode, 0, out[-3000:])
      result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
      self.assertEqual(result, [[2, procid, procid == 0], 2.0])


def _two_free_ports():
  """A port P such that P and P+1 are both free on loopback now."""
  for _ in range(100):
    with socket.socket() as first:
      first.bind((local.LOOPBACK, 0))
      port = first.getsockname()[1]
      with socket.socket() as second:
        try:
          second.bind((local.LOOPBACK, port + 1))
        except OSError:
          continue
        return port
  raise AssertionError("no two consecutive free ports")


def _load_yaml(name):
  with open(os.path.join(K8S_DIR, name), encoding="utf-8") as f:
    return [doc for doc in yaml.safe_load_all(f) if doc]


def _env_of(container):
  return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


class KubernetesTest(tf.test.TestCase):

  def test_tf_config_for_each_index(self):
    for n in (1, 3):
      for index in range(n):
        env = {"JOB_COMPLETION_INDEX": str(index), "NUM_WORKERS": str(n), "JOB_NAME": "job",
               "SERVICE_NAME": "svc", "PORT": "2345"}
        self.assertEqual(k8s_tf_config.k8s_tf_config(env), {
            "cluster": {"worker": [f"job-{i}.svc:2345" for i in range(n)]},
            "task": {"type": "worker", "index": index}})
    env.pop("PORT")
    self.assertEqual(k8s_tf_config.k8s_tf_config(env)["cluster"]["worker"][0], "job-0.svc:2222")

  def test_pinned_errors(self):
    good = {"JOB_COMPLETION_INDEX": "1", "NUM_WORKERS": "2", "JOB_NAME": "j",
            "SERVICE_NAME": "s"}
    cases = [({"JOB_COMPLETION_INDEX": None}, "environment variable JOB_COMPLETION_INDEX is "
                                              "not set"),
             ({"NUM_WORKERS": "two"}, "NUM_WORKERS='two' is not an integer"),
             ({"SERVICE_NAME": ""}, "environment variable SERVICE_NAME is not set"),
             ({"NUM_WORKERS": "1"}, "JOB_COMPLETION_INDEX=1 is outside 0..0; NUM_WORKERS must "
                                    "equal the Job's completions"),
             ({"NUM_WORKERS": "0"}, "NUM_WORKERS must be >= 1, got 0")]
    for change, message in cases:
      with self.subTest(message=message):
        env = {k: v for k, v in dict(good, **change).items() if v is not None}
        with self.assertRaisesRegex(ValueError, message):
          k8s_tf_config.k8s_tf_config(env)

  def test_execs_the_worker_with_tf_config(self):
    env = helpers.subprocess_env()
    env.update(JOB_COMPLETION_INDEX="1", NUM_WORKERS="2", JOB_NAME="gan-train",
               SERVICE_NAME="gan-train", FAKE_WORKER_PLAN="0,7")
    proc = subprocess.run([sys.executable, "-m", "launch.k8s_tf_config",
                           "--module=tests.fake_worker", "--", "--algo=gan"],
                          env=env, cwd=helpers.REPO_ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    self.assertEqual(proc.returncode, 7, proc.stderr)  # The worker's code is the pod's.
    pid = int(proc.stdout.split(" pid ")[1].split()[0])
    self.assertEqual(proc.stdout,
                     f"task worker 1 of 2 pid {pid} args --algo=gan --strategy=multi_worker\n")
    self.assertIn("cluster gan-train-0.gan-train:2222 gan-train-1.gan-train:2222",
                  proc.stderr)

  def test_pvc_is_read_write_many(self):
    (pvc,) = _load_yaml("pvc.yaml")
    self.assertEqual(pvc["kind"], "PersistentVolumeClaim")
    self.assertEqual(pvc["spec"]["accessModes"], ["ReadWriteMany"])
    self.assertIn("storage", pvc["spec"]["resources"]["requests"])

  def _check_pod(self, pod_spec, container):
    """Checkpoints on the claim of pvc.yaml, GPUs limited."""
    (pvc,) = _load_yaml("pvc.yaml")
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    model_dir = [a for a in container["args"] if a.startswith("--model_dir=")][0]
    path = model_dir.split("=", 1)[1]
    mount = [m for m in mounts if path.startswith(m.rstrip("/") + "/")]
    self.assertLen(mount, 1, f"{path} is on no mounted volume")
    self.assertEqual(volumes[mounts[mount[0]]]["persistentVolumeClaim"]["claimName"],
                     pvc["metadata"]["name"])
    self.assertGreaterEqual(int(container["resources"]["limits"]["nvidia.com/gpu"]), 1)
    self.assertTrue(container["image"])

  def test_tfjob(self):
    (job,) = _load_yaml("tfjob.yaml")
    self.assertEqual((job["apiVersion"], job["kind"]), ("kubeflow.org/v1", "TFJob"))
    self.assertEqual(list(job["spec"]["tfReplicaSpecs"]), ["Worker"])  # Worker 0 is chief.
    worker = job["spec"]["tfReplicaSpecs"]["Worker"]
    self.assertGreaterEqual(worker["replicas"], 2)
    (container,) = worker["template"]["spec"]["containers"]
    self.assertEqual(container["name"], "tensorflow")
    self.assertEqual(container["command"], ["python", "-m", "pipeline.train"])
    self.assertIn("--strategy=multi_worker", container["args"])
    self._check_pod(worker["template"]["spec"], container)

  def test_indexed_job_and_headless_service(self):
    service, job = _load_yaml("job.yaml")
    self.assertEqual((service["kind"], job["kind"]), ("Service", "Job"))
    self.assertEqual(service["spec"]["clusterIP"], "None")
    spec = job["spec"]
    self.assertEqual(spec["completionMode"], "Indexed")
    self.assertEqual(spec["completions"], spec["parallelism"])
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = _env_of(container)
    self.assertEqual(int(env["NUM_WORKERS"]), spec["completions"])
    self.assertEqual(pod["subdomain"], service["metadata"]["name"])
    self.assertEqual(env["SERVICE_NAME"], service["metadata"]["name"])
    self.assertEqual(env["JOB_NAME"], {"fieldRef": {"fieldPath": "metadata.labels['job-name']"}})
    self.assertEqual(service["spec"]["selector"], {"job-name": job["metadata"]["name"]})
    self.assertEqual({int(env["PORT"])},
                     {service["spec"]["ports"][0]["port"], container["ports"][0]["containerPort"]})
    self.assertEqual(container["command"], ["python", "-m", "launch.k8s_tf_config", "--"])
    self._check_pod(pod, container)
    # What pod 1 would build from this manifest (Kubernetes sets the index).
    pod_env = {"JOB_COMPLETION_INDEX": "1", "NUM_WORKERS": env["NUM_WORKERS"],
               "JOB_NAME": job["metadata"]["name"], "SERVICE_NAME": env["SERVICE_NAME"],
               "PORT": env["PORT"]}
    self.assertEqual(k8s_tf_config.k8s_tf_config(pod_env)["cluster"]["worker"][:2],
                     ["gan-train-0.gan-train:2222", "gan-train-1.gan-train:2222"])


class SbatchTest(tf.test.TestCase):

  def _directives(self):
    with open(SBATCH, encoding="utf-8") as f:
      return [line.split()[1] for line in f if line.startswith("#SBATCH ")]

  def test_directives(self):
    directives = self._directives()
    for wanted in ("--ntasks-per-node=1", "--requeue", "--signal=B:USR1@120",
                   "--open-mode=append"):
      self.assertIn(wanted, directives)
    self.assertTrue(any(d.startswith("--gpus-per-node=") for d in directives))
    self.assertTrue(any(d.startswith("--nodes=") for d in directives))

  def _fake_slurm(self, srun_body):
    """A PATH folder with stand-ins for srun and scontrol that log their calls.

    The fake `scontrol requeue` stops the fake srun with SIGTERM, as Slurm
    stops a requeued job's steps.
    """
    bin_dir = self.create_tempdir().full_path
    log = os.path.join(bin_dir, "calls.log")
    pid_file = os.path.join(bin_dir, "srun.pid")
    scripts = {
        "srun": f'echo $$ > {pid_file}\n'
                f'echo "srun $* | TF_CONFIG=${{TF_CONFIG:-unset}} '
                f'PORT=$GAN_PIPELINE_TF_PORT" >> {log}\n{srun_body}\n',
        "scontrol": f'echo "scontrol $*" >> {log}\nkill -TERM "$(cat {pid_file})"\n',
    }
    for name, body in scripts.items():
      path = os.path.join(bin_dir, name)
      with open(path, "w", encoding="utf-8") as f:
        f.write("#!/bin/bash\n" + body)
      os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return bin_dir, log

  def _sbatch_env(self, bin_dir, model_dir):
    env = helpers.subprocess_env()
    env.update(PATH=bin_dir + os.pathsep + env["PATH"], SLURM_JOB_ID="123456",
               MODEL_DIR=model_dir, VENV=os.path.dirname(os.path.dirname(sys.executable)),
               TF_CONFIG='{"stale": 1}')
    env.pop("GAN_PIPELINE_TF_PORT", None)
    return env

  def test_runs_one_srun_of_the_training(self):
    bin_dir, log = self._fake_slurm("exit 0")
    model_dir = os.path.join(self.create_tempdir().full_path, "run")
    proc = subprocess.run(["bash", SBATCH, "--algo=gan", "--train_steps=10"],
                          env=self._sbatch_env(bin_dir, model_dir), cwd=helpers.REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    with open(log, encoding="utf-8") as f:
      calls = f.read().splitlines()
    self.assertEqual(calls, [
        "srun --kill-on-bad-exit=0 --wait=90 python -m pipeline.train --algo=gan "
        "--train_steps=10 "
        f"--strategy=multi_worker --model_dir={model_dir} | TF_CONFIG=unset PORT=23456"])
    self.assertTrue(os.path.isdir(model_dir))

  def test_usr1_near_the_time_limit_requeues(self):
    bin_dir, log = self._fake_slurm("exec sleep 60")
    model_dir = os.path.join(self.create_tempdir().full_path, "run")
    proc = subprocess.Popen(["bash", SBATCH, "--algo=gan"],
                            env=self._sbatch_env(bin_dir, model_dir), cwd=helpers.REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not os.path.exists(log) and time.monotonic() < deadline:
      time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # What --signal=B:USR1@120 sends.
    out, _ = proc.communicate(timeout=30)
    self.assertEqual(proc.returncode, 143, out)  # The step's, stopped by the requeue.
    self.assertIn("time limit near: requeueing job 123456", out)
    with open(log, encoding="utf-8") as f:
      self.assertEqual(f.read().splitlines()[1:], ["scontrol requeue 123456"])


if __name__ == "__main__":
  tf.test.main()
