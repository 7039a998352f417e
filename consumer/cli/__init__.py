"""The ``paylink`` command line: parser, one module per command group, shared output helpers."""
