"""Scoring (paper Sec. 4): the ISBI 2012 metrics and the Cell Tracking Challenge SEG.

``table`` (the one list of metrics: key, direction, help), ``proposal`` (how
predictions and ground truth are read by the metrics), ``isbi`` (pixel, Rand,
warping, V_rand, V_info, SEG over threshold sweeps), ``contingency``,
``warping_error``, ``simple_points``, ``thinning``, ``matching`` (SEG and
average precision) and ``files`` (``biounet evaluate`` on files).
"""
