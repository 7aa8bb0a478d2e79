"""Plot: one function per figure, DataFrames in, ``Figure`` out. Nothing is shown; nothing is saved
unless the caller saves it. Every function accepts ``ax=`` to draw into an existing axes."""

from .angles import angle_violins
from .heatmaps import trajectory_heatmap, update_heatmap

__all__ = ["update_heatmap", "trajectory_heatmap", "angle_violins"]
