"""Registered fairseq tasks."""
