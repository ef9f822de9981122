"""Who may reach a folder's server: the folder's key and one-time logins (``keys``), who holds
a local port (``ownership``), and the one lookup of whose server is on a port and what a
request to it carries (``ports``). It runs in every process that talks to a server of ours: the
kernel, a terminal, the Jupyter server, and every MLflow process through ``hook``. (The
server's side, the gate, is ``server/gate.py``.)

Layer: above ``state``; ``remote``, ``lifecycle`` and everything above build on it.
"""
