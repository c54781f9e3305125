"""The doit command line, read once and the way doit reads it:

    doit [COMMAND] [OPTIONS] [TASK ...] [name=value ...]

`name=value` words (not starting with "-") are variables wherever they stand; the first other
word is the command when it names one (run when not); the command's own options are parsed
with doit's option table, so `doit -n 2 train` names the task `train`, not `2`.

The creators ask this module which tasks a command names (`train:vgg_16` selects the model
vgg_16) and whether it runs a stage at all; the lock asks whether the command only reads.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

# our command plugins (pyproject.toml [tool.doit.plugins.command]); doit's own come from doit
PLUGIN_COMMANDS = ("why", "graph", "vars")


@dataclass(frozen=True)
class CommandLine:
    command: str                       # run, list, info, why, ...
    tasks: tuple[str, ...]             # the task names given (train, train:vgg_16)
    variables: dict = field(default_factory=dict)   # name -> raw text
    default_tasks: tuple[str, ...] | None = None    # the main job, when the dodo file said

    def named(self, stage: str) -> list[str]:
        """The subtask names given for a stage: `doit eval:inception_v3` -> ['inception_v3'];
        a bare `eval` gives ''."""
        out = []
        for task in self.tasks:
            name, colon, sub = task.partition(":")
            if name == stage:
                out.append(sub if colon else "")
        return out

    def runs(self, stage: str) -> bool:
        """Does this command run `stage` itself: named (or a subtask of it), or part of the main
        job when no task is named?  (Unknown main job: assume it runs every stage.)"""
        if self.command not in ("run", "strace"):
            return False
        if self.tasks:
            return bool(self.named(stage))
        return self.default_tasks is None or stage in self.default_tasks


def _is_variable(word: str) -> bool:
    return bool(word) and word[0] != "-" and "=" in word


def _commands() -> dict:
    from doit.doit_cmd import DoitMain

    return {cls.get_name(): cls for cls in DoitMain.DOIT_CMDS}


def _positional(command: str, words: list[str]) -> list[str]:
    """Words that are not options or option values, by the command's own option table."""
    from doit.cmd_base import DoitCmdBase, DodoTaskLoader
    from doit.cmdparse import CmdOption, CmdParse, CmdParseError

    cls = _commands().get(command)
    if cls is None:        # a plugin command: its options (--format) take a value
        options = [{"name": "format", "long": "format", "type": str, "default": ""}]
        options = list(DoitCmdBase.base_options + DodoTaskLoader.cmd_options) + options
    elif issubclass(cls, DoitCmdBase):
        options = list(DoitCmdBase.base_options + DodoTaskLoader.cmd_options + cls.cmd_options)
    else:
        options = list(cls.cmd_options)
    try:
        _, positional = CmdParse([CmdOption(o) for o in options]).parse(words)
    except CmdParseError:  # doit itself reports the bad option; guess the task names meanwhile
        positional = [w for w in words if not w.startswith("-")]
    return list(positional)


def parse(argv: list[str], default_tasks=None) -> CommandLine:
    """argv without the program name (sys.argv[1:])."""
    variables = dict(w.split("=", 1) for w in argv if _is_variable(w))
    words = [w for w in argv if not _is_variable(w)]
    command = "run"
    if words and (words[0] in _commands() or words[0] in PLUGIN_COMMANDS):
        command, words = words[0], words[1:]
    tasks = tuple(_positional(command, words))
    return CommandLine(command, tasks, variables,
                       tuple(default_tasks) if default_tasks is not None else None)


_current: CommandLine | None = None


def remember(argv: list[str], default_tasks=None) -> CommandLine:
    """Parse this process's command line once (dodo.py, through tasks.lock.prepare)."""
    global _current
    _current = parse(argv, default_tasks)
    return _current


def current() -> CommandLine:
    """This process's command line: the one remembered, else sys.argv read now."""
    return _current if _current is not None else parse(sys.argv[1:])
