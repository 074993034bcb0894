"""Generator and discriminator networks, and the generator's noise prior."""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from torch import nn

from gan_cli.errors import UserError

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


Shape = Union[int, Sequence[int]]  # one sample's shape: d, or (C, H, W) for images


def numel(shape: Shape) -> int:
    return math.prod(shape) if isinstance(shape, Sequence) else shape


class MLP(nn.Sequential):
    """in_dim -> hidden... -> out_dim with a linear output (D's output is a logit).

    in_dim, out_dim: a width or a sample's shape; an image is flattened on the way in
    and shaped on the way out, so the same MLP serves vectors and images.
    minibatch: none | stddev | discrimination — a layer before the output that
    lets D compare each sample with the rest of its batch (a discriminator only).
    output_activation: e.g. tanh for a generator of images in [-1, 1]; null = linear.
    init_std: weights ~ N(0, init_std^2) and zero biases (the aylien blog's TensorFlow
    init, std 1.0); None = PyTorch's default (uniform, scaled by 1/sqrt(fan_in)).
    """

    def __init__(self, in_dim: Shape, out_dim: Shape, hidden: Sequence[int] = (64, 64),
                 activation: str = "leaky_relu", dropout: float = 0.0, minibatch: str = "none",
                 output_activation: Optional[str] = None, init_std: Optional[float] = None):
        layers: list[nn.Module] = []
        if isinstance(in_dim, Sequence) and len(in_dim) > 1:
            layers.append(nn.Flatten())  # (B, C, H, W) -> (B, C*H*W)
        width = numel(in_dim)
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        if minibatch == "stddev":
            layers.append(MinibatchStdDev())
            width += 1
        elif minibatch == "discrimination":
            layers.append(MinibatchDiscrimination(width))
            width += layers[-1].n_kernels
        layers.append(nn.Linear(width, numel(out_dim)))
        if output_activation is not None:
            layers.append(ACTIVATIONS[output_activation]())
        if isinstance(out_dim, Sequence) and len(out_dim) > 1:
            layers.append(nn.Unflatten(1, tuple(out_dim)))  # (B, C*H*W) -> (B, C, H, W)
        super().__init__(*layers)
        if init_std is not None:
            for layer in self:
                if isinstance(layer, nn.Linear):
                    nn.init.normal_(layer.weight, 0.0, init_std)
                    nn.init.zeros_(layer.bias)


