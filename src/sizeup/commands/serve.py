"""`sizeup serve`: the local web page and JSON API (sizeup.web; needs the `web` extra)."""

from __future__ import annotations

from typing import Annotated

import typer

from sizeup.cli import app
from sizeup.errors import SizeupError

HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on (default: this machine only).")]
PortOpt = Annotated[int, typer.Option("--port", help="TCP port.")]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Worker processes that run jobs in parallel.")]
TimeoutOpt = Annotated[float, typer.Option("--timeout-s", help="Longest a job may run before it is stopped (seconds).")]


@app.command("serve")
def serve_cmd(host: HostOpt = "127.0.0.1", port: PortOpt = 8000, workers: WorkersOpt = 2,
              timeout_s: TimeoutOpt = 10.0) -> None:
    """Serve a local web page (form, tables, charts, explain) and a JSON API over the same commands.

    GET or POST /api/<command> with the job (CLI flag names -> values) returns exactly what
    `sizeup <command> ... --json` prints; bad input is HTTP 400 with {"error", "field"}.

    Examples:

      sizeup serve

      sizeup serve --port 8080

      curl 'http://127.0.0.1:8000/api/train?model=llama-2-7b&gpu=a10&peft=lora&tokens=15M'
    """
    if not 0 < port < 65536:
        raise SizeupError(f"--port must be in 1..65535, got {port}")
    if workers < 1 or workers > 64:
        raise SizeupError(f"--workers must be in 1..64, got {workers}")
    if not timeout_s > 0:
        raise SizeupError(f"--timeout-s must be > 0, got {timeout_s}")
    try:
        import uvicorn

        from sizeup.web.app import create_app
    except ImportError as exc:
        raise SizeupError(f"'sizeup serve' needs the web extra: pip install 'sizeup[web]' (missing {exc.name})") from None
    typer.echo(f"sizeup: serving on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    uvicorn.run(create_app(workers=workers, timeout_s=timeout_s), host=host, port=port, log_level="warning")
