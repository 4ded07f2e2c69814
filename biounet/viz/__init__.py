"""Figures: prediction overlays, the weight-map and augmentation previews.

``overlay`` (``predict --preview``), ``figures`` (matplotlib figures) and
``previews`` (``biounet weight-map`` and ``biounet augment`` from files).
"""
