"""Pure-Python TensorFlow checkpoint (TensorBundle) library: no TensorFlow import.

Runtime dependencies: numpy, protobuf (>= 4.25; writing, and ``object_graph()``: reading parses
the index and the graph from their wire format), google-crc32c, ml_dtypes.

Reading::

    from modelmorph_tfckpt.bundle import BundleReader
    with BundleReader("ckpt_dir/") as r:          # folder, prefix, .index or data shard
        for key, entry in r.entries().items():
            array = r.read(key)                    # CRC-checked numpy array
        graph = r.object_graph()                   # TrackableObjectGraph or None

Writing::

    from modelmorph_tfckpt.bundle import BundleWriter, build_object_graph
    built = build_object_graph({"model": {"dense": {"kernel": w, "bias": b}}})
    with BundleWriter("out/ckpt-1") as w:
        for key, value in built.values():
            w.add(key, value)
        w.add_object_graph(built.graph)

Every problem with an input file raises :class:`BundleError` (one-line message).
"""

from .bundle import (
    OBJECT_GRAPH_KEY,
    SUPPORTED_DTYPES,
    BundleReader,
    BundleWriter,
    ByteCopy,
    Entry,
    data_filename,
    index_filename,
    read_checkpoint_state,
    resolve_checkpoint,
    write_checkpoint_state,
)
from .objectgraph import (
    VARIABLE_VALUE,
    BuiltGraph,
    KeyOrigin,
    SlotOrigin,
    TrackableNode,
    build_object_graph,
    checkpoint_key_origins,
    compute_checkpoint_keys,
    escape_local_name,
    node_paths,
    object_path_to_string,
    slot_variable_key,
    tree_to_nodes,
    unescape_local_name,
    variable_key,
)
from .ordered_code import decode_slice_key, encode_slice_key
from .table import BundleError, TableReader, TableWriter, snappy_decompress

__all__ = [
    "BundleError",
    "BundleReader",
    "BundleWriter",
    "ByteCopy",
    "Entry",
    "OBJECT_GRAPH_KEY",
    "SUPPORTED_DTYPES",
    "data_filename",
    "index_filename",
    "read_checkpoint_state",
    "write_checkpoint_state",
    "resolve_checkpoint",
    "VARIABLE_VALUE",
    "TrackableNode",
    "BuiltGraph",
    "KeyOrigin",
    "SlotOrigin",
    "build_object_graph",
    "tree_to_nodes",
    "checkpoint_key_origins",
    "compute_checkpoint_keys",
    "node_paths",
    "escape_local_name",
    "unescape_local_name",
    "object_path_to_string",
    "variable_key",
    "slot_variable_key",
    "encode_slice_key",
    "decode_slice_key",
    "TableReader",
    "TableWriter",
    "snappy_decompress",
]
