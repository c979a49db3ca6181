"""The lens explorer: ``logitlens serve``, a local web page over one loaded model.

- :mod:`.app`: what the page can ask (:class:`AnalysisRequest`) and the :class:`Explorer`
  that answers it with :func:`logitlens.analyze` on the warm model, one request at a
  time, in arrival order;
- :mod:`.server`: the HTTP server (the standard library's ``ThreadingHTTPServer``), its
  token and origin checks, and the page (package data beside the report's assets).
"""

from __future__ import annotations

from .app import AnalysisRequest, Explorer, available_lenses

__all__ = ["AnalysisRequest", "Explorer", "available_lenses"]
