"""Thin console entry points: argument parsing, then a call into the package."""
