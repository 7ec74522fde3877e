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
Every group is written in its own open -> write -> flush -> close cycle, and the attribute
``complete = 1`` is set on the group as the **last** write. Readers (``list_names``,
``read_features``, ``get_matches``...) treat a group without it as missing, and writers
delete such a group before writing it again. A Python-level interruption (an exception,
Ctrl-C, SIGTERM turned into an exception) therefore leaves every earlier group intact and
the current one marked incomplete. HDF5 has no journal: a hard kill (SIGKILL, the OOM killer,
power loss) while HDF5 writes metadata can still make the whole file unreadable. Against that,
a writing process keeps a copy of the file as it was before it wrote (``<file>.backup-<pid>``,
refreshed every minute or so, deleted when the job ends), and the next process to open a
damaged file restores the copy a killed writer left (:mod:`~sekd_plugin.io.h5_backup`): a
hard kill costs at most the entries written since that copy, computed again on resume.

A full disk is the other way to damage an HDF5 file (a metadata write that fails half way),
so writers never let HDF5 meet one: the file is opened for writing, and every group
written, only while the entry's size plus a safety margin is free
(:func:`sekd_plugin.common.files.ensure_free_space`); otherwise, or when a write fails with
ENOSPC all the same, nothing more is written to the file and a
:class:`~sekd_plugin.common.errors.DiskFullError` names it.

Files written by this module carry a root attribute ``sekd_plugin_format`` ("features" or
"matches"). Files written by hloc itself have no such attribute; they are read with hloc's
rule (a group holding datasets is an entry) and, when appended to, adopted: their entries
are marked complete and the root attribute is added. A file that is not HDF5, or an HDF5
file of another kind, raises :class:`H5FileError` naming the file.
"""

from .features import get_keypoints, list_names, read_features, write_features
from .h5_backup import BACKUP_ENV
from .h5_backup import release as release_backup
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
from .matches import get_matches, has_matches, names_to_pair, names_to_pair_old, write_matches
from .provenance import CONF_ATTR, conf_differences, features_fingerprint, file_sha256, read_conf, record_conf

__all__ = [
    "BACKUP_ENV", "COMPLETE_ATTR", "CONF_ATTR", "DEFAULT_LOCK_TIMEOUT", "FORMAT_ATTR", "LIBVER", "LOCK_TIMEOUT_ENV", "H5FileError",
    "check_name", "conf_differences", "entry_name", "features_fingerprint", "file_sha256", "get_keypoints",
    "get_matches", "has_matches", "list_names", "merge_files", "names_to_pair", "names_to_pair_old", "open_h5",
    "read_conf", "read_features", "record_conf", "release_backup", "write_features", "write_matches",
]
