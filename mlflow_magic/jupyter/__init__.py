"""Code that runs in the Jupyter server's process (and the launcher tile's forwarder)."""
