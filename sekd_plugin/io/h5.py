"""hloc's feature and match .h5 files, written so that an interruption loses at most
the image (or pair) being written. This module is their public face; each job is one
module (:mod:`~sekd_plugin.io.h5_open` opening, lock waits and kind checks,
:mod:`~sekd_plugin.io.provenance`, :mod:`~sekd_plugin.io.h5_merge`,
:mod:`~sekd_plugin.io.features`, :mod:`~sekd_plugin.io.matches`); import from here.

Layout (identical to what hloc's ``extract_features.py`` and ``match_features.py`` write and
``hloc.utils.io`` reads back):

* features: one group per image name (``/`` in a name makes nested groups) holding
  ``keypoints`` N x 2, ``scores`` N, ``descriptors`` D x N, ``image_size`` (W, H) and any
  other array the extractor returned; ``keypoints`` may carry an ``uncertainty`` attribute.
* matches: one group per pair, ``names_to_pair(name0, name1)`` (a nested group
  ``name0_flat/name1_flat``), holding ``matches0`` (N0, index into image 1 or -1) and
  ``matching_scores0`` (N0, float16).

Completeness guarantee
----------------------
No process writes a user's file in place (:mod:`~sekd_plugin.io.h5_parts`): a writer puts its
entries into finished parts of its own (``<file>.parts/*.h5``, each built under a temporary
name and renamed, every group marked ``complete = 1``), and they reach ``<file>`` only by an
atomic publish (a merged copy moved into place under the file's lock, ``.<file>.lock``). An
interruption of any kind, SIGKILL and the OOM killer included, leaves the file as it was before or
after a publish, and finished parts that the next run publishes before it starts; a hard kill
costs at most the last half second of work. Readers treat a group without ``complete = 1`` as
missing.

On a full disk a part or a publish is refused before it starts when its size plus a safety
margin is not free (:func:`sekd_plugin.common.files.ensure_free_space`); a write that fails
with ENOSPC all the same removes its temporary file; either way the file is untouched and a
:class:`~sekd_plugin.common.errors.DiskFullError` names it.

Files written by this module carry a root attribute ``sekd_plugin_format`` ("features" or
"matches"). Files written by hloc itself have no such attribute; they are read with hloc's
rule (a group holding datasets is an entry) and, when appended to, adopted: their entries
are marked complete and the root attribute is added. A file that is not HDF5, or an HDF5
file of another kind, raises :class:`H5FileError` naming the file.
"""

from .features import features_entry, get_keypoints, list_names, read_features, write_features
from .h5_merge import merge_files
from .h5_open import (
    COMPLETE_ATTR,
    DEFAULT_LOCK_TIMEOUT,
    FORMAT_ATTR,
    LIBVER,
    LOCK_TIMEOUT_ENV,
    H5FileError,
    check_name,
    entry_name,
    open_h5,
)
from .h5_parts import PartWriter, finished_parts, publish, record_conf
from .matches import get_matches, has_matches, matches_entry, names_to_pair, names_to_pair_old, write_matches
from .provenance import CONF_ATTR, conf_differences, features_fingerprint, file_sha256, read_conf

__all__ = [
    "COMPLETE_ATTR", "CONF_ATTR", "DEFAULT_LOCK_TIMEOUT", "FORMAT_ATTR", "LIBVER", "LOCK_TIMEOUT_ENV", "H5FileError",
    "PartWriter", "check_name", "conf_differences", "entry_name", "features_entry", "features_fingerprint",
    "file_sha256", "finished_parts", "get_keypoints", "get_matches", "has_matches", "list_names", "matches_entry",
    "merge_files", "names_to_pair", "names_to_pair_old", "open_h5", "publish", "read_conf", "read_features",
    "record_conf", "write_features", "write_matches",
]
