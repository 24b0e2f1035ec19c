"""Client subcommands (models, versions, stage, alias, audit): filled in next."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    return None
