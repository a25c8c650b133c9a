"""Writing a conversion's shards in worker processes, with a pool as large as
the work pays for (`pipeline.convert --num_workers`, default automatic).

Workers are spawned (`fork` is unsafe once TensorFlow is loaded: its
threads do not survive a fork). Each one imports TensorFlow, which the shard
writer needs (`tf.train.Example`, `TFRecordWriter`): about 3 s a worker on a
2-core CPU, which made a pool of every CPU 2x slower than one process on
small folders. (A `forkserver` saves nothing: its children import the
binary's `__main__` again, as spawned ones do.)

By default the first two shards are written in this process and the second,
warm one is timed; the pool size is then the one that the estimate
`workers * WORKER_START_S + serial / workers` makes fastest for the rest (1: no pool),
so the default is never the slower choice on a small folder. Measured with
bench/convert_dicom.py (BUILD.md).
"""

import concurrent.futures
import multiprocessing
import os
import time

from absl import logging

from input import images
from input import shards

# Seconds each worker costs before it writes: a fresh Python importing
# TensorFlow (bench/convert_dicom.py's "[diag] import tensorflow" row: 3.3 s
# on the 2-core CPUs here). Counted once per worker: on 2 cores a pool of 2
# added 4.2-8.9 s to a 60-slice conversion (BUILD.md), so the imports do not
# overlap; on machines with many cores this is conservative.
WORKER_START_S = 3.5


def available_cpus():
  """The CPUs this process may run on."""
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:
    return max(1, os.cpu_count() or 1)


def pool_size(cpus, num_jobs, seconds_per_item, num_items, start_s=WORKER_START_S):
  """The number of workers that finishes `num_items` soonest by the estimate
  `workers * start_s + serial / workers` (serial alone for 1 worker, which
  runs in this process).

  Args:
    cpus: the CPUs available.
    num_jobs: shards left (no more workers than shards).
    seconds_per_item: measured on a warm shard.
    num_items: items left.
    start_s: what each worker costs before it writes.
  """
  serial = seconds_per_item * num_items
  best, best_s = 1, serial
  for workers in range(2, min(cpus, num_jobs) + 1):
    estimate = workers * start_s + serial / workers
    if estimate < best_s:
      best, best_s = workers, estimate
  return best


def write_shards(source, jobs, args, num_workers, max_image_pixels, on_done):
  """Writes `jobs` (ShardJobs), calling `on_done(record)` for each.

  Args:
    source: the conversion's Source (pickled to the workers).
    jobs: the ShardJobs to write.
    args: the rest of `shards.write_indexed_shard`'s arguments.
    num_workers: the pool size, or None to choose it from the first shard.
    max_image_pixels: Pillow's limit, set in every worker.
    on_done: called with each shard's record, in completion order.
  """
  jobs = list(jobs)
  if num_workers is None and len(jobs) > 2:
    # The first shard pays one-time costs (imports, decoder set-up) that a
    # fresh process would count as work: time the second, warm one.
    on_done(shards.write_indexed_shard(source, jobs.pop(0), *args))
    start = time.perf_counter()
    timed = jobs.pop(0)
    on_done(shards.write_indexed_shard(source, timed, *args))
    per_item = (time.perf_counter() - start) / max(1, len(timed.items))
    left = sum(len(j.items) for j in jobs)
    num_workers = pool_size(available_cpus(), len(jobs), per_item, left)
    logging.info("Writing %d more shards with %d worker(s): %.1f ms an input on the second "
                 "shard, %.1f s of work left in one process", len(jobs), num_workers,
                 per_item * 1e3, per_item * left)
  workers = min(num_workers or 1, max(1, len(jobs)))
  if workers == 1:
    for job in jobs:
      on_done(shards.write_indexed_shard(source, job, *args))
    return
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=ctx, initializer=images.set_max_image_pixels,
      initargs=(max_image_pixels,)) as pool:
    futures = [pool.submit(shards.write_indexed_shard, source, job, *args) for job in jobs]
    try:
      for f in concurrent.futures.as_completed(futures):
        on_done(f.result())
    except BaseException:
      pool.shutdown(wait=True, cancel_futures=True)
      raise
