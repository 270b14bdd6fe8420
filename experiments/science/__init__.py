"""Training-science experiments: each trains a few configs with the one engine, writes a plot
to its --workdir_root and prints a table and a closing JSON line (the README quotes both)."""
