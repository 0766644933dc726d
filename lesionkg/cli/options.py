"""What the commands share: the command group class, options, and the driver every graph command
gets from :func:`with_driver`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from lesionkg.config.settings import resolve_settings
from lesionkg.core.errors import LesionKGError
from lesionkg.core.limits import DEFAULT_LIMITS, InputLimits, limit_names

if TYPE_CHECKING:
    from lesionkg.db.driver import Driver

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Group(click.Group):
    """Turns LesionKGError into click's 'Error: ...' message with exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LesionKGError as exc:
            raise click.ClickException(str(exc)) from exc


def connection_options(command: F) -> F:
    """``--uri``, ``--user``, ``--password``, ``--database``: where the graph commands connect."""
    for option in reversed(
        (
            click.option(
                "--uri", default=None, help="Bolt URI [env NEO4J_URI; default: the local server]."
            ),
            click.option(
                "--user", "username", default=None, help="User [env NEO4J_USERNAME or NEO4J_USER]."
            ),
            click.option("--password", default=None, help="Password [env NEO4J_PASSWORD]."),
            click.option(
                "--database", default=None, help="Database [env NEO4J_DATABASE; default neo4j]."
            ),
        )
    ):
        command = option(command)
    return command


@contextmanager
def connected() -> Iterator[tuple[Driver, str]]:
    """The driver and database of the connection options of the running command line, closed on
    exit. Use it where a command must check its arguments before it connects."""
    from lesionkg.db.driver import open_driver

    settings = resolve_settings(**click.get_current_context().find_root().obj)
    driver = open_driver(settings)
    try:
        yield driver, settings.database
    finally:
        driver.close()


def with_driver(command: Callable[..., T]) -> Callable[..., T]:
    """Call ``command`` with ``driver=`` and ``database=`` from the connection options (one driver
    per command, closed when it ends); apply it under the click decorators."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> T:
        with connected() as (driver, database):
            return command(*args, driver=driver, database=database, **kwargs)

    return run


FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", help="Output format."
)
ROWS_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
    help="Output format.",
)
PARAM = click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE", help="Query parameter (repeatable)."
)
QUIET = click.option("--quiet", is_flag=True, help="No progress bar.")
SPACE = click.option(
    "--space",
    type=click.Choice(["cues", "triplet"]),
    default="cues",
    show_default=True,
    help="Embedding space: cues (metadata) or triplet (the network's, after `lesionkg embed`).",
)
INDEX_DIR = click.option(
    "--index-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the HNSW index is kept [default: $LESIONKG_HOME/index/DATABASE].",
)


def device_option(default: str) -> Callable[[F], F]:
    """``--device auto|cpu|cuda`` (auto: CUDA when available)."""
    return click.option(
        "--device", type=click.Choice(["auto", "cpu", "cuda"]), default=default, show_default=True
    )


DEVICE = device_option("auto")


# The files and folders the model commands take: the same name, type and checks in every command,
# the help in each saying what that command does with it.
def data_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """``--data FILE``: a DL_info.csv that exists, as ``csv_path``."""
    return click.option(
        "--data",
        "csv_path",
        required=required,
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        default=None,
        help=help,
    )


def images_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """``--images DIRECTORY``: a folder of key-slice PNGs that exists."""
    return click.option(
        "--images",
        required=required,
        type=click.Path(path_type=Path, file_okay=False, exists=True),
        default=None,
        help=help,
    )


def model_dir_option(help: str, *, required: bool = False) -> Callable[[F], F]:
    """``--model DIRECTORY``: a model folder that exists, as ``model_dir``."""
    return click.option(
        "--model",
        "model_dir",
        required=required,
        type=click.Path(path_type=Path, file_okay=False, exists=True),
        default=None,
        help=help,
    )


# What the training commands share; steps, learning rate and checkpoints differ by network.
MODEL_OUT = click.option(
    "--out", required=True, type=click.Path(path_type=Path, file_okay=False), help="Model folder."
)
SEED = click.option("--seed", type=int, default=0, show_default=True)


def steps_option(minimum: int, default: int) -> Callable[[F], F]:
    """``--steps``: training steps, at least ``minimum``."""
    return click.option("--steps", type=click.IntRange(minimum), default=default, show_default=True)


def lr_option(default: float) -> Callable[[F], F]:
    """``--lr``: the learning rate, above 0."""
    return click.option(
        "--lr", type=click.FloatRange(min=0, min_open=True), default=default, show_default=True
    )


def checkpoint_every_option(default: int) -> Callable[[F], F]:
    """``--checkpoint-every``: steps between checkpoints."""
    return click.option(
        "--checkpoint-every", type=click.IntRange(1), default=default, show_default=True
    )


def backbone_options(command: F) -> F:
    """``--backbone``, ``--backbone-weights``: the VGG-16 a network is built on and its start."""
    for option in reversed(
        (
            click.option(
                "--backbone",
                type=click.Choice(["vgg16_bn", "vgg16"]),
                default="vgg16_bn",
                show_default=True,
            ),
            click.option(
                "--backbone-weights",
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
                default=None,
                help="torchvision VGG-16 weights file for --backbone [default: random start].",
            ),
        )
    ):
        command = option(command)
    return command


def _parse_limits(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> InputLimits:
    """``--limit NAME=VALUE`` settings applied to the default limits; a bad name or value is a
    usage error (exit 2) that lists the valid names."""
    names = ", ".join(limit_names())
    settings: dict[str, str] = {}
    for text in values:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{text!r} is not NAME=VALUE; names: {names}", ctx, param)
        settings[name.strip()] = value.strip()
    try:
        return DEFAULT_LIMITS.with_overrides(settings)
    except ValueError as exc:
        message = str(exc) if "known:" in str(exc) else f"{exc}; names: {names}"
        raise click.BadParameter(message, ctx, param) from None


LIMIT = click.option(
    "--limit",
    "limits",
    multiple=True,
    metavar="NAME=VALUE",
    callback=_parse_limits,
    help="Change a limit on input (repeatable), e.g. json_depth=128, image_pixels=67108864, "
    "earliest_date=1950-01-01; names and defaults in docs/input-limits.md.",
)


def neighbours_option(maximum: int, default: int) -> Callable[[F], F]:
    """``-k/--k``: how many neighbours."""
    return click.option(
        "-k", "--k", "k", type=click.IntRange(1, maximum), default=default, show_default=True
    )


def parse_floats(text: str, n: int | None, option: str) -> tuple[float, ...]:
    """``text`` as comma-separated numbers (``n`` of them when given), else a usage error."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated numbers, got {text!r}", param_hint=option
        ) from None
    if n is not None and len(values) != n:
        raise click.BadParameter(f"expected {n} numbers, got {text!r}", param_hint=option)
    return values


def _parse_window(ctx: click.Context, param: click.Parameter, text: str) -> tuple[float, float]:
    """``--window min,max`` in HU, min below max; else a usage error before the command runs."""
    low, high = parse_floats(text, 2, "--window")
    if low >= high:
        raise click.BadParameter("min must be below max", param_hint="--window")
    return low, high


WINDOW = click.option(
    "--window",
    default="-1024,1024",
    show_default=True,
    callback=_parse_window,
    help="HU window min,max.",
)
