"""Code that runs in the notebook kernel and draws there: magics, progress, panel, cards."""
