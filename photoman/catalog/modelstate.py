"""Which model a library searches with, and which one a switch is building: one row in the catalog.

The ``model`` setting is a request, the row is the truth. A library remembers the setting it last
acted on; when the setting changes, that is read as `photoman models use NEW` (a switch starts), and
the library keeps searching with its active model until the new collection is complete. A library
from before this row existed takes the model most of its photos were embedded with as active.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from photoman.catalog.db import Catalog
from photoman.catalog.models import OK, ModelState, Photo

ROW = 1


@dataclass(frozen=True)
class State:
    """Model identities (hub ids, or absolute folders: see embedding.checkpoint.model_identity)."""

    active: str
    target: str | None = None
    setting: str | None = None  # the `model` setting last acted on


def _most_used(s: Session) -> str | None:
    row = s.execute(
        select(Photo.model_id)
        .where(Photo.status == OK, Photo.model_id.is_not(None))
        .group_by(Photo.model_id)
        .order_by(func.count().desc())
        .limit(1)
    ).first()
    return row[0] if row else None


def load(s: Session) -> State | None:
    """The recorded state, or None for a library that has none yet."""
    row = s.get(ModelState, ROW)
    return None if row is None else State(row.active_model, row.target_model, row.model_setting)


def save(s: Session, state: State) -> None:
    """Record ``state`` in the session's transaction (the caller's commit makes it so, atomically)."""
    row = s.get(ModelState, ROW)
    if row is None:
        row = ModelState(id=ROW, active_model=state.active)
        s.add(row)
    if row.target_model != state.target:
        row.switch_started = datetime.now() if state.target else None
    row.active_model, row.target_model, row.model_setting = state.active, state.target, state.setting


def resolve(
    catalog: Catalog, requested: str, write: bool, check: Callable[[str], object] | None = None
) -> State:
    """The state a library opened with the ``model`` setting ``requested`` (an identity) works in.

    A setting that differs from the one last acted on starts a switch to it (or cancels one, when it
    names the active model again), once ``check`` (which raises for a model that cannot load) passed;
    recorded when ``write``."""
    with catalog.session() as s:
        recorded = load(s)
        state = recorded or State(_most_used(s) or requested)
        if state.setting != requested:
            if requested != state.active and check is not None:
                check(requested)
            state = State(state.active, None if requested == state.active else requested, requested)
        if write and state != recorded:
            save(s, state)
    return state


def set_target(catalog: Catalog, target: str | None) -> State:
    """Start (or, with None, cancel) a switch; the active model stays."""
    with catalog.session() as s:
        recorded = load(s)
        assert recorded is not None  # written when the library was opened for writing
        state = State(recorded.active, None if target == recorded.active else target, recorded.setting)
        save(s, state)
    return state
