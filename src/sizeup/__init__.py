"""sizeup: size AI training and inference runs before renting a GPU.

Library entry points (each returns frozen results with an explanation of every figure):

    from sizeup.catalog import load_catalog, resolve_model
    from sizeup.core.params import count_params
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
