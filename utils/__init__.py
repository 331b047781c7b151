"""Helpers the scripts share. Each subpackage holds one concern; the root keeps what every group
uses: errors, tasks, the command-line wrapper, progress, checkpoint I/O and markdown table cells."""
