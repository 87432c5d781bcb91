"""The pytest face of xcomsim: options, fixtures, markers and the report. No logic of its own."""
