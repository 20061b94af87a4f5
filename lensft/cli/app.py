"""The ``lensft`` typer application and its single error-to-exit point.

Exit codes: 0 done, 1 bad input (a :class:`~lensft.errors.LensftError` or a usage error),
2 internal error (a bug: rerun with ``LENSFT_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from importlib import import_module

import typer
from typer.exceptions import TyperException
from rich.console import Console
from rich.markup import escape

from lensft import __version__
from lensft.errors import LensftError

# lensft draws its own progress bars; keep transformers' per-load bars out of the terminal. Set
# before transformers (imported lazily by the commands) reads it.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    name="lensft",
    help="Take long- vs short-context fine-tuning apart: graft MHA/FFN blocks between checkpoints, "
    "probe attention, FFN activations and knowledge preference, and write a report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

err_console = Console(stderr=True, highlight=False)

# Each module adds its commands to ``app`` in a ``register(app)`` function.
_COMMAND_MODULES = (
    "lensft.cli.organism",
    "lensft.cli.swap",
    "lensft.cli.probe",
    "lensft.cli.study",
    "lensft.cli.convert",
    "lensft.cli.needles",
    "lensft.cli.eval",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"lensft {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log what lensft does (INFO level)"),
    version: bool = typer.Option(False, "--version", help="print lensft's version and exit", is_eager=True,
                                 callback=_print_version),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def _register_commands() -> None:
    for name in _COMMAND_MODULES:
        import_module(name).register(app)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return (and, as a console script, exit with) 0, 1 or 2."""
    try:
        app(args=argv, standalone_mode=False, prog_name="lensft")
    except LensftError as e:
        err_console.print(f"[bold red]error:[/] {escape(_with_flag(e, argv))}", soft_wrap=True)
        return _exit(1)
    except typer.Exit as e:
        return _exit(getattr(e, "exit_code", 0))
    except typer.Abort:
        err_console.print("[bold red]error:[/] aborted", soft_wrap=True)
        return _exit(1)
    except TyperException as e:  # usage errors: bad option values, missing arguments
        if type(e).__name__ == "NoArgsIsHelpError":  # help was printed for a bare command
            return _exit(0)
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
        err_console.print(f"[bold red]error:[/] {escape(msg)} (see --help)", soft_wrap=True)
        return _exit(1)
    except KeyboardInterrupt:
        err_console.print("[bold red]error:[/] interrupted", soft_wrap=True)
        return _exit(1)
    except Exception as e:  # the disk or the file system refused, or a bug in lensft
        if os.environ.get("LENSFT_DEBUG"):
            raise
        if isinstance(e, OSError) and e.errno in _FILE_SYSTEM_ERRORS:
            err_console.print(f"[bold red]error:[/] {_file_system_error(e)}", soft_wrap=True)
            return _exit(1)
        err_console.print(
            f"[bold red]internal error:[/] {type(e).__name__}: {escape(str(e))} "
            "(this is a bug in lensft; rerun with LENSFT_DEBUG=1 for the traceback)",
            soft_wrap=True,
        )
        return _exit(2)
    return _exit(0)


#: errno -> what to do, for the file-system refusals that are not lensft's fault
_FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "free some space or write to another file system",
    errno.EDQUOT: "free some space or write to another file system",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "choose an output on a writable file system",
    errno.ELOOP: "fix the symbolic link loop",
}


def _file_system_error(e: OSError) -> str:
    """One line for a file-system refusal: what failed, on which file, and what to do."""
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}; {_FILE_SYSTEM_ERRORS[e.errno]}"


def _with_flag(e: LensftError, argv: list[str] | None) -> str:
    """The error's message with the command-line flag of the input at fault, when the library
    names one with ``field``: ``--alpha: ...`` if the user typed it, ``... (see --base)`` if not."""
    field = getattr(e, "field", None)
    if not field:
        return str(e)
    flag = "--" + field.replace("_", "-")
    typed = argv if argv is not None else sys.argv[1:]
    if any(a == flag or a.startswith(flag + "=") for a in typed):
        return f"{flag}: {e}"
    return f"{e} (see {flag})"


def _exit(code: int | None) -> int:
    return 0 if code is None else int(code)


def run() -> None:
    """Console-script entry point: ``lensft ...``."""
    sys.exit(main())


if __name__ == "__main__":
    run()