def dcgan_init(module: nn.Module) -> nn.Module:
    """DCGAN's initialisation (Radford et al.): conv weights ~ N(0, 0.02), batch-norm
    scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, (nn.BatchNorm2d, VirtualBatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def _image_shape(shape: Shape, who: str) -> tuple[int, int, int]:
    if not (isinstance(shape, Sequence) and len(shape) == 3 and shape[1] % 4 == 0
            and shape[2] % 4 == 0):
        raise UserError(f"model={who} needs images whose height and width divide by 4 "
                        f"(data of shape {tuple(shape) if isinstance(shape, Sequence) else shape}"
                        "; with data=image_folder set data.size to a multiple of 4, e.g. 28, 32 "
                        "or 64); use model=mlp for vector data")
    return tuple(shape)


def doublings(h: int, w: int) -> int:
    """How many stride-2 layers lie between the smallest map and an h x w image: 2, and
    more while the map stays at least 4 pixels wide (28: 2, from 7 x 7; 32: 3 and 64: 4,
    from 4 x 4), so that larger images get deeper networks rather than a huge first map."""
    n = 2
    while h % 2 ** (n + 1) == 0 and w % 2 ** (n + 1) == 0 and min(h, w) // 2 ** (n + 1) >= 4:
        n += 1
    return n


class DCGANGenerator(nn.Sequential):
    """z (B, in_dim) -> image (B, C, H, W) in [-1, 1] for H, W divisible by 4 (28 x 28: seeds
    001, 003; 32 and 64 as well): a transposed convolution to the smallest map
    (2^(n-1) w, H/2^n, W/2^n), n = doublings(H, W) upsampling layers halving the channels
    and doubling the size, normalisation and ReLU after each but the last, tanh on the output.

    upsample: transposed (stride-2 transposed convolutions) | resize_conv (nearest-
    neighbour upsampling, then a 3x3 convolution: no checkerboard artifacts, seed 004).
    norm: batch | virtual_batch (each example normalised with the statistics of a fixed
    reference batch plus itself, Salimans et al. 2016, seed 003; the reference noise is
    drawn once, here, and kept as a buffer, so checkpoints carry it).
    """

    def __init__(self, in_dim: int, out_dim: Shape, width: int = 64,
                 upsample: str = "transposed", norm: str = "batch", reference_batch: int = 64):
        c, h, w = _image_shape(out_dim, "dcgan")
        n = doublings(h, w)
        widths = [width * 2 ** (n - 1 - i) for i in range(n)]  # e.g. 28 x 28: [2w, w]
        virtual = norm == "virtual_batch"

        def normalise(channels: int) -> nn.Module:
            return VirtualBatchNorm2d(channels, reference_batch) if virtual else \
                nn.BatchNorm2d(channels)

        def double(c_in: int, c_out: int, bias: bool) -> list[nn.Module]:  # (H, W) -> (2H, 2W)
            if upsample == "resize_conv":
                return [nn.Upsample(scale_factor=2, mode="nearest"),
                        nn.Conv2d(c_in, c_out, 3, 1, 1, bias=bias)]
            return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=bias)]

        layers: list[nn.Module] = [nn.Unflatten(1, (in_dim, 1, 1))]  # (B, z) -> (B, z, 1, 1)
        if virtual:  # (B, z, 1, 1) -> (n_ref + B, z, 1, 1): the reference batch goes first
            layers.append(PrependReference(torch.randn(reference_batch, in_dim, 1, 1)))
        layers += [  # (B, widths[0], H/2^n, W/2^n)
            nn.ConvTranspose2d(in_dim, widths[0], (h // 2 ** n, w // 2 ** n), bias=False),
            normalise(widths[0]), nn.ReLU()]
        for c_in, c_out in zip(widths, widths[1:]):  # (B, c_out, 2x, 2x)
            layers += [*double(c_in, c_out, bias=False), normalise(c_out), nn.ReLU()]
        layers += [*double(widths[-1], c, bias=True), nn.Tanh()]  # (B, C, H, W)
        if virtual:
            layers.append(DropReference(reference_batch))
        super().__init__(*layers)
        dcgan_init(self)


class PrependReference(nn.Module):
    """Puts the fixed reference input in front of the batch (virtual batch norm)."""

    def __init__(self, reference: torch.Tensor):
        super().__init__()
        self.register_buffer("reference", reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.reference.to(x.dtype), x])


class DropReference(nn.Module):
    """Removes the reference rows again: (n_ref + B, ...) -> (B, ...)."""

    def __init__(self, n_reference: int):
        super().__init__()
        self.n_reference = n_reference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.n_reference:]


class VirtualBatchNorm2d(nn.Module):
    """Virtual batch norm for (n_ref + B, C, H, W) whose first n_ref rows are the reference
    batch: the reference is normalised with its own per-channel statistics, and example
    i with those of the reference batch plus example i alone — so no example depends on
    the others in its batch. Then a learned per-channel scale and shift, as batch norm."""

    def __init__(self, num_features: int, n_reference: int, eps: float = 1e-5):
        super().__init__()
        self.n_reference, self.eps = n_reference, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.n_reference
        per_example = x.mean((2, 3), keepdim=True), (x * x).mean((2, 3), keepdim=True)
        # each (n_ref + B, C, 1, 1): the per-example means of x and x^2 over the image
        ref_mean, ref_sq = (m[:n].mean(0, keepdim=True) for m in per_example)  # (1, C, 1, 1)
        mean = torch.cat([ref_mean.expand(n, -1, -1, -1),
                          (n * ref_mean + per_example[0][n:]) / (n + 1)])
        sq = torch.cat([ref_sq.expand(n, -1, -1, -1), (n * ref_sq + per_example[1][n:]) / (n + 1)])
        var = (sq - mean * mean).clamp(min=0)
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return x_hat * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class DCGANDiscriminator(nn.Sequential):
    """image (B, C, H, W) -> logit (B, out_dim): n = doublings(H, W) stride-2 convolutions
    doubling the channels (w, 2w, ...) with LeakyReLU 0.2, batch norm on all but the first
    (never on D's input: seed 004), then one convolution over the remaining (H/2^n, W/2^n)
    map. D judges real and fake batches in separate passes, so batch norm never mixes the
    two (seed 003)."""

    def __init__(self, in_dim: Shape, out_dim: int = 1, width: int = 64,
                 batch_norm: bool = True):
        c, h, w = _image_shape(in_dim, "dcgan")
        n = doublings(h, w)
        widths = [width * 2 ** i for i in range(n)]  # e.g. 28 x 28: [w, 2w]
        layers: list[nn.Module] = [nn.Conv2d(c, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths, widths[1:]):  # (B, c_out, x/2, x/2)
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm),
                       nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(widths[-1], out_dim, (h // 2 ** n, w // 2 ** n)),  # (B, out, 1, 1)
                   nn.Flatten()]  # (B, out_dim)
        super().__init__(*layers)
        dcgan_init(self)


class MinibatchStdDev(nn.Module):
    """Appends the batch's mean feature standard deviation to every sample (Karras et
    al. 2018): a batch of near-copies, the mark of mode collapse, shows as a small value."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, F + 1)
        spread = h.std(dim=0, unbiased=False).mean()  # ()
        return torch.cat([h, spread.expand(h.shape[0], 1)], dim=1)


