"""Node facts: pure parsers of what the tools print about a machine
(kubectl, talosctl, nvidia-smi, ffmpeg, qm, lspci, /proc files), each
returning small frozen dataclasses, and the rules that judge them (whether a
node advertises its GPUs). None of them does I/O; the commands run through
the tool runners (components/kubectl.py, components/talos/talosctl.py,
components/ssh/)."""
