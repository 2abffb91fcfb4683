"""Registered fairseq criteria (imported by fairseq_sparse/__init__.py)."""
