"""Legacy Keras HDF5 (``model.save("x.h5")``, ``save_weights("x.h5")``): Keras 2 and Keras 3 written.

This module is what the entry point loads; it stays light. The reader and writer live in
:mod:`modelmorph_h5.reader` and :mod:`modelmorph_h5.writer` and are imported only when used.
"""

from __future__ import annotations

import modelmorph
from modelmorph import CERTAIN, NO, PLAUSIBLE

#: Root attributes only legacy Keras files have: a full model's config, or a weights-only
#: file's layer list (split into ``layer_names0``, ``layer_names1``... when large).
_MARKS = ("model_config", "layer_names", "layer_names0")


def sniff(probe: "modelmorph.Probe") -> int:
    from modelmorph.storage import hdf5

    if probe.is_dir or not hdf5.is_hdf5_header(probe.header):
        return NO
    from modelmorph.storage import h5file  # with the plain-HDF5 reader: for HDF5 files only

    # A Keras 3 weights file (also `.weights.h5`) has `vars` groups and none of these marks.
    # Only the root group is read (numpy and h5py do not load for the files Keras writes).
    try:
        with h5file.open(probe.path, root_only=True) as f:
            return CERTAIN if any(mark in f.attrs for mark in _MARKS) else NO
    except modelmorph.ReadError:
        # An HDF5 file whose root cannot be read: perhaps ours. The reader (this one, or the
        # keras-weights one for a .weights.h5 name: the longer extension wins a tie) opens it
        # again and names the real problem, where NO would let the keras-weights reader
        # misjudge it as "not a Keras 3 weights file".
        return PLAUSIBLE


@modelmorph.hookimpl
def modelmorph_formats():
    return [
        modelmorph.Format(
            name="h5",
            description="legacy Keras HDF5 (model.save('x.h5') / save_weights('x.h5')), Keras 2 or Keras 3 written",
            extensions=(".h5", ".hdf5"),
            reads=frozenset({"architecture", "weights", "optimizer"}),
            writes=frozenset({"architecture", "weights", "optimizer"}),
            reader="modelmorph_h5.reader:read",
            writer="modelmorph_h5.writer:write",
            sniff=sniff,
            options=(
                modelmorph.Option("by_name", "bool", False, "read",
                                  help="join a weights-only file to --arch by layer name, not by position"),
                modelmorph.Option("weights_only", "bool", False, "write",
                                  help="write only the weights, as save_weights() does"),
            ),
        )
    ]
