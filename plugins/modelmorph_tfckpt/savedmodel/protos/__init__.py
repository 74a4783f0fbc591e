"""Generated protobuf modules (see regenerate.sh); do not edit the *_pb2.py files."""
