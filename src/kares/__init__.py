"""Kares: the family-care service, server side."""

__version__ = "0.1.0"
