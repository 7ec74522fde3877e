"""Make SEKD usable from hloc's own pipeline (``hloc.extract_features`` etc.), unchanged.

    import sekd_plugin.integrations.hloc
    sekd_plugin.integrations.hloc.register()

    from hloc import extract_features, match_features, pairs_from_exhaustive, reconstruction
    feature_conf = extract_features.confs["sekd"]          # or "sekd-ms", "sekd-paper"
    features = extract_features.main(feature_conf, images, outputs)
    pairs_from_exhaustive.main(sfm_pairs, image_list=references)
    matches = match_features.main(match_features.confs["NN-mutual"], sfm_pairs,
                                  feature_conf["output"], outputs)
    model = reconstruction.main(sfm_dir, images, sfm_pairs, features, matches)

:func:`register` (a no-op returning False when hloc is not importable):

* adds our SEKD confs (every entry of ``sekd_plugin.extractors.confs`` whose model is
  ``sekd``) to ``hloc.extract_features.confs``;
* inserts a module ``hloc.extractors.sekd`` into ``sys.modules`` (and as an attribute of
  ``hloc.extractors``) defining exactly one ``hloc.utils.base_model.BaseModel`` subclass,
  ``SEKD``, which wraps :class:`sekd_plugin.extractors.sekd.SEKD`. hloc's ``dynamic_load``
  therefore finds it for ``conf["model"]["name"] == "sekd"``. Its ``default_conf`` is our
  extractor's (weights from ``SEKD_PLUGIN_WEIGHTS_DIR`` / the cache, see
  ``python -m sekd_plugin.weights``); it returns hloc's contract for a batch of one image:
  ``keypoints`` 1 x N x 2 (x, y; centre of the top-left pixel = (0, 0)), ``scores`` 1 x N,
  ``descriptors`` 1 x D x N (D = 128), L2-normalised (hloc's ``NN-mutual`` matcher applies).

hloc itself is not a dependency of this package: install it from its repository.
"""

from __future__ import annotations

import logging
import sys
import types
from copy import deepcopy
from typing import Any

logger = logging.getLogger(__name__)

MODULE_NAME = "hloc.extractors.sekd"


def sekd_confs() -> dict[str, dict[str, Any]]:
    """Our extraction confs whose model is SEKD, in hloc's conf shape."""
    from ..extractors.confs import confs

    return {name: deepcopy(conf) for name, conf in confs.items() if conf["model"]["name"] == "sekd"}


def _make_module(base_model: type) -> types.ModuleType:
    from ..extractors.sekd import SEKD as _SEKDExtractor

    module = types.ModuleType(MODULE_NAME, "SEKD extractor for hloc, provided by sekd_plugin.integrations.hloc.register().")

    class SEKD(base_model):
        """hloc wrapper of sekd_plugin's SEKD extractor."""

        default_conf = deepcopy(_SEKDExtractor.default_conf)
        required_inputs = ["image"]
        detection_noise = _SEKDExtractor.detection_noise

        def _init(self, conf):
            self.extractor = _SEKDExtractor(conf)  # drops "name", rejects unknown keys

        def _forward(self, data):
            return self.extractor({"image": data["image"]})

    SEKD.__module__ = MODULE_NAME
    SEKD.__qualname__ = "SEKD"
    module.SEKD = SEKD
    return module


def is_registered() -> bool:
    """Whether :func:`register` has been applied to the importable hloc."""
    return MODULE_NAME in sys.modules and "hloc.extract_features" in sys.modules and \
        "sekd" in getattr(sys.modules["hloc.extract_features"], "confs", {})


def register(overwrite_confs: bool = True) -> bool:
    """Register SEKD with hloc; returns False (and logs why) when hloc cannot be imported.

    ``overwrite_confs``: replace hloc confs of the same names (else keep existing entries).
    Calling it again is harmless.
    """
    try:
        import hloc.extract_features
        import hloc.extractors
        from hloc.utils.base_model import BaseModel
    except ImportError as error:
        logger.warning("hloc is not importable (%s); SEKD not registered", error)
        return False
    module = sys.modules.get(MODULE_NAME)
    if module is None or not any(isinstance(v, type) and issubclass(v, BaseModel) for v in vars(module).values()):
        module = _make_module(BaseModel)
        sys.modules[MODULE_NAME] = module
    hloc.extractors.sekd = module
    for name, conf in sekd_confs().items():
        if overwrite_confs or name not in hloc.extract_features.confs:
            hloc.extract_features.confs[name] = conf
    return True
