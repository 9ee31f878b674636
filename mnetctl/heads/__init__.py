"""Task heads on MobileNet backbones (detection, segmentation), as data."""
