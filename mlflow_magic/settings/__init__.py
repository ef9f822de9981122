"""What the user asked for, checked: options, flags, the resolved config, masking, the server's
command line. It runs wherever a command is given (the kernel, a terminal, the Jupyter server);
pure logic over the environment, it starts and writes nothing.

Layer: above the shared modules (contract, errors, paths); everything else builds on it.
"""
