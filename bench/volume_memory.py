"""The activation memory of the 3-D networks, the memory part of
`bench.volumes_3d` (`python -m bench.volumes_3d --parts=memory`): from the
networks' shapes (`network_activations`, each network measured in a child
process of this module), and the peak RSS of `pipeline.train` at a small
side, beside a child that only imports what a training process imports.

Run as a module only by `memory` itself (child modes `--child_algo`,
`--child_side`, `--child_import`).
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

import algorithms  # pylint: disable=wrong-import-position
from bench import binaries  # pylint: disable=wrong-import-position
from bench import report  # pylint: disable=wrong-import-position
from input import reader  # pylint: disable=wrong-import-position
from input.medical import phantom as phantom_lib  # pylint: disable=wrong-import-position
from training import config as config_lib  # pylint: disable=wrong-import-position

MIB = binaries.MIB
# What a training process imports beyond the above: part of the import-only RSS.
# (bench.volumes_3d imported them when the committed figures were measured.)
_IMPORTED_FOR_RSS = (reader, phantom_lib)


def network_activations(algo, side):
  """Per-example forward activations (bytes in float32) of `algo`'s 3-D
  networks at side^3, as the trainer builds them (its resolved config), and
  their parameter counts: {"G": (layer outputs, graph outputs, params), "D": ...}.

  Layer outputs: the output of every leaf Keras layer in one forward pass
  (convolutions, normalizations, dense): a lower estimate, since activation
  functions, concatenations and dropout inside `call` are no layers. Graph
  outputs: every floating-point tensor with the batch axis in the traced
  forward graph (training=True, batch 2, halved): an upper estimate, since
  backprop keeps some of them only. Tracing runs nothing, so 128^3 costs no
  memory; building does one batch-2 forward pass at side^3 (the algorithm's
  own build).
  """

  kind = "paired" if algo == "pix2pix" else "image"
  data = algorithms.DataInfo(kind, (side, side, side, 1), 0, "bench")
  cls = algorithms.get(algo)
  config = cls.resolve(config_lib.TrainConfig(algo=algo), data)
  alg = cls(config, data)
  alg.build()
  record = []
  original = keras.layers.Layer.__call__

  def recording(layer, *a, **k):
    out = original(layer, *a, **k)
    if not list(layer._flatten_layers(include_self=False, recursive=False)):  # pylint: disable=protected-access
      record.extend(int(np.prod(t.shape)) for t in tf.nest.flatten(out) if hasattr(t, "shape"))
    return out

  batch = 2
  x = tf.TensorSpec((batch, side, side, side, 1), tf.float32)
  if algo == "pix2pix":
    calls = {"G": (lambda v: alg.generator(v, training=True), x),
             "D": (lambda v: alg.discriminator(v, condition=v, training=True), x)}
  else:
    z = tf.TensorSpec((batch, config.z_dim), tf.float32)
    calls = {"G": (lambda v: alg.generator(v, None, training=True), z),
             "D": (lambda v: alg.discriminator(v, None, training=True), x)}
  nets = {"G": alg.generator, "D": alg.discriminator}
  result = {}
  keras.layers.Layer.__call__ = recording
  try:
    for name, (fn, spec) in calls.items():
      record.clear()
      graph = tf.function(fn).get_concrete_function(spec).graph
      layers = sum(record) * 4 / batch
      ops = 0
      for op in graph.get_operations():
        if op.type in ("Placeholder", "ReadVariableOp", "Const", "Identity", "NoOp"):
          continue
        for t in op.outputs:
          if (t.dtype.is_floating and t.shape.rank and t.shape.is_fully_defined()
              and t.shape[0] == batch):
            ops += t.shape.num_elements() * t.dtype.size
      result[name] = (layers, ops / batch, nets[name].count_params())
  finally:
    keras.layers.Layer.__call__ = original
  return result, config


def _memory_child(args):
  """Child mode: prints one JSON line of `network_activations` for --child_algo at --child_side."""
  result, config = network_activations(args.child_algo, args.child_side)
  print(json.dumps({"nets": result, "base_channels": config.base_channels,
                    "z_dim": getattr(config, "z_dim", None)}), flush=True)


def memory(args, work, phantom, reused):
  """The memory part of `bench.volumes_3d`; returns its report lines (and the
  BUILD.md table). `args`: that script's (memory_sizes, memory_batches, size,
  rss_steps, seed); `reused` collects the conversions found already done."""
  print("memory: activations from the shapes, peak RSS of a training step", flush=True)
  sides = [int(s) for s in args.memory_sizes.split(",")]
  batches = [int(b) for b in args.memory_batches.split(",")]
  # Forward activations kept for the backward pass of one update. WGAN-GP's
  # critic update: D on real, fake and interpolates, and the penalty's
  # gradient graph (about one more D) with G's forward for the fakes;
  # pix2pix: G and D on the real and the generated pair.
  uses = {"wgan_gp": ("3-D DCGAN G + D (wgan_gp)", 4, "G + 4 D"),
          "pix2pix": ("3-D U-Net + PatchGAN (pix2pix)", 2, "G + 2 D")}
  rows, params_rows, found = [], [], {}
  for algo, (label, d_times, rule) in uses.items():
    for side in sorted(set(sides) | {args.size}):
      answer = None
      proc = subprocess.run([sys.executable, "-m", "bench.volume_memory", "--child_algo", algo,
                             "--child_side", str(side)], capture_output=True, text=True,
                            check=False)
      for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
          answer = json.loads(line)
          break
      if answer is None:
        raise SystemExit(f"memory child {algo} {side} failed:\n{proc.stderr[-3000:]}")
      found[(algo, side)] = answer
      g, d = answer["nets"]["G"], answer["nets"]["D"]
      params_rows.append([label, f"{side}^3", f"{g[2]:,}", f"{d[2]:,}",
                          f"{(g[2] + d[2]) * 4 / MIB:,.0f}",
                          f"{(g[2] + d[2]) * 16 / MIB:,.0f}"])
      if side not in sides:
        continue
      low = g[0] + d_times * d[0]
      high = g[1] + d_times * d[1]
      rows.append([label, f"{answer['base_channels']}", f"{side}^3", rule,
                   f"{g[0] / MIB:.0f}-{g[1] / MIB:.0f}", f"{d[0] / MIB:.0f}-{d[1] / MIB:.0f}"] +
                  [f"{b * low / MIB:,.0f}-{b * high / MIB:,.0f}" for b in batches])
      print(f"  {algo} {side}^3: {rows[-1]}", flush=True)
  table = report.table(
      ["networks", "width", "volume", "kept for one update", "G MiB/example",
       "D MiB/example"] + [f"batch {b}, MiB" for b in batches], rows)
  ptable = report.table(["networks", "volume", "G params", "D params", "weights MiB",
                         "weights + grads + Adam m, v MiB"], params_rows)
  # Peak RSS of pipeline.train at --size^3, batch 4 (a few steps), and of a
  # process that imports what this module imports (TensorFlow, Keras, the
  # project's algorithms and input modules) and nothing else.
  size = args.size
  src = f"--source=nifti:{phantom}/T1w"
  vol_data = os.path.join(work, "t1-volumes")
  binaries.step(work, "convert-t1-volumes", ["pipeline.convert", src, f"--output={vol_data}", "--volumes",
                                     f"--volume_size={size}", f"--seed={args.seed}"],
        os.path.join(vol_data, "manifest.json"), reused)
  pair_data = os.path.join(work, "t1t2-volumes-whole")
  binaries.step(work, "convert-t1t2-whole", ["pipeline.convert",
                                     f"--source=paired:nifti:{phantom}/T1w,{phantom}/T2w",
                                     f"--output={pair_data}", "--volumes",
                                     f"--volume_size={size}", f"--seed={args.seed}"],
        os.path.join(pair_data, "manifest.json"), reused)
  rss_rows = []
  log = os.path.join(work, "rss-import.log")
  code, _, rss = binaries.run(["bench.volume_memory", "--child_import"], log)
  binaries.check(code, "import child", log)
  rss_rows.append(["imports only (TensorFlow, Keras, algorithms, input)", "-", f"{rss:,.0f}",
                   "-", "-"])
  for algo, data in (("wgan_gp", vol_data), ("pix2pix", pair_data)):
    run = os.path.join(work, f"rss-{algo}")
    log = os.path.join(work, f"rss-{algo}.log")
    code, seconds, rss = binaries.run(["pipeline.train", f"--algo={algo}", f"--data={data}",
                               f"--model_dir={run}", "--fresh", "--global_batch_size=4",
                               f"--train_steps={args.rss_steps}", "--checkpoint_every=1000000",
                               "--sample_every=1000000", "--precision=float32",
                               f"--seed={args.seed}"], log)
    binaries.check(code, f"rss {algo}", log)
    g, d = found[(algo, size)]["nets"]["G"], found[(algo, size)]["nets"]["D"]
    d_times = uses[algo][1]
    est_text = (f"{4 * (g[0] + d_times * d[0]) / MIB:,.0f}-"
                f"{4 * (g[1] + d_times * d[1]) / MIB:,.0f}")
    rss_rows.append([f"pipeline.train --algo={algo}, {size}^3, batch 4, {args.rss_steps} steps, "
                     "float32", f"{seconds:.0f}", f"{rss:,.0f}", est_text,
                     f"{(g[2] + d[2]) * 16 / MIB:,.0f}"])
    print(f"  {rss_rows[-1]}", flush=True)
  rss_table = report.table(["process", "wall s", "peak RSS MiB",
                            "activation estimate (as above) MiB",
                            "weights + grads + Adam MiB"], rss_rows)
  lines = [
      "## Activation memory of the 3-D networks per replica", "",
      "From the networks' shapes, as `pipeline.train` builds them (the algorithm's resolved "
      "config: wgan_gp's dcgan nets at width "
      f"{found[('wgan_gp', sides[0])]['base_channels']}, z {found[('wgan_gp', sides[0])]['z_dim']};"
      f" pix2pix's U-Net and PatchGAN at width {found[('pix2pix', sides[0])]['base_channels']}), "
      "float32 (bfloat16 activations halve it). Each cell is a range: the low end sums the "
      "output of every leaf Keras layer (convolutions, normalizations, dense) in one forward "
      "pass; the high end sums every floating-point tensor with a batch axis in the traced "
      "forward graph (activations, concatenations, dropout, normalization intermediates), "
      "of which backprop keeps only some. These are the forward activations kept for the "
      "backward pass; the true peak is within about 2x of the range (workspace of the "
      "convolutions, the gradients of the activations while they are computed, the "
      "allocator's fragmentation). One update keeps G's and D's activations as the column "
      "says: WGAN-GP's critic update runs D on the real, fake and interpolated volumes and "
      "the gradient penalty differentiates D's gradient (about one more D); pix2pix runs D on "
      "the real and the generated pair. Parameters and optimizer slots are apart, below, "
      "and do not grow with the batch (the U-Net gains a level, and the DCGAN generator an "
      "upsampling, each time the side doubles).", "", table, "", ptable, "",
      f"Measured on this CPU (2 cores, shared): peak RSS (`ru_maxrss` of the child process, "
      f"`os.wait4`) of `pipeline.train` at {size}^3, global batch 4, {args.rss_steps} steps, "
      "float32; the process also holds TensorFlow, the input pipeline and the checkpoint "
      "writer, hence the import-only row.", "", rss_table, ""]
  return lines


def main(argv=None):
  p = argparse.ArgumentParser(description="Child modes of bench.volumes_3d's memory part.")
  p.add_argument("--child_algo", default=None)
  p.add_argument("--child_side", type=int, default=0)
  p.add_argument("--child_import", action="store_true",
                 help="Import what this module imports, nothing else (the RSS every row "
                 "starts from).")
  args = p.parse_args(argv)
  if args.child_algo:
    _memory_child(args)


if __name__ == "__main__":
  main()
