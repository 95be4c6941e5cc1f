"""Quaternion layers (Hamilton product) and their real-valued twins.

Channel layout (Orkis / SpeechBrain convention): a tensor with ``C`` real channels holds
``C/4`` quaternions, grouped component-major: channels ``[0, C/4)`` are the real parts r,
``[C/4, C/2)`` the i parts, then j, then k. A quaternion layer with weight
``W = r + i·i + j·j + k·k`` computes ``W ⊗ x`` (weight on the left) as one real operation with
the block kernel (rows: output parts, columns: input parts)::

    [[ r, -i, -j, -k],
     [ i,  r, -k,  j],
     [ j,  k,  r, -i],
     [ k, -j,  i,  r]]

so it holds 4x fewer weights than a real layer of the same width. Initialisation is Parcollet's
polar form: modulus ~ chi(4 dof) · 1/sqrt(2 (fan_in + fan_out)) ("glorot") or 1/sqrt(2 fan_in)
("he"), a random unit pure-imaginary axis and a phase ~ U(-pi, pi).

``real_twin(layer)`` builds the real-valued layer of equal width (same real in/out channels,
kernel, stride...) for ablations. Everything here exports to ONNX (one Conv/Gemm per layer).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "hamilton_kernel",
    "quaternion_init_",
    "QuaternionLinear",
    "QuaternionConv1d",
    "QuaternionConv2d",
    "QuaternionNorm",
    "RealChannelNorm",
    "conv_norm",
    "real_twin",
]


def hamilton_kernel(r: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Real block weight of W ⊗ x from the four parts, each [out/4, in/4, *kernel] -> [out, in, *kernel]."""
    return torch.cat(
        [
            torch.cat([r, -i, -j, -k], dim=1),
            torch.cat([i, r, -k, j], dim=1),
            torch.cat([j, k, r, -i], dim=1),
            torch.cat([k, -j, i, r], dim=1),
        ],
        dim=0,
    )


@torch.no_grad()
def quaternion_init_(
    r: torch.Tensor, i: torch.Tensor, j: torch.Tensor, k: torch.Tensor, *, criterion: str = "glorot"
) -> None:
    """Parcollet's polar quaternion initialisation, in place, for parts of shape [out/4, in/4, *kernel]."""
    receptive = math.prod(r.shape[2:]) if r.dim() > 2 else 1
    fan_in = r.shape[1] * receptive
    fan_out = r.shape[0] * receptive
    if criterion == "glorot":
        scale = 1.0 / math.sqrt(2.0 * (fan_in + fan_out))
    elif criterion == "he":
        scale = 1.0 / math.sqrt(2.0 * fan_in)
    else:
        raise ValueError(f"quaternion init criterion must be 'glorot' or 'he', got {criterion!r}")
    shape = r.shape
    modulus = torch.randn(4, *shape).pow(2).sum(0).sqrt() * scale  # chi with 4 degrees of freedom
    axis = torch.randn(3, *shape)
    axis = axis / axis.norm(dim=0, keepdim=True).clamp(min=1e-12)
    phase = torch.empty(shape).uniform_(-math.pi, math.pi)
    r.copy_(modulus * torch.cos(phase))
    s = modulus * torch.sin(phase)
    i.copy_(s * axis[0])
    j.copy_(s * axis[1])
    k.copy_(s * axis[2])


def _check_channels(name: str, value: int) -> int:
    if value <= 0 or value % 4:
        raise ValueError(f"{name} counts real channels and must be a positive multiple of 4, got {value}")
    return value // 4


class _QuaternionWeights(nn.Module):
    """Holds the four weight parts r, i, j, k [out/4, in/4, *kernel] and an optional real bias [out]."""

    def __init__(self, in_features: int, out_features: int, kernel: tuple[int, ...], bias: bool, init: str) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        qin = _check_channels("in_channels", in_features)
        qout = _check_channels("out_channels", out_features)
        shape = (qout, qin, *kernel)
        self.r = nn.Parameter(torch.empty(shape))
        self.i = nn.Parameter(torch.empty(shape))
        self.j = nn.Parameter(torch.empty(shape))
        self.k = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.init = init
        quaternion_init_(self.r, self.i, self.j, self.k, criterion=init)

    def weight(self) -> torch.Tensor:
        """The real block weight [out, in, *kernel]."""
        return hamilton_kernel(self.r, self.i, self.j, self.k)


