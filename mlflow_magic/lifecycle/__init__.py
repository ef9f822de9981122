"""A folder's server from start to stop: start, reuse, restart, stop, status, the background
start (``pending``), what a log says (``diagnosis``). It runs in the kernel, a terminal and the
Jupyter server (the launcher tile starts servers there); it never imports IPython and returns
typed results (``mlflow_magic.results``), never text.

Layer: above ``remote``; ``api`` and the front ends build on it.
"""
