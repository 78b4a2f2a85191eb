"""`tinyres` commands about trained models: list, evaluate, export, alias, predict, and
classify a whole source (`predict-batch`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli import display
from cli.app import EXIT_FAILED, Options, app, call_api, show_job, submitted
from cli.client import Client, Unreachable


@app.command()
def models(ctx: typer.Context) -> None:
    """List the trained models."""

    def work(client: Client, options: Options) -> None:
        answer = client.get("/models")
        display.print_json(answer) if options.json else display.models_table(answer["models"])

    call_api(ctx, work)


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
    call_api(ctx, lambda c, o: submitted(c, o, c.post("/jobs/evaluate", body), follow))


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
            show_job(options, final)
            raise typer.Exit(EXIT_FAILED)
        with output.open("wb") as target:
            written = client.download(f"/models/{model}/exports/{format}", target)
        if options.json:
            display.print_json({"job": final, "file": str(output), "bytes": written})
        else:
            display.console.print(f"wrote {output} ({written} bytes)")

    call_api(ctx, work)


@app.command("predict-batch")
def predict_batch(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="a folder or archive under the data root")],
    output: Annotated[Path, typer.Option("-o", "--output", help="where to write the CSV")],
    model: Annotated[str | None, typer.Option(help="a model id or alias")] = None,
    top_k: Annotated[int, typer.Option(min=1)] = 5,
) -> None:
    """Classify every image of a source on a worker, wait, and download predictions.csv."""

    def work(client: Client, options: Options) -> None:
        body: dict[str, Any] = {"source": source, "top_k": top_k}
        if model is not None:
            body["model"] = model
        final = _wait(client, client.post("/jobs/predict", body)["id"])
        if final["state"] != "succeeded":
            show_job(options, final)
            raise typer.Exit(EXIT_FAILED)
        with output.open("wb") as target:
            written = client.download(f"/jobs/{final['id']}/predictions.csv", target)
        if options.json:
            display.print_json({"job": final, "file": str(output), "bytes": written})
        else:
            result = final.get("result") or {}
            display.console.print(
                f"wrote {output} ({result.get('images', '?')} images, "
                f"{result.get('unreadable_count', 0)} unreadable)"
            )

    call_api(ctx, work)


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

    call_api(ctx, work)


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

    call_api(ctx, work)
