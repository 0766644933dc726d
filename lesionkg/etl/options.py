"""What an import may use besides its inputs: :class:`EtlOptions`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lesionkg.core.limits import DEFAULT_LIMITS, InputLimits
from lesionkg.core.matching import MatchConfig
from lesionkg.db.retry import RetryPolicy


@dataclass(frozen=True)
class EtlOptions:
    """What an import may use besides its inputs.

    ``images``: more folders of CT images that reports may reference; ``model_dir``: a trained
    triplet network (embeds every lesion with an image); ``ssbr_dir``: a trained body-part
    regression model (gives z of lesions without a location); ``secret_path``: the
    pseudonymisation key file (default ``$LESIONKG_HOME/pseudonym.key``, created when missing);
    ``k``: SIMILAR_TO edges per new lesion and space; ``index_dir``: where the hnswlib indexes
    live (default ``$LESIONKG_HOME/index/DATABASE``, shared with ``lesionkg link``);
    ``limits``: what the readers accept (``--limit NAME=VALUE``, ``docs/input-limits.md``).
    ``image_store``: where the key slices read are kept as pixel-only PNGs by lesion id, for the
    explorer (default ``$LESIONKG_HOME/images``, :mod:`lesionkg.etl.image_store`).
    """

    allow_missing_images: bool = False
    images: tuple[Path, ...] = ()
    model_dir: Path | None = None
    ssbr_dir: Path | None = None
    secret_path: Path | None = None
    k: int = 10
    index_dir: Path | None = None
    image_store: Path | None = None
    device: str = "cpu"
    #: apply a re-import's changed values (type, location, window, series; sex, age) instead of
    #: refusing its file
    update: bool = False
    #: bookmarks per transaction at most (see :meth:`lesionkg.etl.importer.Importer.import_files`)
    batch_bookmarks: int = 500
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    matching: MatchConfig = field(default_factory=MatchConfig)
    #: limits on hostile input and plausibility bounds, passed to every reader
    limits: InputLimits = DEFAULT_LIMITS
