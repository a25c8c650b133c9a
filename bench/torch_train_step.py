"""python -m bench.torch_train_step --algo=sngan --image_shape=32x32x3 --steps=50 --warmup=5

The `torch` variant of bench/train_step.py (which runs it with the resolved
hyperparameters of the TF variants as flags): the project's DCGAN generator
and discriminator (`models/dcgan.py`) re-written layer for layer in PyTorch,
trained with the usual PyTorch GAN loop, timed the same way, printing one
JSON line with the same fields. Where `import torch` fails it prints
{"skipped": "torch not installed"} and exits 0.

What is the same as the TF networks, layer for layer:
- G: Linear(z -> s*s*ch, no bias when batch norm) -> BatchNorm -> ReLU, then
  k-1 times ConvTranspose(4x4, stride 2, "same": padding 1; channels halve,
  no bias) -> BatchNorm -> ReLU, then ConvTranspose(4x4, stride 2, to the
  image channels, with bias) -> tanh. ch = base * 2^(k-1), s and k from
  `upsampling_plan` (32 px: 4x4 start, k=3; 28 px: 7x7 start, k=2).
- D: k times Conv(4x4, stride 2, padding 1; base, 2*base, ...; bias on the
  first layer and wherever there is no batch norm) -> [BatchNorm except on
  the first layer] -> LeakyReLU(slope), then flatten -> Linear(1).
- Weights N(0, 0.02), biases 0, batch-norm gamma 1 and beta 0; Keras's batch
  norm epsilon (1e-3) and momentum (0.9, i.e. PyTorch momentum 0.1); Adam with
  Keras's epsilon (1e-7); the same losses (per-example, averaged over the
  batch) and gradient penalty (uniform alpha, sqrt(sum g^2 + 1e-10)).
- Spectral norm (sngan): `torch.nn.utils.parametrizations.spectral_norm` on
  every D layer. Unlike models/spectral_norm.py (one power iteration per D
  step) it runs one per training-mode forward: 3 per generator step here (D on
  real, on fake, in the G step), one matrix-vector product per layer each.

What differs: the data. The real batches are random tensors of the data's
shape, uniform in [-1, 1], cycled from a pool of 16 batches made on the
device before timing: no input pipeline at all, so this variant has an edge
over the TF ones, which read TFRecords. Layout is PyTorch's NCHW (the TF nets
are NHWC). On CUDA, cudnn.benchmark is on (TensorFlow autotunes its
convolutions by default too).
"""

import argparse
import sys

from bench import child
from bench import timing

try:
  import torch
  from torch import nn
  import torch.nn.functional as F
except ImportError:
  torch = None

# The paper defaults of algorithms/gans.py SPECS, for running this file on
# its own; bench/train_step.py passes the TF variants' resolved values as flags.
DEFAULTS = {
    "wgan_gp": dict(loss="wasserstein", n_critic=5, lr=1e-4, beta1=0.5, beta2=0.9,
                    gp_weight=10.0, d_norm="none", spectral_norm=0, negative_slope=0.2),
    "sngan": dict(loss="hinge", n_critic=1, lr=2e-4, beta1=0.5, beta2=0.999, gp_weight=0.0,
                  d_norm="none", spectral_norm=1, negative_slope=0.1),
    "dcgan": dict(loss="bce", n_critic=1, lr=2e-4, beta1=0.5, beta2=0.999, gp_weight=0.0,
                  d_norm="batch", spectral_norm=0, negative_slope=0.2),
}
POOL_BATCHES = 16
BN_EPS, BN_MOMENTUM, ADAM_EPS = 1e-3, 0.1, 1e-7  # Keras's defaults, in PyTorch's terms.


def upsampling_plan(height, width):
  """(k, start_h, start_w), as `models.dcgan.upsampling_plan`."""
  for k in range(2, 8):
    f = 2 ** k
    if height % f == 0 and width % f == 0 and 3 <= height // f <= 7 and 3 <= width // f <= 7:
      return k, height // f, width // f
  raise ValueError(f"image size {height}x{width} is not supported by the conv nets")


def _init(module):
  """Keras's initializers of models/dcgan.py: kernels N(0, 0.02), biases 0."""
  if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
    nn.init.normal_(module.weight, 0.0, 0.02)
    if module.bias is not None:
      nn.init.zeros_(module.bias)


