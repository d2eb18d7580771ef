"""Polyphase strided conv / max pool == XLA's native strided ops (values and gradients)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reidjax.models.conv import conv3d, max_pool3d


@pytest.mark.parametrize(
    "hw, kernel, stride, pad",
    [
        ((32, 16), (1, 7, 7), 2, 3),  # stem
        ((17, 9), (1, 3, 3), 2, 1),  # odd sizes
        ((16, 8), (1, 1, 1), 2, 0),  # downsample
        ((16, 8), (3, 1, 1), 2, 0),  # P3D-B temporal conv with spatial stride
        ((15, 11), (3, 3, 3), 2, 1),  # a strided I3D kernel
        ((12, 12), (1, 5, 3), 3, 1),  # stride 3, non-square kernel
    ],
)
def test_phase_conv_equals_native(hw, kernel, stride, pad):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 3, *hw, 5)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(*kernel, 5, 6)), jnp.float32)
    strides = (1, stride, stride)
    padding = ((kernel[0] // 2, kernel[0] // 2), (pad, pad), (pad, pad))
    dy = jnp.asarray(rng.normal(size=conv3d(x, k, strides, padding, "native").shape))

    def run(impl):
        y, vjp = jax.vjp(lambda x, k: conv3d(x, k, strides, padding, impl), x, k)
        return (y, *vjp(dy))

    for a, b in zip(run("native"), run("phase"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw", [(32, 16), (17, 9)])
def test_phase_max_pool_equals_native(hw):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 2, *hw, 4)), jnp.float32)
    args = ((1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1)))
    y_native, vjp_native = jax.vjp(lambda x: max_pool3d(x, *args, impl="native"), x)
    y_phase, vjp_phase = jax.vjp(lambda x: max_pool3d(x, *args, impl="phase"), x)
    np.testing.assert_array_equal(y_native, y_phase)
    dy = jnp.asarray(rng.normal(size=y_native.shape), jnp.float32)
    # Continuous random inputs have no ties, so the routed gradients agree exactly.
    np.testing.assert_allclose(vjp_native(dy)[0], vjp_phase(dy)[0], atol=1e-6)


def test_unit_stride_and_unknown_impl():
    x = jnp.ones((1, 1, 4, 4, 2))
    k = jnp.ones((1, 3, 3, 2, 2))
    same = ((0, 0), (1, 1), (1, 1))
    np.testing.assert_array_equal(
        conv3d(x, k, (1, 1, 1), same, "phase"), conv3d(x, k, (1, 1, 1), same, "native")
    )
    with pytest.raises(ValueError, match="valid: \\['auto', 'native', 'phase'\\]"):
        conv3d(x, k, (1, 2, 2), same, "fast")
