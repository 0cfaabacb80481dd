"""One command-line module per stage (``python -m pipeline STAGE``): paths and operational flags from argparse,
every setting from the stage's :class:`pipeline.config.ConfigNode` (``--config`` / ``--settings`` / ``--set``), then
one call into the library packages (``pipeline.data``, ``nn``, ``physics``, ``reports``, ``screening``)."""
