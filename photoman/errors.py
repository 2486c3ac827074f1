"""Errors a user can cause; the CLI prints their message on one line and exits non-zero."""


class PhotomanError(Exception):
    """Base for every error whose message is fit to show a user as is."""

    exit_code = 1


class ConfigError(PhotomanError):
    """Bad setting in the config file or environment."""


class BadInputError(PhotomanError):
    """A path, query or option given on the command line cannot be used."""

    exit_code = 2


class StoreBusyError(PhotomanError):
    """Another photoman process holds the embedded stores."""

    exit_code = 3


class ModelError(PhotomanError):
    """The CLIP model cannot be found or loaded."""


class DecodeError(PhotomanError):
    """A file could not be read as an image."""


class DiskFullError(PhotomanError):
    """The filesystem holding the library is (nearly) full: writing stopped before it could hurt."""

    exit_code = 4
