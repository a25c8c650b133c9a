"""A stand-in for pipeline.train in the launcher tests (`--module=tests.fake_worker`).

It prints its TF_CONFIG task and arguments, then follows its entry in
FAKE_WORKER_PLAN (comma-separated, one entry per worker index):

- an integer N: exit with code N;
- `sleep`: print "ready", then wait; SIGTERM prints "stopped by SIGTERM"
  and exits 143;
- `stubborn`: print "ready", ignore SIGTERM and wait (only SIGKILL ends it).

It imports nothing heavy, so it starts in a fraction of a second.
"""

import json
import os
import signal
import sys
import time


def main():
  tf_config = json.loads(os.environ["TF_CONFIG"])
  index = tf_config["task"]["index"]
  workers = tf_config["cluster"]["worker"]
  plan = os.environ.get("FAKE_WORKER_PLAN", "").split(",")
  action = plan[index] if index < len(plan) else "0"
  print(f"task {tf_config['task']['type']} {index} of {len(workers)} pid {os.getpid()} "
        f"args {' '.join(sys.argv[1:])}", flush=True)
  print(f"cluster {' '.join(workers)}", file=sys.stderr, flush=True)
  print(f"gpus [{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}]", file=sys.stderr, flush=True)
  if action.lstrip("-").isdigit():
    sys.exit(int(action))

  def on_term(signum, frame):
    del signum, frame
    print("stopped by SIGTERM", flush=True)
    sys.exit(143)

  signal.signal(signal.SIGTERM, signal.SIG_IGN if action == "stubborn" else on_term)
  print("ready", flush=True)
  deadline = time.monotonic() + 120  # Never outlive a broken test for long.
  while time.monotonic() < deadline:
    time.sleep(0.05)
  sys.exit(99)


if __name__ == "__main__":
  main()
