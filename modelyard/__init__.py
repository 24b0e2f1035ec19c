"""modelyard: a model registry and deployment gateway in one Python service."""

__version__ = "0.1.0"
