"""Lightning callbacks regnet adds to every run (``conf/callbacks/``)."""
