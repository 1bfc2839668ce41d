"""The pipeline's stages, each a module of pure functions (the commit's transaction apart); their
order is written once, in :mod:`tracker.pipeline`.

* :mod:`tracker.stages.front`: 1-2, decode and admit;
* :mod:`tracker.stages.geofence`: 3, the one function that geofences a batch (also used by
  ``tracker replay`` and ``bench/quality``);
* :mod:`tracker.stages.monitor`: 4, the monitor's rules per fix;
* :mod:`tracker.stages.records`: the rows of 5, and what a batch says about itself;
* :mod:`tracker.stages.commit`: 5, the one transaction.
"""
