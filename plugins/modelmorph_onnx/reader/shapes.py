"""Every tensor's shape the importer knows: ints, ``"N"`` for the batch (dim 0) when it is
symbolic, ``None`` for other unknown dims.

What the file declares (inputs, outputs, value_info, initializers) is there from the start, and
:meth:`Graph.alias <.graph.Graph.alias>` adds what each mapped node computes. ONNX shape
inference (the ``onnx`` package: half a second to import) runs only when a lookup finds no
shape, or one with an unknown dim beyond the batch: a CNN with static inputs never needs it.
After it has run, a lookup answers as if it had run first: inference's shape where it is
complete, else what was declared or computed.
"""

from __future__ import annotations

from modelmorph import ReadError

from .load import MAX_DIM, Onnx


class Shapes(dict):
    """Shapes by ONNX tensor name (a dict; ``get``, ``in`` and ``[]`` may run inference once,
    :meth:`known` never does)."""

    def __init__(self, src: Onnx):
        super().__init__(declared(src, src.model))
        self.src = src
        self.inferred = False
        self.computed: set[str] = set()  # names the walk set (Graph.alias)

    def known(self, name: str) -> tuple | None:
        """The shape held now, without running inference."""
        return dict.get(self, name)

    def get(self, name: str, default=None):
        shape = dict.get(self, name)
        if not self.inferred and (shape is None or None in shape[1:]):
            self.infer()
            shape = dict.get(self, name)
        return default if shape is None else shape

    def __contains__(self, name) -> bool:
        return self.get(name) is not None

    def __getitem__(self, name: str) -> tuple:
        shape = self.get(name)
        if shape is None:
            raise KeyError(name)
        return shape

    def __setitem__(self, name: str, shape: tuple) -> None:
        self.computed.add(name)
        dict.__setitem__(self, name, shape)

    def infer(self) -> None:
        """Merge in ONNX shape inference's shapes (once; a failure leaves what is known)."""
        if self.inferred:
            return
        self.inferred = True
        import onnx

        try:
            model = onnx.ModelProto.FromString(self.src.data)
            for vi in model.graph.input:  # the dims -O input_shape fixed, fixed here too
                for i, d in enumerate(vi.type.tensor_type.shape.dim):
                    if (vi.name, i) in self.src.fixed_dims:
                        d.dim_value = self.src.fixed_dims[vi.name, i]
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
        except Exception:  # inference is a help: the file's own value_info is used when it fails
            return
        for name, shape in declared(self.src, inferred).items():
            held = dict.get(self, name)
            if name not in self.computed:
                dict.__setitem__(self, name, shape)  # inference keeps and refines what the file declares
            elif held is None or (len(shape) == len(held) and None not in shape[1:]):
                dict.__setitem__(self, name, shape)  # as Graph.alias does with a shape known before


def declared(src: Onnx, model) -> dict[str, tuple]:
    """The shapes ``model`` (the file's, or inference's copy of it) declares. Giant dims are refused."""
    shapes: dict[str, tuple] = {}
    graph = model.graph
    for vi in (*graph.input, *graph.value_info, *graph.output):
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            continue
        dims: list = []
        for d in t.shape.dim:
            if d.HasField("dim_value"):
                if not 0 <= d.dim_value <= MAX_DIM:
                    raise ReadError(src.path, f"tensor {vi.name!r} declares a dimension of {d.dim_value} (refused)")
                dims.append(int(d.dim_value))
            else:  # dim 0 is the batch (the importer keeps it apart everywhere): one symbol for it
                dims.append("N" if not dims else None)
        shapes[vi.name] = tuple(dims)
    for init in src.graph.initializer:
        shapes.setdefault(init.name, tuple(int(d) for d in init.dims))
    return shapes
