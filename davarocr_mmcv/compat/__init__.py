"""Living beside other packages.

``registry`` (imported by ``davarocr_mmcv`` itself) decides which class a
name shared with mmcv or DavarOCR builds. ``davarocr`` is opt-in: nothing in
it runs unless a config or a script imports ``davarocr_mmcv.compat.davarocr``.
"""
