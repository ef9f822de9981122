"""Which front end this process serves, decided once, as TensorBoard's ``notebook.py`` does:
every output asks here instead of testing ``sys.modules`` on its own.

- ``notebook``: a Jupyter kernel (JupyterLab, Notebook 7, a hub, VS Code, Colab: each a
  kernel whose outputs are rich); where the browser finds the UI is
  :func:`mlflow_magic.front.ui.ui_location`'s to say.
- ``terminal``: plain IPython, a script, the console script: text only.

Where a notebook's browser finds the UI depends on the front end that draws its outputs
(:func:`front_end`): a Jupyter server with our route (found by asking it), VS Code or
Colab (whose output frames are pages of another site, told by the kernel's environment),
or none of them.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Mapping
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


#: The front ends whose output frames are pages of another site than the server's.
VSCODE, COLAB = "vscode", "colab"


def front_end(environ: Mapping[str, str] | None = None,
              kernel: bool | None = None) -> str | None:
    """The front end that frames this kernel's outputs from another site, if any.

    Only a kernel has one (``kernel``: this process is one, by default as :func:`current`
    says): IPython or ``mlflow-magic`` in VS Code's terminal have VS Code's variables too,
    and their links must outlive them. Colab: its kernel has imported ``google.colab``.
    VS Code: it starts its Python kernels with ``PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING`` set
    (vscode-jupyter's kernel environment; ``VSCODE_PID`` comes with it), and a kernel of a
    Jupyter server has ``JPY_SESSION_NAME``, which VS Code's own kernels do not. Plain
    IPython, a terminal or a Jupyter server: None (a Jupyter server's route is found by
    asking it, not here).
    """
    environ = os.environ if environ is None else environ
    if not (current().notebook if kernel is None else kernel):
        return None
    if "google.colab" in sys.modules:
        return COLAB
    vscode = "PYDEVD_IPYTHON_COMPATIBLE_DEBUGGING" in environ or "VSCODE_PID" in environ
    if vscode and "JPY_SESSION_NAME" not in environ:
        return VSCODE
    return None
