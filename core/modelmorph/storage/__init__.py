"""Storage that several formats share: the one HDF5 interface (:mod:`.h5file`) over its two
backends (the pure-Python plain subset, :mod:`.plainh5`, and h5py with the checks of
:mod:`.hdf5`), file-to-file copies with CRCs, bounded JSON and safe paths. Part of the plugin
API (``spec/hooks.md``); ``spec/storage.md`` describes the HDF5 interface."""
