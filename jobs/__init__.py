"""Entry points: each module has ``main(argv=None)`` building one config and calling library code."""
