"""The keeper: it runs in a small process of its own, one per running folder, which holds the
folder's listening socket from the first start until ``stop`` and runs the MLflow server on
it (systemd's socket activation and gunicorn's arbiter are the models).

It accepts and parses nothing (the gate stays in the server's workers); it only watches:
its server's exit (a crash: started again, with a backoff), the activity file (idle: the
server is stopped, its memory returned, the port still held), and the listening socket
while asleep (a connection waiting in the backlog: the server is started again and takes
it). It imports the standard library and :mod:`mlflow_magic.contract` only: it lives as
long as the folder's server is wanted, in 10 to 15 MB.
"""
