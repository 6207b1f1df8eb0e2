"""The ``labkit`` command (main), its cluster commands (cluster) and the options they share."""
