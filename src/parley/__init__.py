"""Parley: a self-hosted communications platform."""

__version__ = "0.1.0"
