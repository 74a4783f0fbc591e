"""An example third-party modelmorph plugin: weights as a NumPy ``.npz`` archive.

Each array is stored under its full weight path (``dense/kernel``), which is how
``modelmorph.Model.iter_weights`` names weights. Reading gives a weights-only model;
``--arch`` joins it with an architecture by those same paths.

Copy this folder to start your own plugin: the entry point in ``pyproject.toml`` and
the ``modelmorph_formats`` hook below are all modelmorph needs.
"""

from __future__ import annotations

import modelmorph

ZIP_MAGIC = b"PK\x03\x04"


def sniff(probe: "modelmorph.Probe") -> int:
    # .npz is a zip, like .keras: only claim it when the name says npz.
    if probe.header.startswith(ZIP_MAGIC) and probe.path.name.endswith(".npz"):
        return modelmorph.CERTAIN
    return modelmorph.NO


@modelmorph.hookimpl
def modelmorph_formats():
    return [
        modelmorph.Format(
            name="npz",
            description="model weights as a NumPy .npz archive, one array per weight path (example plugin)",
            extensions=(".npz",),
            reads=frozenset({"weights"}),
            writes=frozenset({"weights"}),
            reader="modelmorph_npz.io:read",
            writer="modelmorph_npz.io:write",
            sniff=sniff,
            # -O options are typed: modelmorph parses "-O compressed=yes" and the writer gets True.
            options=(modelmorph.Option("compressed", "bool", False, "write",
                                       help="deflate the arrays, as numpy.savez_compressed does"),),
        )
    ]
