"""`sizeup serve`: a local web page and JSON API over the same commands as the CLI.

The server (app.py, Starlette on uvicorn) never computes an answer itself: it turns the job in the URL (or the
POSTed JSON) into the CLI's argv (jobs.py) and runs `sizeup.cli.main` in a small pool of worker processes
(pool.py, worker.py), so `/api/<command>` answers exactly what `sizeup <command> ... --json` prints.
"""
