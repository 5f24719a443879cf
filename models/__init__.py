"""Shipped generator weights (installed as package data of codec.models)."""
