"""remo's command line. The entry point is :func:`remo.cli.main.main`."""
