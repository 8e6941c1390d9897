"""Takedown: find, restrict and remove CSAM and non-consensual intimate imagery."""

from takedown.errors import TakedownError

__version__ = "0.1.0"
__all__ = ["TakedownError", "__version__"]
