"""Keras knowledge that several formats share: the layer catalogue (what each layer class
holds), the Keras 2 ↔ 3 config dialects, Keras 3 configs ↔ the IR, and where Keras 3 keeps
each variable. Part of the plugin API (``spec/hooks.md``)."""
