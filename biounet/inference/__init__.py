"""Prediction (paper Sec. 2, Fig. 2): overlap-tile inference from arrays or files.

``tiling`` (the tile grid and mirrored borders), ``predictor`` (windows to
probabilities, ``predict``), ``tta`` (test-time averaging), ``instances``
(probabilities to instance labels, block by block), ``outputs`` (output kinds
and in-memory ``segment``), ``files`` (file to file, streamed) and ``dask``
(the same on a Dask cluster).
"""