class MinibatchDiscrimination(nn.Module):
    """Salimans et al. 2016: each of n_kernels learned projections M_i = h_i T (kernel_dim
    wide) gives o_i = sum over j != i of exp(-|M_i - M_j|^2), how crowded i's
    neighbourhood is; appended to the features so D can reject batches that lack variety.

    The paper's L1 distance is replaced by the squared L2 one, which matrix products
    compute 2-3x faster; either way the cost grows with the batch size squared.
    """

    def __init__(self, in_features: int, n_kernels: int = 8, kernel_dim: int = 4):
        super().__init__()
        self.n_kernels, self.kernel_dim = n_kernels, kernel_dim
        self.T = nn.Parameter(0.1 * torch.randn(in_features, n_kernels * kernel_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, F) -> (B, F + n_kernels)
        m = (h @ self.T).view(-1, self.n_kernels, self.kernel_dim).transpose(0, 1)  # (K, B, C)
        sq = (m * m).sum(-1)  # (K, B)
        dist2 = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * m @ m.transpose(1, 2)).clamp(min=0)
        o = torch.exp(-dist2).sum(dim=2).T - 1.0  # (B, K), without each sample's self-match
        return torch.cat([h, o], dim=1)


class Pack(nn.Module):
    """PacGAN (Lin et al. 2018): D judges m samples at once, concatenated, so a G that
    repeats itself is easier to spot. (B, d) -> (B / m, m * d); images stack channels."""

    def __init__(self, m: int):
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0] // self.m, self.m * x.shape[1], *x.shape[2:])


def judges_each_sample_alone(discriminator: nn.Module) -> bool:
    """Whether no layer mixes the samples of a batch (batch norm, minibatch layers): then
    real and fake batches may go through D together, in one pass."""
    mixing = (nn.modules.batchnorm._BatchNorm, MinibatchStdDev, MinibatchDiscrimination)
    return not any(isinstance(m, mixing) for m in discriminator.modules())


