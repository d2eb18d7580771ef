"""reidjax: video-based person re-identification (STRF, DSANet) in JAX/Flax."""

__version__ = "0.1.0"
