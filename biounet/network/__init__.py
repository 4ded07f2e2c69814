"""The network (paper Sec. 2, Fig. 1): architecture, size rules, normalisation, checkpoints.

``unet`` (the model and its frozen config), ``shapes`` (valid input sizes,
halo), ``normalize`` (input scaling stored with the model), ``checkpoint``
(the on-disk format), ``summary`` (the per-level table of ``biounet summary``)
and ``bundled`` (the model that ships with biounet).
"""
