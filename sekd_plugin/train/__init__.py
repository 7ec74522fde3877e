"""Self-evolving training of SEKD (Song et al., arXiv 2006.05077) on unlabeled images.

``python -m sekd_plugin.train --images DIR --output runs/NAME [--config FILE.yaml] [key=value ...]``

Each round: (1) keypoints from the detector with affine adaptation, (2) descriptor update
(triplet loss), (3) keypoints from descriptor reliability, (4) detector update (focal loss +
repeatability), then validation on synthetic homographies of held-out images.
"""

from .config import TrainConfig, TrainConfigError, load_config
from .command import cli, main
from .state import RunError
from .trainer import Trainer

__all__ = ["RunError", "TrainConfig", "TrainConfigError", "Trainer", "cli", "load_config", "main"]
