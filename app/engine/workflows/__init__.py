"""Work that composes several analyses (or an analysis with the runtime's own passes), for
the window's jobs and the catalogue: the activation grid and direction icons (the renderer
driven by a frame's activations), patch attributions (a scan's entries attributed), the
mosaic of a layer's cached preferred images.

A layer of its own between `live` and `analyses`: the analyses stay independent of each
other, and the session above keeps no torch of its own.
"""
