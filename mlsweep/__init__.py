"""mlsweep: Ray Tune sweeps for deep metric learning studies."""

__version__ = "0.1.0"
