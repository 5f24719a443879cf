"""percodec: a perceptual image codec built on GAN inversion."""

__version__ = "0.1.0"
