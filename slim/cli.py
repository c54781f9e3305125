"""Command line for one stage, used by the docker runner and the distributed
launcher (and by hand):

    python -m slim.cli train  --config job.json [--cluster c.json --job worker --task 0]
    python -m slim.cli eval   --config job.json
    python -m slim.cli export --config job.json
    python -m slim.cli launch --config job.json --cluster c.json    # local ps/worker processes

job.json: {"cfg": {...options...}, "dataset_dir": ..., "train_dir": ...,
           "out": ... (eval: eval.json path; export: directory), "extra": {...}}
"""
import argparse
import json
import sys

from zoobuild.errors import UserError, cli_main


def _train(job, args):
    from slim import train
    cluster = None
    if args.cluster:
        from slim.distributed import load_cluster
        cluster = load_cluster(args.cluster)
    train.train(job["cfg"], job["dataset_dir"], job["train_dir"], cluster=cluster,
                job_name=args.job, task_index=args.task)


def _eval(job, args):
    from slim import eval as slim_eval
    slim_eval.evaluate(job["cfg"], job["dataset_dir"], job["train_dir"], job["out"])


def _export(job, args):
    from slim import export
    export.export(job["cfg"], job["dataset_dir"], job["train_dir"], job["out"],
                  extra=job.get("extra"))


def _launch(job, args):
    from slim import distributed
    distributed.launch_local(job["cfg"], job["dataset_dir"], job["train_dir"],
                             distributed.load_cluster(args.cluster))


COMMANDS = {"train": _train, "eval": _eval, "export": _export, "launch": _launch}


def _read_job(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as err:
        raise UserError(f"--config {path}: cannot read: {err.strerror}") from None
    except ValueError as err:
        raise UserError(f"--config {path}: expected a job JSON object ({err})") from None


@cli_main
def main(argv=None):
    """Exit status 0 done, 2 bad input (one line on stderr), 1 the stage itself failed."""
    p = argparse.ArgumentParser(prog="python -m slim.cli")
    p.add_argument("command", choices=sorted(COMMANDS))
    p.add_argument("--config", required=True, help="job JSON")
    p.add_argument("--cluster", default="", help="cluster description (JSON or YAML)")
    p.add_argument("--job", default="worker", choices=("ps", "worker"))
    p.add_argument("--task", type=int, default=0)
    args = p.parse_args(argv)
    COMMANDS[args.command](_read_job(args.config), args)


if __name__ == "__main__":
    sys.exit(main())
