"""The activation maps every model family draws in `attention.png`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from reidjax.config import config_lib
from reidjax.data_setup import registry_meta
from reidjax.experiment import build


@pytest.mark.slow
def test_baseline_and_strf_maps_are_channel_means_of_their_stages():
    """Baseline and STRF draw layer3 and layer4: the channel mean of each stage's output,
    per frame; DSANet draws F_ID, F_cam and TLM. Shapes from the full-size configs."""
    for name, want in [
        ("p3dc_mars", {"layer3", "layer4"}),
        ("strf_mars", {"layer3", "layer4"}),
        ("dsanet_mars", {"F_ID", "F_cam", "TLM"}),
    ]:
        config = config_lib.load_config(name)
        model = build(config, registry_meta(config))
        clips = jax.ShapeDtypeStruct((2, 4, 256, 128, 3), jnp.uint8)
        variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 4, 256, 128, 3)))
        maps = jax.eval_shape(model.attention, variables, clips)
        assert set(maps) == want, name
        if name != "dsanet_mars":
            assert maps["layer3"].shape == (2, 4, 16, 8) and maps["layer4"].shape == (2, 4, 16, 8)

    config = config_lib.load_config("p3dc_mars", "smoke")
    model = build(config, registry_meta(config))
    clips = np.random.default_rng(0).integers(0, 256, (1, 2, 32, 64, 3), np.uint8)
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 2, 32, 64, 3)))
    maps = jax.jit(model.attention)(variables, clips)
    stages = jax.jit(lambda v, x: model.module.apply(v, x, method=lambda m, x: m.backbone(x)))(
        variables, model_input(clips)
    )
    for stage in ("layer3", "layer4"):
        np.testing.assert_allclose(maps[stage], np.mean(stages[stage], -1), rtol=1e-6, atol=1e-6)


def model_input(clips):
    from reidjax.models.factory import normalize

    return normalize(jnp.asarray(clips))
