"""Training (paper Sec. 3): data, the Eq. 2 weight map, augmentation, loss, the loop.

``config`` (the frozen run config), ``data`` (image/label pairs), ``borders``
(the border term of Eq. 2), ``weight_map`` (Eq. 2 as a whole), ``elastic`` and
``augment`` (Sec. 3.1), ``loss`` (Eq. 1 weighted), ``loop`` (SGD steps,
validation, checkpoints), ``run`` (start, resume and interruption of a run
folder), ``ddp`` (several processes) and ``runlog`` (metrics log and plot).
"""