@contextmanager
def frozen(weights: Sequence[nn.Parameter]) -> Iterator[None]:
    """No gradients for these weights inside the block. G's step needs D's gradient with
    respect to its input, not to its weights: skipping those saves about a third of D's
    backward pass."""
    trainable = [w for w in weights if w.requires_grad]
    for w in trainable:
        w.requires_grad_(False)
    try:
        yield
    finally:
        for w in trainable:
            w.requires_grad_(True)


def ema_updater(average: nn.Module, live: nn.Module) -> Callable[[float], None]:
    """ema_update(average, live, decay) as a function of decay, with both weight lists
    gathered once (walking the module tree each step costs more than a toy G's update)."""
    averaged, current = list(average.parameters()), list(live.parameters())
    averaged_buffers, current_buffers = list(average.buffers()), list(live.buffers())

    @torch.no_grad()
    def update(decay: float) -> None:
        # one fused kernel for all weights rather than one small op per tensor
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
        if averaged_buffers:
            torch._foreach_copy_(averaged_buffers, current_buffers)

    return update


def ema_update(average: nn.Module, live: nn.Module, decay: float) -> None:
    """average <- decay * average + (1 - decay) * live, weight by weight; buffers (batch
    norm's running statistics) are copied, as they describe the live network's activations."""
    ema_updater(average, live)(decay)


def spectral_normalise(module: nn.Module) -> nn.Module:
    """Divide every linear and convolution weight by its largest singular value
    (Miyato et al. 2018), estimated by one power iteration per forward pass."""
    from torch.nn.utils.parametrizations import spectral_norm

    for child in list(module.modules()):
        if isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d)):
            spectral_norm(child)
    return module


class Shift(nn.Module):
    """x + shift over the last dimension: a fixed offset, not trained."""

    def __init__(self, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("shift", shift.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class Affine(nn.Module):
    """x * scale + shift over the last dimension: a fixed map, not trained (a point set's
    standardisation, undone on G's output so that G makes points in the data's units)."""

    def __init__(self, scale: torch.Tensor, shift: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale.clone())
        self.register_buffer("shift", shift.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class NoisePrior:
    """Draws the generator's input z of shape (n, dim [+ categories]).

    normal: N(0, I). uniform: U(low, high)^dim. stratified: uniform, but the n
    draws of each coordinate fall one per equal stratum of [low, high] (in a
    random order), the aylien blog's jittered-linspace noise made unbiased.
    categories: K > 0 appends the one-hot code of a uniformly drawn category (a
    discrete latent, as InfoGAN's and a mixture of generators' are): a continuous G
    must spread mass between the separate modes it reaches from one connected latent
    space; different codes can land on different modes with no bridge between them.
    """

    def __init__(self, dist: str = "normal", dim: int = 16, low: float = -1.0,
                 high: float = 1.0, categories: int = 0, device: str | torch.device = "cpu"):
        self.dist, self.dim, self.low, self.high = dist, dim, low, high
        self.categories = categories
        self.device = torch.device(device)

    @property
    def width(self) -> int:
        """G's input width."""
        return self.dim + self.categories

    def __call__(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, width), drawn from `generator` (None: torch's global stream)."""
        z = self._continuous(n, generator)
        if not self.categories:
            return z
        code = torch.randint(self.categories, (n,), device=self.device, generator=generator)
        return torch.cat([z, nn.functional.one_hot(code, self.categories).to(z.dtype)], dim=-1)

    def _continuous(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        shape = (n, self.dim)
        if self.dist == "normal":
            return torch.randn(shape, device=self.device, generator=generator)
        u = torch.rand(shape, device=self.device, generator=generator)  # [0, 1)
        if self.dist == "stratified":
            order = torch.rand(shape, device=self.device, generator=generator)
            strata = torch.argsort(order, dim=-2)  # a random permutation per column
            u = (strata + u) / n
        return self.low + (self.high - self.low) * u