class QuaternionLinear(_QuaternionWeights):
    """W ⊗ x on the last dimension: x [..., in_features] -> [..., out_features] (real counts, multiples of 4)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init: str = "glorot") -> None:
        super().__init__(in_features, out_features, (), bias, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _QuaternionConv(_QuaternionWeights):
    _dims = 1

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        bias: bool = True,
        init: str = "glorot",
    ) -> None:
        def tup(v: int | tuple[int, ...]) -> tuple[int, ...]:
            t = (v,) * self._dims if isinstance(v, int) else tuple(v)
            if len(t) != self._dims:
                raise ValueError(f"expected {self._dims} values, got {v!r}")
            return t

        kernel = tup(kernel_size)
        super().__init__(in_channels, out_channels, kernel, bias, init)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel
        self.stride = tup(stride)
        self.padding = tup(padding)
        self.dilation = tup(dilation)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}"
        )


class QuaternionConv1d(_QuaternionConv):
    """Quaternion convolution over time: x [B, in_channels, T] -> [B, out_channels, T']."""

    _dims = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)


class QuaternionConv2d(_QuaternionConv):
    """Quaternion convolution over (H, W): x [B, in_channels, H, W] -> [B, out_channels, H', W']."""

    _dims = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation)


class QuaternionNorm(nn.Module):
    """Quaternion-aware layer normalisation over the channel dimension (dim 1) of [B, C, ...].

    Each component is centred over the C/4 quaternion channels, then every quaternion is divided by
    the same scalar, the root mean squared quaternion modulus, so directions in quaternion space are
    kept (SpeechBrain's QBatchNorm idea, computed per position instead of per batch so padding and
    batch size do not leak into the statistics). Affine: one real gain per quaternion channel (it
    scales the whole quaternion) and one bias per real channel.

    ``forward`` = ``scale_centred`` of the input with ``centring`` [C, C] applied over its channels:
    a fixed linear map, so :func:`conv_norm` folds it into the weights of the layer before.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.quaternions = q = _check_channels("channels", channels)
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(self.quaternions))
        self.bias = nn.Parameter(torch.zeros(channels))
        # [C, C]: subtracts each component's mean over its quaternion channels (block-diagonal blocks of 1/q)
        self.register_buffer("centring", torch.eye(channels) - torch.block_diag(*[torch.full((q, q), 1.0 / q)] * 4),
                             persistent=False)

    def scale_centred(self, x: torch.Tensor) -> torch.Tensor:
        """The norm of an input whose components are already centred (e.g. by :func:`conv_norm`)."""
        extra = (1,) * (x.dim() - 2)
        # mean squared quaternion modulus = 4 x the mean square over channels: 1/sqrt(4 m + eps) = 0.5/sqrt(m + eps/4)
        scale = torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 0.25 * self.eps)
        return x * scale * (0.5 * self.gain).repeat(4).view(1, -1, *extra) + self.bias.view(1, -1, *extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.unflatten(1, (4, self.quaternions))
        return self.scale_centred((q - q.mean(dim=2, keepdim=True)).flatten(1, 2))


class RealChannelNorm(nn.Module):
    """Real twin of QuaternionNorm: layer normalisation over dim 1 of [B, C, ...], per-channel affine."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("centring", torch.eye(channels) - 1.0 / channels, persistent=False)

    def scale_centred(self, x: torch.Tensor) -> torch.Tensor:
        extra = (1,) * (x.dim() - 2)
        x = x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return x * self.gain.view(1, -1, *extra) + self.bias.view(1, -1, *extra)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale_centred(x - x.mean(dim=1, keepdim=True))


def conv_norm(conv: nn.Module, norm: QuaternionNorm | RealChannelNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(conv(x))`` for a quaternion or real 1-D/2-D conv, with the norm's centring (linear in the
    conv's output) folded into the conv's weight and bias. Equal up to rounding; the exported graph
    then holds one Conv with constant weights instead of the reshape/mean/subtract passes."""
    weight = conv.weight() if callable(conv.weight) else conv.weight
    weight = (norm.centring @ weight.flatten(1)).view_as(weight)
    bias = None if conv.bias is None else norm.centring @ conv.bias
    if weight.dim() == 4:
        return norm.scale_centred(F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation))
    # a 1-D conv as a 2-D conv over a height-1 map: onnxruntime then uses its blocked (NCHWc) conv
    # kernels, 0.1-0.3 ms faster per window here for the VAP encoder's 256 -> 128 channel conv
    (stride,), (padding,), (dilation,) = conv.stride, conv.padding, conv.dilation
    y = F.conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, (1, stride), (0, padding), (1, dilation))
    return norm.scale_centred(y.squeeze(2))


def real_twin(layer: nn.Module) -> nn.Module:
    """The real-valued layer of equal width (same real channel counts and geometry) as a quaternion layer."""
    bias = getattr(layer, "bias", None) is not None
    if isinstance(layer, QuaternionLinear):
        return nn.Linear(layer.in_features, layer.out_features, bias=bias)
    if isinstance(layer, QuaternionConv1d):
        cls = nn.Conv1d
    elif isinstance(layer, QuaternionConv2d):
        cls = nn.Conv2d
    elif isinstance(layer, QuaternionNorm):
        return RealChannelNorm(layer.bias.numel(), eps=layer.eps)
    else:
        raise TypeError(f"no real twin for {type(layer).__name__}")
    return cls(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=bias,
    )
