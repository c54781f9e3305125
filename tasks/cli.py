"""doit command plugins: `doit why TASK`, `doit graph [--format mermaid|dot]`, `doit vars`.

Registered in pyproject.toml under [tool.doit.plugins.command].
"""
from __future__ import annotations

from pathlib import Path

from doit.cmd_base import DoitCmdBase
from doit.exceptions import InvalidCommand

from tasks import params
from zoobuild import keys


def _previous_marker(outdir: Path) -> dict | None:
    """The newest finished run among the sibling key directories of outdir."""
    parent = Path(outdir).parent
    markers = sorted(parent.glob(f"*/{keys.COMPLETE}"), key=lambda p: p.stat().st_mtime)
    return keys.read_marker(markers[-1].parent) if markers else None


class Why(DoitCmdBase):
    doc_purpose = "say why a task is stale: which input, parameter or code changed"
    doc_usage = "TASK [TASK ...]"
    doc_description = None
    cmd_options = ()

    def _execute(self, pos_args):
        if not pos_args:
            raise InvalidCommand("`why` needs a task name, for example `doit why train:vgg_16`")
        tasks = {t.name: t for t in self.task_list}
        status_code = 0
        for name in pos_args:
            if name not in tasks:
                raise InvalidCommand(f"unknown task {name!r}; see `doit list --all`")
            task = tasks[name]
            status = self.dep_manager.get_status(task, tasks, get_log=True)
            self.outstream.write(f"{name}: {status.status}\n")
            if status.status == "up-to-date":
                continue
            status_code = 1
            meta = task.meta or {}
            key, outdir = meta.get("key"), meta.get("outdir")
            if key is not None and outdir is not None:
                if keys.is_complete(outdir, key):
                    self.outstream.write(f"  key {key.short}: output complete in {outdir}\n")
                else:
                    for line in keys.stale_reasons(key, _previous_marker(outdir)):
                        self.outstream.write(f"  {line}\n")
                    from tasks.cache import why_line

                    cached = why_line(key.stage, key.hex)
                    if cached:
                        self.outstream.write(f"  {cached}\n")
            for kind, items in (status.reasons or {}).items():
                if not items:
                    continue
                if kind == "uptodate_false":
                    for _, (fn, *_r) in enumerate(items):
                        label = getattr(fn, "__name__", str(fn))
                        self.outstream.write(f"  uptodate check {label} says stale\n")
                elif isinstance(items, (list, tuple)):
                    for item in items:
                        self.outstream.write(f"  {kind.replace('_', ' ')}: {item}\n")
                else:
                    self.outstream.write(f"  {kind.replace('_', ' ')}\n")
        return status_code


_FORMAT = {"name": "format", "long": "format", "type": str, "default": "mermaid",
           "help": "mermaid or dot [default: %(default)s]"}


class Graph(DoitCmdBase):
    doc_purpose = "print the task graph as Mermaid or DOT"
    doc_usage = "[--format mermaid|dot] [TASK ...]"
    doc_description = None
    cmd_options = (_FORMAT,)

    def _execute(self, pos_args, format="mermaid"):
        if format not in ("mermaid", "dot"):
            raise InvalidCommand(f"--format {format!r}: expected mermaid or dot")
        tasks = {t.name: t for t in self.task_list}
        producer = {tgt: t.name for t in self.task_list for tgt in t.targets}
        edges = set()
        for t in self.task_list:
            for dep in t.task_dep:
                edges.add((dep, t.name))
            for f in t.file_dep:
                if f in producer:
                    edges.add((producer[f], t.name))
        wanted = set(pos_args) if pos_args else set(tasks)
        if pos_args:  # the selected tasks and everything they depend on
            frontier = list(wanted)
            while frontier:
                n = frontier.pop()
                for a, b in edges:
                    if b == n and a not in wanted:
                        wanted.add(a)
                        frontier.append(a)
        nodes = sorted(n for n in wanted if n in tasks)
        ids = {n: f"t{i}" for i, n in enumerate(nodes)}
        edges = sorted((a, b) for a, b in edges if a in ids and b in ids)
        out = self.outstream
        if format == "mermaid":
            out.write("graph LR\n")
            for n in nodes:
                out.write(f'  {ids[n]}["{n}"]\n')
            for a, b in edges:
                out.write(f"  {ids[a]} --> {ids[b]}\n")
        else:
            out.write("digraph zoobuild {\n  rankdir=LR;\n")
            for n in nodes:
                out.write(f'  "{n}";\n')
            for a, b in edges:
                out.write(f'  "{a}" -> "{b}";\n')
            out.write("}\n")
        return 0


class Vars(DoitCmdBase):
    doc_purpose = "list the typed variables (name=value) every task accepts, with their valid values"
    doc_usage = ""
    doc_description = None
    cmd_options = ()

    def _execute(self, pos_args):
        for name in sorted(params.registry()):
            for var in params.registry()[name]:
                choices = f" one of {{{', '.join(map(str, var.choices))}}}" if var.choices else ""
                declared = var.minimum is not None or var.maximum is not None or var.check
                valid = f" valid: {var.expected()}" if declared and not var.choices else ""
                owner = var.owner.removeprefix("tasks.")
                self.outstream.write(f"{name:24s} {var.type.__name__:5s} default={var.default!r}"
                                     f"{choices}{valid}  [{owner}] {var.help}\n")
        return 0
