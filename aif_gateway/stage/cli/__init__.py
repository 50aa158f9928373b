"""``aif-gateway stage ...``: the command line (commands.py) and its site-cache flags and verbs
(cache_commands.py)."""

from .commands import add_stage_parser, run

__all__ = ["add_stage_parser", "run"]
