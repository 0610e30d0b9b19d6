"""The ``infoshare`` command: the composition root above every part."""
