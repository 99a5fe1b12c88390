"""The command line, the run folder and the HTML report."""
