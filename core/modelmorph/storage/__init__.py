"""Storage that several formats share: safe HDF5 access (h5py and the pure-Python plain
subset), file-to-file copies with CRCs, bounded JSON and safe paths. Part of the plugin API
(``spec/hooks.md``)."""
