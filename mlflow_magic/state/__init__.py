"""What mlflow_magic keeps and finds: a data folder's records on disk (``records``), the
server's processes on this machine (``processes``), the server's log (``logfile``), private
files read only if nobody else could have written them (``owned``). It runs in the kernel, a
terminal and the Jupyter server; the MLflow server process uses ``logfile``, ``owned``,
``passes`` and ``journal``, the keeper ``owned``, so this file imports nothing.

Layer: above ``settings``; ``security`` and everything above build on it.
"""
