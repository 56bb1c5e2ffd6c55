"""Efficient adaptation of language models: the course library.

Importing ``course_lib`` does no work: no torch, no model, no network. Submodules are imported
when used, e.g. ``from course_lib.models import load_model``.
"""
__version__ = "0.1.0"
