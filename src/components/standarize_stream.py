"""EPyMARL's import path of ``RunningMeanStd`` (defined once, in ``utils/running_mean_std.py``)."""
from utils.running_mean_std import RunningMeanStd

__all__ = ["RunningMeanStd"]
