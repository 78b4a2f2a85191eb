"""`tinyres`: drive a tinyres API from the command line.

Exit status: 0 done; 1 the followed job failed or was cancelled; 2 bad usage; 3 the server
refused the request (its reason is printed) or could not be reached; 130 following was
stopped with Ctrl-C (the job keeps running).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from cli import display
from cli.client import DEFAULT_URL, Client, ServerRefused, Unreachable

app = typer.Typer(
    name="tinyres",
    help="Shard image datasets, train ResNets on them and classify images, on a tinyres API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
T = TypeVar("T")
EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 1, 3, 130


@dataclass
class Options:
    url: str
    api_key: str | None
    json: bool

    def client(self) -> Client:
        return Client(self.url, self.api_key)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="TINYRES_URL", help="the API")] = DEFAULT_URL,
    api_key: Annotated[
        str | None, typer.Option(envvar="TINYRES_API_KEY", help="sent as X-API-Key")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="print the API's JSON instead of tables")
    ] = False,
) -> None:
    ctx.obj = Options(url, api_key, json_output)


def _call(ctx: typer.Context, work: Callable[[Client, Options], T]) -> T:
    """Run `work` with a client; a refusal or an unreachable server exits with status 3."""
    options: Options = ctx.obj
    client = options.client()
    try:
        return work(client, options)
    except ServerRefused as exc:
        display.errors.print(f"the server refused: {exc.status} {exc.reason}")
        raise typer.Exit(EXIT_REFUSED) from exc
    except Unreachable as exc:
        display.errors.print(str(exc))
        raise typer.Exit(EXIT_REFUSED) from exc
    finally:
        client.close()


def follow_job(client: Client, options: Options, job_id: str) -> int:
    """Show the job's events until it ends; the exit status its final state gives."""
    final: dict[str, Any] | None = None
    try:
        if options.json:
            for event in client.events(job_id):
                final = event.data if event.event == "end" else final
        else:
            with display.ProgressView(job_id) as view:
                for event in client.events(job_id):
                    if event.event == "end":
                        final = event.data
                    else:
                        view.show(event.event, event.data)
    except KeyboardInterrupt:
        display.errors.print(
            f"stopped following; job {job_id} keeps running (tinyres job {job_id} --follow)"
        )
        return EXIT_INTERRUPTED
    assert final is not None
    _show_job(options, final)
    return 0 if final["state"] == "succeeded" else EXIT_FAILED


def _show_job(options: Options, job: dict[str, Any]) -> None:
    if options.json:
        display.print_json(job)
    else:
        display.job_summary(job)


def _submitted(client: Client, options: Options, job: dict[str, Any], follow: bool) -> None:
    if follow:
        raise typer.Exit(follow_job(client, options, job["id"]))
    if options.json:
        display.print_json(job)
    else:
        display.console.print(f"job {job['id']} ({job['kind']}) {job['state']}")
        display.console.print(f"follow it: tinyres job {job['id']} --follow")


def parse_levels(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"a comma-separated list of integers, e.g. 4,6,3,2. Received: {value!r}"
        ) from exc


Follow = Annotated[bool, typer.Option("--follow", "-f", help="show live progress until it ends")]


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
            _submitted(client, options, job, follow=True)
        elif options.json:
            display.print_json({"source": source})

    _call(ctx, work)


@app.command("shard")
def shard_command(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="a source path (see `GET /sources`)")],
    dataset: Annotated[str, typer.Option(help="the dataset's name")],
    num_shards: Annotated[int | None, typer.Option()] = None,
    compression: Annotated[str | None, typer.Option(help="GZIP or NONE")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    follow: Follow = False,
) -> None:
    """Shard a source into a TFRecord dataset."""
    fields = {"num_shards": num_shards, "compression": compression, "seed": seed}
    body = {
        "source": source,
        "dataset": dataset,
        **{k: v for k, v in fields.items() if v is not None},
    }
    _call(ctx, lambda c, o: _submitted(c, o, c.post("/jobs/shard", body), follow))


