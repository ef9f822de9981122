"""Talking to a tracking server over HTTP: small REST reads and probes (``rest``), checking a
server elsewhere before it is used (``check``), and copying a folder to another server
(``transfer``). It runs in the kernel and a terminal (the Jupyter server probes with ``rest``).

Layer: above ``security`` (a local address gets the folder's key); ``lifecycle`` builds on it.
"""
