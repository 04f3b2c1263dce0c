"""A job (flag name -> value, as in the URL's query string or a POSTed JSON object) -> the CLI's argv.

`{"model": "llama-2-7b", "gpu": "a10", "peft": "lora", "lora-rank": 16, "explain": true}` ->
`["train", "llama-2-7b", "--gpu=a10", "--peft=lora", "--lora-rank=16", "--explain"]`.
Keys are the CLI's long flag names without the dashes; `model` is the positional model; `config` is a
pasted Hugging Face config.json (the worker writes it to a private temporary file).
"""

from __future__ import annotations

import json
import re
from typing import Any

from sizeup.errors import SizeupError

# commands the page and the API run (all print JSON with --json)
COMMANDS = ("train", "memory", "compare", "search", "scale", "infer", "serve-plan", "validate", "params")
# flags a web job may not set: output format and anything that reads or writes server files
BLOCKED = frozenset({"json", "csv", "markdown", "plot", "help", "catalog", "out", "export", "tokens-spec"})
MAX_REQUEST_BYTES = 1_000_000
MAX_CONFIG_BYTES = 256 * 1024
_FLAG = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
# a preset id, alias or Hugging Face repo name (org/name); never a path on the server
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


class JobError(SizeupError):
    """Bad input in a web job (HTTP 400), naming the field it came from."""

    def __init__(self, message: str, field: str | None = None, status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


def _value(flag: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else None
    if isinstance(value, (list, tuple)):
        return ",".join(str(v).strip() for v in value if str(v).strip()) or None
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        text = value.strip()
        return text or None
    raise JobError(f"--{flag}: expected a string, number, boolean or list, got {type(value).__name__}", flag)


def normalize(job: dict[str, Any]) -> dict[str, Any]:
    """Drop empty values, check names and sizes; returns the job the URL should carry."""
    if not isinstance(job, dict):
        raise JobError("the job must be a JSON object of flag -> value")
    out: dict[str, Any] = {}
    for key, value in job.items():
        key = str(key).strip().lstrip("-")
        if key in ("command", "view", "chart"):
            continue
        if not _FLAG.match(key):
            raise JobError(f"unknown field {key[:40]!r}: use the CLI's flag names (gpu, tokens, global-batch, ...)", key)
        if key in BLOCKED:
            raise JobError(f"--{key} is not available from the web page (the page already shows every format)", key)
        if key == "config":
            text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, dict) else None
            if text is None:
                raise JobError("config: paste the text of a Hugging Face config.json", "config")
            if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
                raise JobError(f"config: the pasted config.json is {len(text.encode('utf-8')):,} bytes; the limit is "
                               f"{MAX_CONFIG_BYTES:,} (256 KB)", "config", status=413)
            if text.strip():
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise JobError(f"config: not valid JSON (line {exc.lineno}: {exc.msg})", "config") from None
                if not isinstance(parsed, dict):
                    raise JobError("config: a config.json is a JSON object", "config")
                out["config"] = text.strip()
            continue
        text = _value(key, value)
        if text is None:
            continue
        if key == "model" and not _MODEL.match(text):
            raise JobError(f"model {text[:60]!r}: give a preset id (llama-2-7b), a Hugging Face id (meta-llama/Llama-2-7b-hf) "
                           "or paste the config.json", "model")
        if len(text) > 4096:
            raise JobError(f"--{key}: value too long ({len(text):,} characters)", key)
        out[key] = value if isinstance(value, bool) else text
    if "config" in out and "model" in out:
        raise JobError("give one model: a preset/Hugging Face id or a pasted config.json, not both", "model")
    return out


def to_argv(command: str, job: dict[str, Any], config_path: str | None = None) -> list[str]:
    """argv for `sizeup.cli.main` (always with --json)."""
    if command not in COMMANDS:
        raise JobError(f"unknown command {command!r}; the web page runs {', '.join(COMMANDS)}", status=404)
    argv = [command]
    model = config_path if "config" in job else job.get("model")
    if model:
        if command in ("scale", "validate"):
            raise JobError(f"'{command}' takes no model", "model")
        argv.append(str(model))
    for key, value in job.items():
        if key in ("model", "config"):
            continue
        if value is True or value == "true":
            argv.append(f"--{key}")
        elif value is False or value == "false":
            continue
        else:
            argv.append(f"--{key}={value}")
    argv.append("--json")
    return argv


def field_of(message: str, job: dict[str, Any]) -> str | None:
    """The form field an error line is about: the first --flag it names that the job set, else the model."""
    for flag in re.findall(r"--([a-z][a-z0-9-]*)", message):
        if flag in job:
            return flag
    lead = re.match(r"([a-z][a-z0-9_-]*)\b", message)  # "seq (2048) exceeds ...", "tokens must be > 0"
    if lead and lead.group(1).replace("_", "-") in job:
        return lead.group(1).replace("_", "-")
    low = message.lower()
    if "model" in low or "config" in low:
        return "config" if "config" in job else "model"
    for flag in re.findall(r"--([a-z][a-z0-9-]*)", message):
        return flag
    return None
