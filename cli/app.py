"""The `tinyres` Typer app: global options, calling the API, following a job.

The commands are in ``cli.main`` (data and jobs) and ``cli.model_commands`` (models).

Exit status: 0 done; 1 the followed job failed or was cancelled; 2 bad usage; 3 the server
refused the request (its reason is printed) or could not be reached; 130 following was
stopped with Ctrl-C (the job keeps running).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import typer

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


def call_api(ctx: typer.Context, work: Callable[[Client, Options], T]) -> T:
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
    show_job(options, final)
    return 0 if final["state"] == "succeeded" else EXIT_FAILED


def show_job(options: Options, job: dict[str, Any]) -> None:
    if options.json:
        display.print_json(job)
    else:
        display.job_summary(job)


def submitted(client: Client, options: Options, job: dict[str, Any], follow: bool) -> None:
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


def listing(ctx: typer.Context, path: str, key: str, columns: list[str]) -> None:
    def work(client: Client, options: Options) -> None:
        answer = client.get(path)
        display.print_json(answer) if options.json else display.table(key, answer[key], columns)

    call_api(ctx, work)
