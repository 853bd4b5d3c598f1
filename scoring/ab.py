"""A/B tests of scoring models: a stable split of records between production and a challenger.

:func:`assign` puts a record in the challenger arm when a hash of its key falls below the
configured share.  The hash is BLAKE2b (8-byte digest) of ``salt``, a NUL byte and ``key``, both
UTF-8, read as a big-endian integer and divided by 2**64: a uniform number in [0, 1) that is the
same in every process, Python version and machine (unlike ``hash()``, which is salted per
process).  Changing the salt re-draws the split; raising the share only moves records from
production to the challenger (every record with ``u < old share`` still has ``u < new share``).

:class:`ABScorer` wraps the two scorers behind the :class:`~scoring.base.Scorer` protocol: a batch
is split by variant, each part is scored by its model, and the columns are merged back in batch
order with each row's own variant and model version (``ScoreColumns.variants`` /
``model_versions``).  Records scored without a key (``keys=None``, the API's ad-hoc scoring) go
to production: an unkeyed record cannot be assigned stably.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from junction.core.errors import ConfigError, ScoringInputError
from schemas.score import Score
from scoring.base import PartialScoreColumns, ScoreColumns, Scorer

Variant = Literal["production", "challenger"]
PRODUCTION: Variant = "production"
CHALLENGER: Variant = "challenger"
_SCALE = float(1 << 64)


def bucket(key: str, salt: str) -> float:
    """The key's uniform number in [0, 1): BLAKE2b-64 of ``salt``, NUL, ``key`` over 2**64."""
    digest = hashlib.blake2b(
        salt.encode() + b"\0" + key.encode(), digest_size=8, usedforsecurity=False
    ).digest()
    return int.from_bytes(digest, "big") / _SCALE


def assign(key: str, share: float, salt: str) -> Variant:
    """The variant of the record with ``key``: ``challenger`` for a ``share`` of keys.

    Raises:
        ConfigError: ``share`` is not within [0, 1].
    """
    if not 0.0 <= share <= 1.0:
        raise ConfigError("the challenger share must be between 0 and 1", context={"share": share})
    return CHALLENGER if bucket(key, salt) < share else PRODUCTION


class ABScorer:
    """Scores each record with production or the challenger, as :func:`assign` decides.

    Attributes:
        name, version: production's (the A/B scorer stands in for production).
        production, challenger: the two scorers; each one's scores carry its own variant.
        share, salt: the split (see :func:`assign`).
    """

    def __init__(self, production: Scorer, challenger: Scorer, *, share: float, salt: str) -> None:
        if not 0.0 < share < 1.0:
            raise ConfigError(
                "the challenger share must be above 0 and below 1", context={"share": share}
            )
        self.production = production
        self.challenger = challenger
        self.share = share
        self.salt = salt
        self.name = production.name
        self.version = production.version

    def variant_of(self, key: str | None) -> Variant:
        """The variant of the record with ``key`` (production for no key)."""
        if key is None:
            return PRODUCTION
        return CHALLENGER if bucket(key, self.salt) < self.share else PRODUCTION

    def score_one(self, record: Mapping[str, Any], key: str | None = None) -> Score:
        """Score one record with its variant's model (production when ``key`` is None)."""
        if self.variant_of(key) == CHALLENGER:
            return self._with_variant(self.challenger.score_one(record), CHALLENGER)
        return self._with_variant(self.production.score_one(record), PRODUCTION)

    def score(
        self, records: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
    ) -> list[Score]:
        """Score a batch; one Score per record, in order (raises the first record's error)."""
        cols = self.score_columns(records, keys)
        failed = getattr(cols, "failed", None)
        if failed:
            raise failed[min(failed)]
        out: list[Score] = []
        for i, (value, grade, factors) in enumerate(
            zip(cols.values, cols.grades, cols.factors, strict=True)
        ):
            variant = cols.variant_at(i)
            model = self.challenger if variant == CHALLENGER else self.production
            out.append(
                Score.model_validate(
                    {
                        "value": value,
                        "grade": grade,
                        "top_factors": [{"feature": f, "contribution": c} for f, c in factors if c],
                        "model": model.name,
                        "model_version": cols.model_version_at(i),
                        "variant": variant,
                    }
                )
            )
        return out

    def score_columns(
        self, records: Sequence[Mapping[str, Any]], keys: Sequence[str] | None = None
    ) -> PartialScoreColumns:
        """Score a batch split by variant; the columns carry each row's variant and version.

        Raises:
            ScoringInputError: ``keys`` does not have one key per record.
        """
        n = len(records)
        if keys is None:
            return self._whole(self.production.score_columns(records), PRODUCTION)
        if len(keys) != n:
            raise ScoringInputError(
                "one key per record is needed", context={"records": n, "keys": len(keys)}
            )
        share, salt = self.share, self.salt
        picks = [i for i, key in enumerate(keys) if bucket(key, salt) < share]
        if not picks:
            return self._whole(self.production.score_columns(records), PRODUCTION)
        if len(picks) == n:
            return self._whole(self.challenger.score_columns(records), CHALLENGER)
        chosen = set(picks)
        rest = [i for i in range(n) if i not in chosen]
        prod = self.production.score_columns([records[i] for i in rest])
        chal = self.challenger.score_columns([records[i] for i in picks])
        values: list[float] = [0.0] * n
        grades: list[str] = [""] * n
        factors: list[list[tuple[str, float]]] = [[] for _ in range(n)]
        variants: list[str] = [PRODUCTION] * n
        versions: list[str] = [prod.model_version] * n
        both = prod.data_sufficient is not None and chal.data_sufficient is not None
        enough: list[bool] | None = [False] * n if both else None
        failed: dict[int, ScoringInputError] = {}
        for where, cols, variant in ((rest, prod, PRODUCTION), (picks, chal, CHALLENGER)):
            own_failed = getattr(cols, "failed", None) or {}
            for j, i in enumerate(where):
                values[i] = cols.values[j]
                grades[i] = cols.grades[j]
                factors[i] = cols.factors[j]
                variants[i] = variant
                versions[i] = cols.model_version_at(j)
                if enough is not None:
                    enough[i] = cols.data_sufficient[j]  # type: ignore[index]
                if j in own_failed:
                    failed[i] = own_failed[j]
        return PartialScoreColumns(
            values=values,
            grades=grades,
            factors=factors,
            model=prod.model,
            model_version=prod.model_version,
            variant=PRODUCTION,
            failed=dict(sorted(failed.items())),
            variants=variants,
            model_versions=versions,
            data_sufficient=enough,
        )

    @staticmethod
    def _whole(cols: ScoreColumns, variant: Variant) -> PartialScoreColumns:
        """One model scored the whole batch: its columns under ``variant``, batch-level."""
        return PartialScoreColumns(
            values=cols.values,
            grades=cols.grades,
            factors=cols.factors,
            model=cols.model,
            model_version=cols.model_version,
            variant=variant,
            failed=dict(getattr(cols, "failed", None) or {}),
            variants=cols.variants,
            model_versions=cols.model_versions,
            data_sufficient=cols.data_sufficient,
        )

    @staticmethod
    def _with_variant(score: Score, variant: Variant) -> Score:
        return score if score.variant == variant else score.model_copy(update={"variant": variant})


__all__ = ["CHALLENGER", "PRODUCTION", "ABScorer", "Variant", "assign", "bucket"]
