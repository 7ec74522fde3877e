"""Infrastructure every command shares, below the feature code: external assets (``assets``:
third_party manifests -> locate / fetch / verify; ``archives``: safe unpacking; ``weights``:
the ``python -m sekd_plugin.weights`` command), and multi-process runs (``distributed``: the one
reading of torchrun's environment; ``sharded``: one .h5 output written by every rank)."""
