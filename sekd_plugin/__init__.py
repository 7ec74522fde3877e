"""sekd_plugin: SEKD keypoints and descriptors for hloc-style matching and SfM."""

__version__ = "0.1.0"
