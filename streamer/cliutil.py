"""What every churnwatch command line shares: the settings it reads, listed in its ``--help``."""

from __future__ import annotations

import argparse
import logging
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings

__all__ = ["parser_for", "quiet_logger", "settings_epilog"]

_ENV_PREFIX = "CHURNWATCH_"


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (frozenset, set, tuple, list, dict)) and not value:
        return "empty"
    return str(value)


def settings_epilog(settings: type[BaseSettings]) -> str:
    """Every setting of ``settings`` as ``CHURNWATCH_NAME (default): description`` lines."""
    lines = ["settings (environment variables):"]
    for name, field in settings.model_fields.items():
        if field.exclude:
            continue
        if field.is_required():
            default = "required"
        else:
            default = _default(field.get_default(call_default_factory=True))
        head = f"  {_ENV_PREFIX}{name.upper()} (default: {default})"
        lines.append(head)
        if field.description:
            lines += textwrap.wrap(
                field.description, width=96, initial_indent="      ", subsequent_indent="      "
            )
    return "\n".join(lines)


def parser_for(prog: str | None, description: str, settings: type[BaseSettings]) -> argparse.ArgumentParser:
    """A parser whose ``--help`` describes the command and lists the settings it reads."""
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=settings_epilog(settings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


@contextmanager
def quiet_logger(name: str) -> Iterator[None]:
    """Silence a library's logger for a block whose failure the caller reports itself."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
