"""SfM benchmark: the config-driven scene runner (:mod:`.runner`), COLMAP's own pipeline as the
reference (:mod:`.colmap`), the methods and their matchers (:mod:`..methods`), the scenes x
methods table (:mod:`.suite`) and the GT pose metrics (:mod:`.metrics`)."""
