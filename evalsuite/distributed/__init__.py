"""Engines that score one file on many workers, for :meth:`evalsuite.Scorer.score_file`.

>>> from evalsuite import Scorer                                    # doctest: +SKIP
>>> from evalsuite.distributed import RayEngine                     # doctest: +SKIP
>>> with Scorer(["bertscore"]) as scorer:                           # doctest: +SKIP
...     run = scorer.score_file("answers.jsonl", "scores.parquet",
...                             engine=RayEngine(address="auto", workers=4, gpus_per_worker=1))

Importing this package does not import Ray: that happens when an engine runs (the ``ray`` extra).
"""

from evalsuite.distributed.ray_engine import RayEngine

__all__ = ["RayEngine"]
