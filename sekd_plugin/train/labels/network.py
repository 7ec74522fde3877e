"""The label network: the training network's weights in a faster form for the label forwards
(channels-last, block-diagonal dense deconvolutions, no descriptor head when only the detector
is needed)."""

from __future__ import annotations

import torch

from ...models.sekd import SEKDNet


class LabelNet(torch.nn.Module):
    """A frozen copy of SEKD laid out for label inference on a CPU.

    Channels-last convolutions (oneDNN's fast layout) and the grouped transposed convolutions
    as dense block-diagonal ones (oneDNN has no fast grouped deconvolution: 2x on that layer).
    Same function as the network, to float rounding (~1e-6). :meth:`logits` skips the
    descriptor head, which step 1 does not use.
    """

    def __init__(self, net: SEKDNet):
        super().__init__()
        import copy

        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        for name in ("deconv0", "deconv1"):
            seq = getattr(self.net, name)
            seq[2] = dense_deconv(seq[2])
        self.net = self.net.to(memory_format=torch.channels_last)

    def _trunk(self, image: torch.Tensor):
        return self.net.trunk(image.contiguous(memory_format=torch.channels_last))

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """``B x 2 x H x W`` detector logits of ``B x 1 x H x W`` images."""
        return self.net.detector(self._trunk(image)[1]).contiguous()

    def features(self, image: torch.Tensor):
        """As :meth:`SEKDNet.features`, outputs in the standard (NCHW) layout."""
        f2, u0 = self._trunk(image)
        return self.net.detector(u0).contiguous(), self.net.descriptor(f2).contiguous(), u0.contiguous()


def dense_deconv(m: torch.nn.ConvTranspose2d) -> torch.nn.ConvTranspose2d:
    if m.groups == 1:
        return m
    g, cin, cout = m.groups, m.in_channels, m.out_channels
    dense = torch.nn.ConvTranspose2d(cin, cout, m.kernel_size, stride=m.stride, padding=m.padding,
                                     output_padding=m.output_padding, bias=m.bias is not None).to(m.weight)
    w = torch.zeros_like(dense.weight)  # cin x cout x k x k
    ci, co = cin // g, cout // g
    for i in range(g):  # block i: input channels i*ci.., output channels i*co..
        w[i * ci : (i + 1) * ci, i * co : (i + 1) * co] = m.weight[i * ci : (i + 1) * ci]
    with torch.no_grad():
        dense.weight.copy_(w)
        if m.bias is not None:
            dense.bias.copy_(m.bias)
    return dense


def label_network(net, fast: bool = True):
    """The network to compute labels with: a :class:`LabelNet` when ``fast`` (and the net is a
    plain :class:`SEKDNet`), else ``net`` itself."""
    if fast and type(net) is SEKDNet:
        return LabelNet(net).to(next(net.parameters()).device)
    return net


def detector_logits(net, x: torch.Tensor) -> torch.Tensor:
    return net.logits(x) if isinstance(net, LabelNet) else net.features(x)[0]
