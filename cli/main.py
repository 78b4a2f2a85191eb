"""`tinyres`: drive a tinyres API from the command line.

Exit status: 0 done; 1 the followed job failed or was cancelled; 2 bad usage; 3 the server
refused the request (its reason is printed) or could not be reached; 130 following was
stopped with Ctrl-C (the job keeps running).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from cli import display
from cli.app import (
    Follow,
    Options,
    app,
    call_api,
    follow_job,
    listing,
    parse_levels,
    show_job,
    submitted,
)
from cli.client import Client

# Registers the model commands (list, evaluate, export, alias, predict) on `app`.
import cli.model_commands  # noqa: F401  isort: skip


@app.command()
def upload(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, help="a folder, .zip, .tar or .tar.gz")],
    name: Annotated[str, typer.Option(help="the upload's (and dataset's) name")],
    shard: Annotated[bool, typer.Option(help="shard it into a dataset NAME, and wait")] = False,
) -> None:
    """Upload a dataset (a folder is archived on the fly); run it again to resume."""

    def work(client: Client, options: Options) -> None:
        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=display.errors, disable=options.json) as bar:
            task = bar.add_task("upload", total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            source = client.upload(path, name, progress)
        if not options.json:
            display.console.print(f"uploaded: source {source}")
        if shard:
            job = client.post("/jobs/shard", {"source": source, "dataset": name})
            submitted(client, options, job, follow=True)
        elif options.json:
            display.print_json({"source": source})

    call_api(ctx, work)


@app.command("shard")
def shard_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="a source path (see `GET /sources`)")],
    dataset: Annotated[str, typer.Option(help="the dataset's name")],
    num_shards: Annotated[int | None, typer.Option()] = None,
    compression: Annotated[str | None, typer.Option(help="GZIP or NONE")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    warmup_epochs: Annotated[int | None, typer.Option()] = None,
    label_smoothing: Annotated[float | None, typer.Option()] = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    follow: Follow = False,
) -> None:
    """Shard a source into a TFRecord dataset."""
    fields = {"num_shards": num_shards, "compression": compression, "seed": seed}
    body = {
        "source": source,
        "dataset": dataset,
        **{k: v for k, v in fields.items() if v is not None},
    }
    call_api(ctx, lambda c, o: submitted(c, o, c.post("/jobs/shard", body), follow))


@app.command()
def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="a sharded dataset")],
    preset: Annotated[str | None, typer.Option(help="writeup or half")] = None,
    recipe: Annotated[str | None, typer.Option(help="writeup (default) or strong")] = None,
    width: Annotated[int | None, typer.Option()] = None,
    levels: Annotated[str | None, typer.Option(help="blocks per level, e.g. 4,6,3,2")] = None,
    epochs: Annotated[int | None, typer.Option(help="total epochs (also when resuming)")] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    momentum: Annotated[float | None, typer.Option()] = None,
    lr_decay_epoch: Annotated[int | None, typer.Option()] = None,
    lr_decay: Annotated[float | None, typer.Option()] = None,
    l2: Annotated[float | None, typer.Option()] = None,
    resume_from: Annotated[str | None, typer.Option(help="an earlier train job's id")] = None,
    initial_epoch: Annotated[int | None, typer.Option()] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    warmup_epochs: Annotated[int | None, typer.Option()] = None,
    label_smoothing: Annotated[float | None, typer.Option()] = None,
    weight_decay: Annotated[float | None, typer.Option()] = None,
    follow: Follow = False,
) -> None:
    """Train a ResNet on a dataset (or resume an earlier train job)."""
    fields = {
        "preset": preset, "width": width, "levels": parse_levels(levels), "epochs": epochs,
        "batch_size": batch_size, "learning_rate": learning_rate, "momentum": momentum,
        "lr_decay_epoch": lr_decay_epoch, "lr_decay": lr_decay, "l2": l2,
        "resume_from": resume_from, "initial_epoch": initial_epoch, "seed": seed,
        "recipe": recipe, "warmup_epochs": warmup_epochs, "label_smoothing": label_smoothing,
        "weight_decay": weight_decay,
    }  # fmt: skip
    body = {"dataset": dataset, **{k: v for k, v in fields.items() if v is not None}}
    call_api(ctx, lambda c, o: submitted(c, o, c.post("/jobs/train", body), follow))


@app.command()
def jobs(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option()] = None,
    state: Annotated[str | None, typer.Option()] = None,
) -> None:
    """List jobs, newest first."""

    def work(client: Client, options: Options) -> None:
        answer = client.get("/jobs", kind=kind, state=state)
        display.print_json(answer) if options.json else display.jobs_table(answer["jobs"])

    call_api(ctx, work)


@app.command()
def job(
    ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")], follow: Follow = False
) -> None:
    """Show a job; with --follow, its live progress until it ends."""

    def work(client: Client, options: Options) -> None:
        answer = client.get(f"/jobs/{job_id}")
        if follow:
            raise typer.Exit(follow_job(client, options, job_id))
        show_job(options, answer)

    call_api(ctx, work)


@app.command()
def cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a job (a running one stops within seconds)."""
    call_api(ctx, lambda c, o: show_job(o, c.post(f"/jobs/{job_id}/cancel")))


@app.command()
def datasets(ctx: typer.Context) -> None:
    """List the sharded datasets."""
    listing(ctx, "/datasets", "datasets", ["name", "count", "bytes"])


if __name__ == "__main__":
    app()
