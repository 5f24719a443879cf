"""Sample faces (public domain, see make_samples.py), installed as package data of codec.samples."""
