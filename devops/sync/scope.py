"""What a sync leaves alone: schemas and extensions that are not dumped, not dropped or replaced on the target,
and not read by the divergence guard or the verification.

A service keeps things of its own in a database that the other side has no use for, or cannot hold: Neon Auth
writes its users into the schema neon_auth on every sign-in (the guard would find Neon "written since the last
sync" on every run, and a forced run would replace the service's own table); Neon's Data API needs the
extension pg_session_jwt, which RDS cannot create. The setting (devops.exclude_schemas, exclude_extensions) and
the flags (--exclude-schema, --exclude-extension) name them; a dump records what it left out, and a restore of
it leaves that out too.

Every query of a database that reads "its own" objects (sql/own_schemas.sql, postgres.USER_TABLES, the
sequences, the schema hash, what a restore needs) has the slots {left_alone_schemas} and
{left_alone_extensions}; ``fill`` puts this scope's names in them as SQL arrays.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Sequence

from devops.errors import DevopsError

# A name as the flags and settings take it: what CREATE SCHEMA / CREATE EXTENSION take unquoted, plus the
# dashes and capitals that quoted names may hold. Commas separate names; quotes would only hide typos.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")


def names(value: Any, where: str) -> tuple[str, ...]:
    """A setting's or a flag's names (``where``: its name): "a,b", ["a", "b"] (invoke.yaml), or nothing;
    each checked."""
    if not value:
        return ()
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    found = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    bad = [name for name in found if not NAME.fullmatch(name)]
    if bad:
        kind = "extension" if "extension" in where else "schema"
        raise DevopsError(f"{where}: {bad[0]!r} is not a {kind} name (letters, digits, _, $ and -, starting with a "
                          "letter or _; several are separated by commas)")
    return found


def _array(items: Iterable[str]) -> str:
    quoted = ", ".join("'" + item.replace("'", "''") + "'" for item in items)
    return f"ARRAY[{quoted}]::text[]" if quoted else "'{}'::text[]"


@dataclasses.dataclass(frozen=True)
class LeftAlone:
    schemas: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()

    @classmethod
    def of(cls, schemas: Any = (), extensions: Any = (), flags: bool = False) -> "LeftAlone":
        """From the settings' values (or, ``flags``, the sync tasks' --exclude-schema, --exclude-extension)."""
        where = ("--exclude-schema", "--exclude-extension") if flags else ("exclude_schemas", "exclude_extensions")
        return cls(names(schemas, where[0]), names(extensions, where[1]))

    @classmethod
    def of_run(cls, settings: Any, flags: dict[str, Any]) -> "LeftAlone":
        """What a run leaves alone: the settings' (devops.exclude_schemas, exclude_extensions) and its flags'."""
        return cls.of(settings.exclude_schemas, settings.exclude_extensions) \
            | cls.of(flags.get("exclude_schema"), flags.get("exclude_extension"), flags=True)

    def as_flags(self) -> dict[str, str]:
        """As the sync tasks' flags: what a run in an ECS task is told (it has the command line, not the
        settings of the machine that started it)."""
        return {"exclude_schema": ",".join(self.schemas), "exclude_extension": ",".join(self.extensions)}

    @classmethod
    def recorded(cls, record: dict[str, Any] | None) -> "LeftAlone":
        """From a manifest's or a fingerprint's "left_alone" (absent in older ones: nothing)."""
        record = record or {}
        return cls(tuple(record.get("schemas", ())), tuple(record.get("extensions", ())))

    def __or__(self, other: "LeftAlone") -> "LeftAlone":
        return LeftAlone(tuple(dict.fromkeys(self.schemas + other.schemas)),
                         tuple(dict.fromkeys(self.extensions + other.extensions)))

    def __bool__(self) -> bool:
        return bool(self.schemas or self.extensions)

    def as_record(self) -> dict[str, list[str]]:
        return {"schemas": sorted(self.schemas), "extensions": sorted(self.extensions)}

    def describe(self) -> str:
        """'schema neon_auth, extension pg_session_jwt' (the plan's "Left alone" line)."""
        return ", ".join([*(f"schema {name}" for name in self.schemas),
                          *(f"extension {name}" for name in self.extensions)])

    def slots(self) -> dict[str, str]:
        """The values of the slots, for devops.sync.sql.load (before a slot holding a user's text)."""
        return {"left_alone_schemas": _array(self.schemas), "left_alone_extensions": _array(self.extensions)}

    def fill(self, query: str) -> str:
        """``query`` with its slots filled (a query holding no user text: the table names a verification
        carries are put in by sql.load after these)."""
        for slot, value in self.slots().items():
            query = query.replace("{" + slot + "}", value)
        return query

    def pg_dump_args(self) -> list[str]:
        """pg_dump's exclusions: each schema by its exact name (a quoted pattern matches only itself).
        Extensions are left out of the restore by its table of contents (restore.restore_list), which works
        with every pg_dump and for dumps made before an extension was left alone."""
        return [f'--exclude-schema="{name}"' for name in self.schemas]

    def ignores_table(self, name: str) -> bool:
        """Whether a table ("schema.table") is in a schema left alone."""
        return name.split(".", 1)[0] in self.schemas

    def crossing_refusal(self, source: str, source_crossing: Sequence[str], target: str,
                         target_crossing: Sequence[str]) -> str | None:
        """The refusal when something depends across the boundary of what is left alone (sql/crossing.sql):
        on the source, what the restore would create depends on what it leaves out; on the target, what it
        leaves alone depends on what the replace drops (with CASCADE). Each named, with the fix."""
        problems = []
        if source_crossing:
            problems.append(f"on {source}, what the sync copies depends on what it leaves alone: "
                            f"{'; '.join(source_crossing)}. The restore could not create these where that is "
                            "missing: drop the dependency on the source, or stop leaving its object alone")
        if target_crossing:
            problems.append(f"on {target}, what the sync leaves alone depends on what it replaces: "
                            f"{'; '.join(target_crossing)}. The replace would drop these with what they depend "
                            "on: drop the dependency on the target, or stop leaving its object alone")
        if not problems:
            return None
        return (f"refused: the sync leaves alone {self.describe()}, and "
                + "; and ".join(problems) + "; nothing was changed")
