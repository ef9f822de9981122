"""Which front end this process serves, decided once, as TensorBoard's ``notebook.py`` does:
every output asks here instead of testing ``sys.modules`` on its own.

- ``notebook``: a Jupyter kernel (JupyterLab, Notebook 7, a hub, VS Code, Colab: each a
  kernel whose outputs are rich); where the browser finds the UI is
  :func:`mlflow_magic.front.ui.ui_location`'s to say.
- ``terminal``: plain IPython, a script, the console script: text only.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Context:
    """What this process can show."""

    #: ``notebook`` or ``terminal``
    kind: str
    #: ipywidgets are installed (the panel and the widget bar can show); looked up, not
    #: imported: ipywidgets costs ~100 ms, paid only when a widget is shown
    widgets: bool

    @property
    def notebook(self) -> bool:
        """Outputs are rich (HTML, replaced in place) and a front end redraws them live."""
        return self.kind == "notebook"


@functools.cache
def current() -> Context:
    """This process's context: a kernel is a notebook's, anything else a terminal's."""
    if "ipykernel" not in sys.modules:
        return Context("terminal", widgets=False)
    return Context("notebook", widgets=importlib.util.find_spec("ipywidgets") is not None)
