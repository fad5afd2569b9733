"""Simulated bench: sensor lines with scripted faults and step markers on a pseudo-terminal, or a
CSV replayed at real speed. Sans-I/O cores (`model`, `player`, `replay`, `feed`) produce timed
outputs; `pty_port` and `runner` own the pty, the symlink, the pacing and the oracle file."""
