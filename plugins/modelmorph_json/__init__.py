"""JSON architecture files (``model.to_json()``): Keras 2 and Keras 3 dialects.

This module is what the entry point loads; it stays light. The reader and writer live
in :mod:`modelmorph_json.io` and are imported only when used.
"""

from __future__ import annotations

import modelmorph
from modelmorph import CERTAIN, NO, PLAUSIBLE


def sniff(probe: "modelmorph.Probe") -> int:
    head = probe.header.lstrip()
    if probe.is_dir or not head.startswith(b"{"):
        return NO
    return CERTAIN if b'"class_name"' in head and b'"weight_map"' not in head else PLAUSIBLE


@modelmorph.hookimpl
def modelmorph_formats():
    return [
        modelmorph.Format(
            name="json",
            description="Keras model architecture as JSON (model.to_json()), Keras 2 or Keras 3 dialect",
            extensions=(".json",),
            reads=frozenset({"architecture"}),
            writes=frozenset({"architecture"}),
            reader="modelmorph_json.io:read",
            writer="modelmorph_json.io:write",
            sniff=sniff,
            options=(
                modelmorph.Option("dialect", "choice", "keras3", "write", choices=("keras3", "keras2"),
                                  help="the config dialect to write (keras2 is what tf_keras reads)"),
                modelmorph.Option("indent", "int", 2, "write", help="spaces of indentation in the output (0: one line)"),
            ),
        )
    ]
