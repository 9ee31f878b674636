"""Transfer learning on a frozen pretrained MobileNet: `dataset` (class folders, split), `features` (backbone
cut at its pooled features, augmented views, feature cache), `head` (numpy training), `export` (the model
with the new classifier), `run` (the `train` job)."""

from .head import HeadSettings
from .run import TrainResult, train

__all__ = ["HeadSettings", "TrainResult", "train"]
