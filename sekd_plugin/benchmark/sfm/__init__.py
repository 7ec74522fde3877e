"""SfM benchmark: the scene config (:mod:`.config`), the two SfM pipelines behind one interface
(:mod:`.pipelines`; COLMAP's own in :mod:`.colmap`), one scene's run (:mod:`.scene`, the
``scene`` command), the scenes x methods benchmark (:mod:`.benchmark`) and the GT pose
metrics (:mod:`.metrics`)."""
