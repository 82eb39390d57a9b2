"""Engines: what drives a ``Predictor`` (``Segmenter``) over many images and frames.

``threads.py``: the local-threads engine (``StreamRunner``: a reader, N workers, frames back in order; what
``Segmenter.stream()``, ``predict`` and ``val`` run on); ``command.py``: the command line's predict over sources
into overlays, JSON, video, JSON Lines and counts (``predict_sources``), reporting a ``PredictSummary``
(``summary.py``); ``cluster.py`` and ``actors.py``: the Ray engine (``pip install "edgeseg[ray]"``). Engines
import the core, never the API or the tools; the core never imports an engine.
"""

from .base import PER_CORE_LIMIT, Predictor

__all__ = ["PER_CORE_LIMIT", "Predictor"]
