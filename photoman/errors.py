"""Errors a user can cause; the CLI prints their message on one line and exits non-zero."""


class PhotomanError(Exception):
    """Base for every error whose message is fit to show a user as is."""

    exit_code = 1


class ConfigError(PhotomanError):
    """Bad setting in the config file or environment."""


class SettingValueError(ConfigError):
    """A setting's value cannot be used, whether it came from the file, the env or an option."""

    exit_code = 2


class BadInputError(PhotomanError):
    """A path, query or option given on the command line cannot be used."""

    exit_code = 2


class StoreBusyError(PhotomanError):
    """Another photoman process holds the embedded stores."""

    exit_code = 3


class ModelError(PhotomanError):
    """The CLIP model cannot be found or loaded."""


class DecodeError(PhotomanError):
    """A file could not be read as an image. One that reaches the command line is a file the user
    named (`--image`, `classify`, `locate`): bad input. The indexer keeps its own as a photo's error."""

    exit_code = 2


class DiskFullError(PhotomanError):
    """The filesystem holding the library is (nearly) full: writing stopped before it could hurt."""

    exit_code = 4


# What a path the user gave can be wrong with, as the system says it: shown as their mistake (one
# line, exit 2), not as photoman's own failure. Other OSErrors stay bugs (a traceback, or "internal
# error" from the daemon).
_PATH_ERRNOS = frozenset(("ENAMETOOLONG", "ENOENT", "ENOTDIR", "EISDIR", "ELOOP", "EACCES", "EPERM"))


def path_error(exc: BaseException) -> BadInputError | None:
    """The one-line error for an OSError about a path the user named (a name over 255 bytes, a
    symlink loop, no permission), or None when it is not one."""
    import errno

    if not isinstance(exc, OSError) or exc.filename is None:
        return None
    if errno.errorcode.get(exc.errno or 0) not in _PATH_ERRNOS:
        return None
    from photoman.textsafe import shown

    name = exc.filename if isinstance(exc.filename, str) else repr(exc.filename)
    if len(name) > 80:
        name = name[:40] + "…" + name[-20:]
    return BadInputError(f"cannot use {shown(name)}: {exc.strerror or exc}")
