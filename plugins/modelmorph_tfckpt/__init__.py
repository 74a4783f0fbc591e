"""modelmorph plugin for TensorFlow checkpoints (TensorBundle), without TensorFlow.

The low-level, TensorFlow-free reader/writer lives in :mod:`modelmorph_tfckpt.bundle`.
"""
