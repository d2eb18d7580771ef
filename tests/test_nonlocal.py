"""The Non-Local block against AP3D's PyTorch `NonLocalBlock3D`, and its place in the trunk."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reidjax.config import config_lib
from reidjax.config.config_checks import validate
from reidjax.errors import ConfigError
from reidjax.experiment import build_module
from reidjax.models.nonlocal_block import NonLocal
from reidjax.models.resnet3d import ResNet3D
from reidjax.models.summary import count_params

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:  # the tests marked `torch` are skipped (conftest.py)
    torch = None


def ap3d_nonlocal(in_channels):
    """AP3D `models/NonLocal.py` `NonLocalBlock3D(in_channels, sub_sample=True,
    bn_layer=True)`, transcribed (dimension 3 only)."""

    class NonLocalBlock3D(nn.Module):
        def __init__(self):
            super().__init__()
            self.inter_channels = max(in_channels // 2, 1)
            conv = nn.Conv3d
            self.g = nn.Sequential(
                conv(in_channels, self.inter_channels, 1, 1, 0, bias=True),
                nn.MaxPool3d((1, 2, 2)),
            )
            self.theta = conv(in_channels, self.inter_channels, 1, 1, 0, bias=True)
            self.phi = nn.Sequential(
                conv(in_channels, self.inter_channels, 1, 1, 0, bias=True),
                nn.MaxPool3d((1, 2, 2)),
            )
            self.W = nn.Sequential(
                conv(self.inter_channels, in_channels, 1, 1, 0, bias=True),
                nn.BatchNorm3d(in_channels),
            )
            nn.init.constant_(self.W[1].weight.data, 0.0)
            nn.init.constant_(self.W[1].bias.data, 0.0)

        def forward(self, x):
            b = x.size(0)
            g_x = self.g(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
            theta_x = self.theta(x).view(b, self.inter_channels, -1).permute(0, 2, 1)
            phi_x = self.phi(x).view(b, self.inter_channels, -1)
            f = F.softmax(torch.matmul(theta_x, phi_x), dim=-1)
            y = torch.matmul(f, g_x).permute(0, 2, 1).contiguous()
            y = y.view(b, self.inter_channels, *x.size()[2:])
            return self.W(y) + x

    return NonLocalBlock3D()


def to_flax(block) -> dict:
    """The torch block's weights as the Flax block's variables."""

    def dense(conv):
        kernel = conv.weight.detach().numpy()[:, :, 0, 0, 0].T
        return {"kernel": kernel, "bias": conv.bias.detach().numpy()}

    bn = block.W[1]
    params = {
        "theta": dense(block.theta),
        "phi": dense(block.phi[0]),
        "g": dense(block.g[0]),
        "W": dense(block.W[0]),
        "W_bn": {"scale": bn.weight.detach().numpy(), "bias": bn.bias.detach().numpy()},
    }
    stats = {"mean": bn.running_mean.numpy(), "var": bn.running_var.numpy()}
    return {"params": params, "batch_stats": {"W_bn": stats}}


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(2, 3, 8, 6, 16), (1, 2, 7, 5, 4)])
def test_block_equals_ap3d_torch(shape):
    """Same weights (BN scale and bias made non-zero, else the block is the identity), same
    output, in training mode (batch statistics, running ones updated as torch does) and at
    test; odd sizes drop the pool's last row/column as torch's MaxPool3d does."""
    torch.manual_seed(0)
    block = ap3d_nonlocal(shape[-1]).double()
    with torch.no_grad():
        block.W[1].weight.normal_()
        block.W[1].bias.normal_()
    x = np.random.default_rng(0).normal(size=shape)
    variables = jax.tree.map(jnp.asarray, to_flax(block.float()))
    module = NonLocal()
    xt = torch.from_numpy(x).permute(0, 4, 1, 2, 3)
    block.double().train()
    with torch.no_grad():
        want = block(xt).permute(0, 2, 3, 4, 1).numpy()
    got, updates = module.apply(
        variables, jnp.asarray(x, jnp.float32), train=True, mutable=["batch_stats"]
    )
    # float32 against float64: a few ulps of the largest entry through two matmuls and a BN.
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(
        updates["batch_stats"]["W_bn"]["var"], block.W[1].running_var.numpy(), rtol=1e-4
    )
    block.eval()
    with torch.no_grad():
        want = block(xt).permute(0, 2, 3, 4, 1).numpy()
    variables = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    got = module.apply(variables, jnp.asarray(x, jnp.float32), train=False)
    np.testing.assert_allclose(got, want, atol=1e-4 * np.abs(want).max())


@pytest.mark.torch
def test_parameter_count_equals_ap3d():
    """The `:nonlocal` variant adds what AP3D's `ResNet503D(P3DC, nl_idx=[[], [1, 3],
    [1, 3, 5], []])` adds to its P3D-C count: two blocks of 512 channels and three of 1024;
    each Flax block holds the torch block's parameters (BN statistics aside)."""
    torch_count = sum(
        sum(p.numel() for p in ap3d_nonlocal(c).parameters()) for c in (512, 512, 1024, 1024, 1024)
    )
    assert torch_count == 7_358_464
    counts = {}
    for arg in ("", "nonlocal"):
        config = config_lib.load_config("p3dc_mars", arg or None)
        module = build_module(config)
        shapes = jax.eval_shape(
            module.init, jax.random.key(0), jnp.zeros((1, 4, 256, 128, 3), jnp.float32)
        )
        counts[arg] = count_params(shapes["params"])
    assert counts["nonlocal"] - counts[""] == torch_count
    assert counts[""] == 25_480_881


def test_identity_at_init_and_positions():
    """Zero-initialised BN: the trunk with Non-Local blocks computes the trunk without them;
    blocks sit where asked (after layer2/3 block 0 of the tiny trunk), bad positions say
    so, and DSANet refuses them."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 2, 32, 16, 3)), jnp.float32)
    plain = ResNet3D(arch="tiny", variant="p3dc")
    with_nl = ResNet3D(arch="tiny", variant="p3dc", nonlocal_blocks=((), (0,), (0,), ()))
    v = jax.jit(with_nl.init)(jax.random.key(0), x)
    names = [k for k in v["params"] if k.endswith("nonlocal")]
    assert names == ["layer2_0_nonlocal", "layer3_0_nonlocal"]
    base = {k: w for k, w in v["params"].items() if k not in names}
    stats = {k: w for k, w in v["batch_stats"].items() if k not in names}
    want = jax.jit(plain.apply)({"params": base, "batch_stats": stats}, x)["layer4"]
    got = jax.jit(with_nl.apply)(v, x)["layer4"]
    np.testing.assert_array_equal(got, want)
    kernel = np.asarray(v["params"]["layer2_0_nonlocal"]["theta"]["kernel"])
    # N(0, 2/C_out): C_out = 32 inner channels of the 64-channel layer2 output (std 0.25).
    assert kernel.shape == (64, 32) and 0.2 < kernel.std() < 0.3
    with pytest.raises(ConfigError, match=r"nonlocal_blocks for layer2 has indices \[1\]"):
        ResNet3D(arch="tiny", nonlocal_blocks=((), (1,), (), ())).resolved_nonlocal_blocks()
    config = config_lib.load_config("dsanet_mars", "smoke")
    with config.unlocked():
        config.model.nonlocal_blocks = ((), (0,), (), ())
    with pytest.raises(ConfigError, match="not DSANet"):
        validate(config)