@app.command()
def train(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="a sharded dataset")],
    preset: Annotated[str | None, typer.Option(help="writeup or half")] = None,
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
    follow: Follow = False,
) -> None:
    """Train a ResNet on a dataset (or resume an earlier train job)."""
    fields = {
        "preset": preset, "width": width, "levels": parse_levels(levels), "epochs": epochs,
        "batch_size": batch_size, "learning_rate": learning_rate, "momentum": momentum,
        "lr_decay_epoch": lr_decay_epoch, "lr_decay": lr_decay, "l2": l2,
        "resume_from": resume_from, "initial_epoch": initial_epoch, "seed": seed,
    }  # fmt: skip
    body = {"dataset": dataset, **{k: v for k, v in fields.items() if v is not None}}
    _call(ctx, lambda c, o: _submitted(c, o, c.post("/jobs/train", body), follow))


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

    _call(ctx, work)


@app.command()
def job(
    ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")], follow: Follow = False
) -> None:
    """Show a job; with --follow, its live progress until it ends."""

    def work(client: Client, options: Options) -> None:
        answer = client.get(f"/jobs/{job_id}")
        if follow:
            raise typer.Exit(follow_job(client, options, job_id))
        _show_job(options, answer)

    _call(ctx, work)


@app.command()
def cancel(ctx: typer.Context, job_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Cancel a job (a running one stops within seconds)."""
    _call(ctx, lambda c, o: _show_job(o, c.post(f"/jobs/{job_id}/cancel")))


def _listing(ctx: typer.Context, path: str, key: str, columns: list[str]) -> None:
    def work(client: Client, options: Options) -> None:
        answer = client.get(path)
        display.print_json(answer) if options.json else display.table(key, answer[key], columns)

    _call(ctx, work)


@app.command()
def datasets(ctx: typer.Context) -> None:
    """List the sharded datasets."""
    _listing(ctx, "/datasets", "datasets", ["name", "count", "bytes"])


@app.command()
def models(ctx: typer.Context) -> None:
    """List the trained models."""
    _listing(ctx, "/models", "models", ["id", "dataset", "width", "epochs", "val_accuracy"])


@app.command()
def evaluate(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="a model id or alias")],
    dataset: Annotated[str | None, typer.Option()] = None,
    split: Annotated[str | None, typer.Option(help="val or train")] = None,
    follow: Annotated[bool, typer.Option("--follow/--no-follow")] = True,
) -> None:
    """Evaluate a model on a dataset's split (waits for the result unless --no-follow)."""
    body = {"model": model, **{k: v for k, v in {"dataset": dataset, "split": split}.items() if v}}
    _call(ctx, lambda c, o: _submitted(c, o, c.post("/jobs/evaluate", body), follow))


@app.command()
def export(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="a model id")],
    format: Annotated[str, typer.Option("--format", help="saved_model, onnx or litert")],
    output: Annotated[Path, typer.Option("-o", "--output", help="where to write the artifact")],
) -> None:
    """Export a model, wait for the export, and download it."""

    def work(client: Client, options: Options) -> None:
        job = client.post(f"/models/{model}/exports", {"format": format})
        final = _wait(client, job["id"])
        if final["state"] != "succeeded":
            _show_job(options, final)
            raise typer.Exit(EXIT_FAILED)
        with output.open("wb") as target:
            written = client.download(f"/models/{model}/exports/{format}", target)
        if options.json:
            display.print_json({"job": final, "file": str(output), "bytes": written})
        else:
            display.console.print(f"wrote {output} ({written} bytes)")

    _call(ctx, work)


def _wait(client: Client, job_id: str) -> dict[str, Any]:
    for event in client.events(job_id):
        if event.event == "end":
            return dict(event.data)
    raise Unreachable(f"the event stream of job {job_id} ended early")


@app.command()
def alias(
    ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="ALIAS")], model: str
) -> None:
    """Point an alias at a model."""

    def work(client: Client, options: Options) -> None:
        answer = client.request("PUT", f"/aliases/{name}", json={"model": model})
        display.print_json(answer) if options.json else display.console.print(f"{name} -> {model}")

    _call(ctx, work)


@app.command()
def predict(
    ctx: typer.Context,
    images: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, metavar="IMAGE...")],
    model: Annotated[str | None, typer.Option(help="a model id or alias")] = None,
    top_k: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Classify images."""

    def work(client: Client, options: Options) -> None:
        answers = [{"image": str(i), **client.predict(i, model, top_k)} for i in images]
        if options.json:
            display.print_json(answers[0] if len(answers) == 1 else answers)
            return
        for answer in answers:
            display.table(
                f"{answer['image']} (model {answer['model']})",
                answer["predictions"],
                ["class_index", "wnid", "label", "probability"],
            )

    _call(ctx, work)


if __name__ == "__main__":
    app()
