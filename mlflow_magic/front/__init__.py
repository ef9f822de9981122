"""What the user sees, decided in one place: which front end this process serves
(``context``), results rendered as text and HTML (``render``), where the browser finds the UI
(``ui``), one parsed command run against the API (``commands``), progress in a terminal
(``terminal``). It runs in the kernel and a terminal.

Layer: above ``api``; the shells (``notebook/``, ``cli``) call it.
"""
