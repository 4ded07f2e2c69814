"""Figures: prediction overlays and views of what training sees.

``overlay`` (``predict --preview``), ``figures`` (the matplotlib figures) and
``training_inputs`` (``biounet weight-map`` and ``biounet augment``: weight maps and
augmented tiles from files, to check data before a long run).
"""
