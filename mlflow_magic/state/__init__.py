"""What mlflow_magic keeps and finds: a data folder's records on disk (``records``), the
server's processes on this machine (``processes``), the server's log (``logfile``). It runs in
the kernel, a terminal and the Jupyter server; the MLflow server process uses ``logfile``
only, so this file imports nothing.

Layer: above ``settings``; ``security`` and everything above build on it.
"""
