#!/usr/bin/env bash
# Regenerate onnx_subset_pb2.py from onnx_subset.proto next to this script, with protoc 25.1
# (grpcio-tools 1.62.x), whose generated code imports on protobuf runtimes 4.25 to 7.x:
#   python -m venv /tmp/protoc-venv && /tmp/protoc-venv/bin/pip install 'grpcio-tools==1.62.3'
#   PYTHON=/tmp/protoc-venv/bin/python plugins/modelmorph_onnx/protos/regenerate.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
plugins="$(cd "$here/../.." && pwd)"      # .../plugins
PYTHON="${PYTHON:-python}"
"$PYTHON" -m grpc_tools.protoc --version
cd "$plugins"
"$PYTHON" -m grpc_tools.protoc -I . --python_out=. modelmorph_onnx/protos/onnx_subset.proto
echo "regenerated into $here"
