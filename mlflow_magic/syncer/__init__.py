"""The sync process of ``start --sync-to URL`` (run by the folder's keeper, next to its server).

It copies what the folder's write journal names to the team server, with the push engine's
plan and copy (:mod:`mlflow_magic.remote.transfer`), run by run:

- :mod:`mlflow_magic.syncer.runs` keeps what the team server's copy of each run holds;
- :mod:`mlflow_magic.syncer.cycle` turns journal lines into copies;
- :mod:`mlflow_magic.syncer.main` is the loop (a backoff on errors, the state ``status``
  shows).
"""
