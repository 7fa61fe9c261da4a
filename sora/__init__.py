"""Sora: Transformer models as explicit compositions of particles.

Build a model from a config, train it, take it apart particle by particle, compress it on
that evidence and ship it. See README.md for the tour.
"""

__version__ = "0.1.0"
