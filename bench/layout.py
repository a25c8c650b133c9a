"""Channels-last (NHWC) against channels-first (NCHW) convolutions on this machine.

    python -m bench.layout

The DCGAN networks of models/dcgan.py at 32x32x3 (base width 64, batch 64),
written here with plain Keras layers so that `data_format` can change; one
`tf.function` of 10 generator steps (a D step, then a G step, Adam, BCE),
timed as the best of `--calls` calls after two warm-up calls. Each
(layout, precision) runs in its own process, the four in turn, and the
table gives NCHW's speed as a ratio of NHWC's at the same precision.

It answers one question for the trainer: whether oneDNN's convolutions on a
CPU would be faster with the networks in channels-first. (On NVIDIA GPUs
cuDNN's tensor-core kernels want NHWC in float16/bfloat16; see BUILD.md.)
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import child as child_lib  # pylint: disable=wrong-import-position

LAYOUTS = ("channels_last", "channels_first")
PRECISIONS = ("float32", "mixed_bfloat16")


def _child(layout, precision, calls):
  # TensorFlow in the children only: the parent starts one process per layout.
  import keras  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  keras.mixed_precision.set_global_policy(precision)
  axis = -1 if layout == "channels_last" else 1
  L = keras.layers

  def shape(h, c):
    return (h, h, c) if axis == -1 else (c, h, h)

  z = keras.Input((128,))
  x = L.Reshape(shape(4, 256))(L.Dense(4 * 4 * 256, use_bias=False)(z))
  x = L.ReLU()(L.BatchNormalization(axis=axis)(x))
  for ch in (128, 64):
    x = L.Conv2DTranspose(ch, 4, 2, "same", use_bias=False, data_format=layout)(x)
    x = L.ReLU()(L.BatchNormalization(axis=axis)(x))
  x = L.Conv2DTranspose(3, 4, 2, "same", data_format=layout, dtype="float32")(x)
  g = keras.Model(z, L.Activation("tanh", dtype="float32")(x))
  image = keras.Input(shape(32, 3))
  x = L.LeakyReLU(0.2)(L.Conv2D(64, 4, 2, "same", data_format=layout)(image))
  for ch in (128, 256):
    x = L.Conv2D(ch, 4, 2, "same", use_bias=False, data_format=layout)(x)
    x = L.LeakyReLU(0.2)(L.BatchNormalization(axis=axis)(x))
  d = keras.Model(image, L.Dense(1, dtype="float32")(L.Flatten()(x)))
  opt_g, opt_d = keras.optimizers.Adam(2e-4, 0.5), keras.optimizers.Adam(2e-4, 0.5)
  opt_g.build(g.trainable_variables)
  opt_d.build(d.trainable_variables)
  real = tf.random.uniform((64,) + shape(32, 3), -1.0, 1.0)

  def bce(logits, target):
    return tf.nn.sigmoid_cross_entropy_with_logits(tf.fill(tf.shape(logits), target), logits)

  @tf.function
  def ten_steps():
    loss = tf.constant(0.0)
    for _ in tf.range(10):
      noise = tf.random.normal((64, 128))
      with tf.GradientTape() as tape:
        fake = g(noise, training=True)
        loss = tf.reduce_mean(bce(d(real, training=True), 1.0) + bce(d(fake, training=True), 0.0))
      opt_d.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables))
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(bce(d(g(noise, training=True), training=True), 1.0))
      opt_g.apply_gradients(zip(tape.gradient(loss, g.trainable_variables), g.trainable_variables))
    return loss

  ten_steps()
  ten_steps()
  best = float("inf")
  for _ in range(calls):
    start = time.perf_counter()
    ten_steps().numpy()
    best = min(best, time.perf_counter() - start)
  child_lib.answer({"steps_per_sec": 10 / best})


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--calls", type=int, default=4, help="Timed calls of 10 steps; the best counts.")
  p.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    layout, precision = args.child.split(",")
    _child(layout, precision, args.calls)
    child_lib.exit_now(0)
  speed = {}
  for precision in PRECISIONS:
    for layout in LAYOUTS:
      result, proc = child_lib.run(child_lib.command(
          "bench.layout", f"--calls={args.calls}", f"--child={layout},{precision}"))
      if result is None:
        sys.exit(f"{layout} {precision} failed: {child_lib.last_line(proc.stderr)}")
      speed[layout, precision] = result["steps_per_sec"]
  print(f"{'precision':16s} {'NHWC steps/s':>13s} {'NCHW steps/s':>13s} {'NCHW / NHWC':>12s}")
  for precision in PRECISIONS:
    last, first = speed["channels_last", precision], speed["channels_first", precision]
    print(f"{precision:16s} {last:13.2f} {first:13.2f} {first / last:11.2f}x")


if __name__ == "__main__":
  main()
