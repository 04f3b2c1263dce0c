from sizeup.cli import entrypoint

entrypoint()
