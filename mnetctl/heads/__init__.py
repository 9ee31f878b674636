"""Task heads as data, on the backbones of `mnetctl.specs`: `ssd.py` (SSD detectors), `deeplab.py` (DeepLabV3 segmenters)."""