def _batch_norm(ch):
  return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


if torch is not None:

  class Generator(nn.Module):
    """z [B, z_dim] -> images [B, C, H, W] in [-1, 1] (DCGANGenerator, norm=batch)."""

    def __init__(self, image_shape, base_channels, z_dim):
      super().__init__()
      h, w, c = image_shape
      k, sh, sw = upsampling_plan(h, w)
      ch = base_channels * 2 ** (k - 1)
      self.start = (ch, sh, sw)
      self.project = nn.Linear(z_dim, sh * sw * ch, bias=False)
      self.project_norm = _batch_norm(ch)
      ups = []
      for _ in range(k - 1):
        ups += [nn.ConvTranspose2d(ch, ch // 2, 4, stride=2, padding=1, bias=False),
                _batch_norm(ch // 2), nn.ReLU()]
        ch //= 2
      self.ups = nn.Sequential(*ups)
      self.to_image = nn.ConvTranspose2d(ch, c, 4, stride=2, padding=1)
      self.apply(_init)

    def forward(self, z):
      x = F.relu(self.project_norm(self.project(z).view(-1, *self.start)))
      return torch.tanh(self.to_image(self.ups(x)))

  class Discriminator(nn.Module):
    """images [B, C, H, W] -> logits [B] (DCGANDiscriminator)."""

    def __init__(self, image_shape, base_channels, norm, use_spectral_norm, negative_slope):
      super().__init__()
      if norm not in ("batch", "none"):
        raise ValueError(f"unsupported d_norm {norm!r}; valid: batch, none")
      h, w, c = image_shape
      k, _, _ = upsampling_plan(h, w)
      sn = nn.utils.parametrizations.spectral_norm if use_spectral_norm else (lambda m: m)
      layers, ch_in, ch = [], c, base_channels
      for i in range(k):
        conv = nn.Conv2d(ch_in, ch, 4, stride=2, padding=1, bias=i == 0 or norm != "batch")
        _init(conv)  # Before the parametrization, which then wraps the initialized weight.
        layers.append(sn(conv))
        if i and norm == "batch":
          layers.append(_batch_norm(ch))
        layers.append(nn.LeakyReLU(negative_slope))
        ch_in, ch = ch, ch * 2
      self.convs = nn.Sequential(*layers)
      out = nn.Linear(ch_in * (h // 2 ** k) * (w // 2 ** k), 1)
      _init(out)
      self.out = sn(out)

    def forward(self, x):
      return self.out(torch.flatten(self.convs(x), 1)).squeeze(-1)


# Per-example losses of models/losses.py: (generator loss, discriminator loss).
LOSSES = {
    "bce": (lambda fake: F.softplus(-fake),
            lambda real, fake: F.softplus(-real) + F.softplus(fake)),
    "wasserstein": (lambda fake: -fake, lambda real, fake: fake - real),
    "hinge": (lambda fake: -fake, lambda real, fake: F.relu(1.0 - real) + F.relu(1.0 + fake)),
}


def gradient_penalty(discriminator, real, fake):
  """(||grad D(x_hat)|| - 1)^2 per example, x_hat = alpha real + (1 - alpha) fake."""
  alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
  x_hat = (alpha * real + (1.0 - alpha) * fake).requires_grad_(True)
  grads, = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
  norm = torch.sqrt(grads.pow(2).flatten(1).sum(1) + 1e-10)
  return (norm - 1.0) ** 2


def _parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
  p.add_argument("--algo", choices=sorted(DEFAULTS), default="sngan")
  p.add_argument("--image_shape", default="32x32x3", help="HxWxC of the data.")
  p.add_argument("--batch_size", type=int, default=64)
  p.add_argument("--steps", type=int, default=50, help="Timed generator steps.")
  p.add_argument("--warmup", type=int, default=5, help="Untimed generator steps first.")
  p.add_argument("--z_dim", type=int, default=128)
  p.add_argument("--base_channels", type=int, default=64)
  # None: the algorithm's default from DEFAULTS.
  for name, kind in (("loss", str), ("g_loss", str), ("n_critic", int), ("lr_g", float),
                     ("lr_d", float), ("beta1", float), ("beta2", float),
                     ("gp_weight", float), ("d_norm", str), ("spectral_norm", int),
                     ("negative_slope", float), ("optimizer", str)):
    p.add_argument(f"--{name}", type=kind, default=None)
  args = p.parse_args(argv)
  defaults = dict(DEFAULTS[args.algo])
  lr = defaults.pop("lr")
  defaults.update(lr_g=lr, lr_d=lr)
  for name, value in defaults.items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  if args.loss not in LOSSES:
    p.error(f"unsupported --loss {args.loss!r}; valid: {', '.join(LOSSES)}")
  if args.g_loss not in (None, "ns", "default"):
    p.error(f"unsupported --g_loss {args.g_loss!r}: only the non-saturating/default one")
  if args.optimizer not in (None, "adam"):
    p.error(f"unsupported --optimizer {args.optimizer!r}: only adam")
  args.image_shape = tuple(int(v) for v in args.image_shape.split("x"))
  return args


class _Loop:
  """The usual PyTorch GAN loop: n_critic D steps on new real batches, then a G step."""

  def __init__(self, args, device):
    self.args, self.device = args, device
    torch.manual_seed(0)
    self.generator = Generator(args.image_shape, args.base_channels, args.z_dim).to(device)
    self.discriminator = Discriminator(args.image_shape, args.base_channels, args.d_norm,
                                       bool(args.spectral_norm),
                                       args.negative_slope).to(device)
    self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=args.lr_g,
                                  betas=(args.beta1, args.beta2), eps=ADAM_EPS)
    self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=args.lr_d,
                                  betas=(args.beta1, args.beta2), eps=ADAM_EPS)
    self.g_loss_fn, self.d_loss_fn = LOSSES[args.loss]
    h, w, c = args.image_shape
    self.pool = torch.rand(POOL_BATCHES, args.batch_size, c, h, w, device=device) * 2 - 1
    self.next_batch = 0

  def _real(self):
    self.next_batch = (self.next_batch + 1) % POOL_BATCHES
    return self.pool[self.next_batch]

  def d_step(self):
    a, g, d = self.args, self.generator, self.discriminator
    real = self._real()
    with torch.no_grad():  # D's update needs no gradient through G.
      fake = g(torch.randn(a.batch_size, a.z_dim, device=self.device))
    loss = self.d_loss_fn(d(real), d(fake)).mean()
    if a.gp_weight:
      loss = loss + a.gp_weight * gradient_penalty(d, real, fake).mean()
    self.d_opt.zero_grad(set_to_none=True)
    loss.backward()
    self.d_opt.step()
    return loss

  def g_step(self):
    a, g, d = self.args, self.generator, self.discriminator
    loss = self.g_loss_fn(d(g(torch.randn(a.batch_size, a.z_dim, device=self.device)))).mean()
    self.g_opt.zero_grad(set_to_none=True)
    loss.backward()
    self.g_opt.step()
    return loss

  def generator_step(self):
    for _ in range(self.args.n_critic):
      d_loss = self.d_step()
    return d_loss, self.g_step()

  def sync(self):
    if self.device.type == "cuda":
      torch.cuda.synchronize()


def main(argv):
  args = _parse_args(argv)
  out = {"variant": "torch", "algo": args.algo,
         "data": "random tensors " + "x".join(map(str, args.image_shape)),
         "batch_size": args.batch_size, "timed_steps": args.steps}
  if torch is None:
    out["skipped"] = "torch not installed"
    child.answer(out)
    return 0
  try:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
      torch.backends.cudnn.benchmark = True
    seconds = timing.time_generator_steps(_Loop(args, device), args.steps, args.warmup)
    steps_per_sec = args.steps / seconds
    real_per_step = args.n_critic * args.batch_size
    out.update(
        steps_per_sec=steps_per_sec, seconds=seconds, real_per_step=real_per_step,
        images_per_sec=steps_per_sec * real_per_step, warmup_steps=args.warmup,
        device=str(device) + (f" ({torch.cuda.get_device_name()})"
                              if device.type == "cuda" else ""),
        peak_gpu_mib=(torch.cuda.max_memory_allocated() / 2**20
                      if device.type == "cuda" else None),
        note=f"PyTorch {torch.__version__}, random real data, "
             f"{torch.get_num_threads()} intra-op threads")
  except Exception as e:  # pylint: disable=broad-except  (reported as the row)
    out["error"] = child.error_line(e)
  out["peak_rss_mib"] = child.peak_rss_mib()
  child.answer(out)
  return 1 if "error" in out else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
