#!/usr/bin/env bash
# Regenerate the committed *_pb2.py modules from the .proto files next to this script.
#
# The generated code is pinned to protoc 25.1 (grpcio-tools 1.62.x) on purpose: gencode
# from a protoc newer than the oldest protobuf runtime we support refuses to import on
# that runtime (protoc >= 26 embeds a "runtime must be >= gencode" check).  Gencode 25.1
# was checked to import and round-trip with protobuf runtimes 4.25, 5.x, 6.x and 7.x,
# so the minimum runtime is protobuf 4.25 (the project's pyproject pins protobuf>=4.25).
#
# grpcio-tools 1.62 wants protobuf<5, so use a throw-away virtualenv, never the project's:
#   python -m venv /tmp/protoc-venv && /tmp/protoc-venv/bin/pip install 'grpcio-tools==1.62.3'
#   PYTHON=/tmp/protoc-venv/bin/python plugins/modelmorph_tfckpt/bundle/protos/regenerate.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
plugins="$(cd "$here/../../.." && pwd)"      # .../plugins
PYTHON="${PYTHON:-python}"
"$PYTHON" -m grpc_tools.protoc --version
cd "$plugins"
"$PYTHON" -m grpc_tools.protoc -I . --python_out=. \
  modelmorph_tfckpt/bundle/protos/tensor_bundle.proto \
  modelmorph_tfckpt/bundle/protos/trackable_object_graph.proto \
  modelmorph_tfckpt/bundle/protos/checkpoint_state.proto
echo "regenerated into $here"
