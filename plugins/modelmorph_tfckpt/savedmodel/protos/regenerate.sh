#!/usr/bin/env bash
# Regenerate saved_metadata_pb2.py from saved_metadata.proto next to this script.
# Pinned to protoc 25.1 (grpcio-tools 1.62.x) for the reasons given in
# ../../bundle/protos/regenerate.sh (gencode that imports on protobuf runtimes 4.25 to 7.x):
#   python -m venv /tmp/protoc-venv && /tmp/protoc-venv/bin/pip install 'grpcio-tools==1.62.3'
#   PYTHON=/tmp/protoc-venv/bin/python plugins/modelmorph_tfckpt/savedmodel/protos/regenerate.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
plugins="$(cd "$here/../../.." && pwd)"      # .../plugins
PYTHON="${PYTHON:-python}"
"$PYTHON" -m grpc_tools.protoc --version
cd "$plugins"
"$PYTHON" -m grpc_tools.protoc -I . --python_out=. modelmorph_tfckpt/savedmodel/protos/saved_metadata.proto
echo "regenerated into $here"
