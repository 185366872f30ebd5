"""Tagging schemes: IO, IOB1, IOB2 (BIO) and BIOES (IOBES; BILOU's L-/U- are read as E-/S-).

Detection, validation with the line of the first bad tag, and conversion. Conversion goes through
entity spans, so it is exact except that IO cannot separate two adjacent entities of one type.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from bertcli.errors import DataError, UsageError
from bertcli.tasks.ner.sentence import Sentence

SCHEMES = {
    "IO": "IO",
    "BIO": "IOB2",
    "IOB2": "IOB2",
    "IOB1": "IOB1",
    "BIOES": "BIOES",
    "IOBES": "BIOES",
    "BILOU": "BIOES",
}


def normalize_scheme(name: str) -> str:
    canonical = SCHEMES.get(name.upper().replace("-", ""))
    if canonical is None:
        raise UsageError(f"unknown --scheme {name!r}", hint="choose IO, BIO (IOB2), IOB1 or BIOES")
    return canonical


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first word, end word exclusive) for each entity, read conlleval-style as seqeval does."""
    from seqeval.metrics.sequence_labeling import get_entities

    return [(label, start, end + 1) for label, start, end in get_entities(list(tags))]


def tags_from_entities(spans: list[tuple[str, int, int]], length: int, scheme: str) -> list[str]:
    tags = ["O"] * length
    previous: tuple[str, int, int] | None = None
    for label, start, end in spans:
        if scheme == "IO":
            tags[start:end] = [f"I-{label}"] * (end - start)
        elif scheme == "IOB1":
            touching = previous is not None and previous[0] == label and previous[2] == start
            tags[start:end] = [f"{'B' if touching else 'I'}-{label}"] + [f"I-{label}"] * (end - start - 1)
        elif scheme == "IOB2":
            tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
        elif end - start == 1:
            tags[start] = f"S-{label}"
        else:
            tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 2) + [f"E-{label}"]
        previous = (label, start, end)
    return tags


def convert(tags: list[str], scheme: str) -> list[str]:
    """The same entities written in another scheme."""
    return tags_from_entities(entities(tags), len(tags), scheme)


def in_scheme(sentences: Sequence[Sentence], source_scheme: str, scheme: str) -> list[list[str]]:
    """The sentences' tags written in `scheme`."""
    return [s.tags if source_scheme == scheme else convert(s.tags, scheme) for s in sentences]


def label_names(types: Iterable[str], scheme: str) -> list[str]:
    """O first, then every prefix the scheme uses for every type (a type seen only as B- still gets I-)."""
    prefixes = {"IO": "I", "IOB1": "BI", "IOB2": "BI", "BIOES": "BIES"}[scheme]
    return ["O", *(f"{p}-{t}" for t in sorted(set(types)) for p in prefixes)]


def detect_scheme(sentences: Sequence[Sentence]) -> str:
    """BIOES if E-/S- occur; IOB2 if every entity opens with B-; IOB1 if B- only splits same-type neighbours; else IO."""
    prefixes = {t[0] for s in sentences for t in s.tags or [] if t != "O"}
    if prefixes & {"E", "S"}:
        return "BIOES"
    if "B" not in prefixes:
        return "IO" if prefixes else "IOB2"
    opens_with_i = any(_opens_with_i(s.tags, i) for s in sentences for i in range(len(s.tags or [])))
    if not opens_with_i:
        return "IOB2"
    b_after_other = any(
        t.startswith("B-") and (i == 0 or s.tags[i - 1][2:] != t[2:])
        for s in sentences
        for i, t in enumerate(s.tags or [])
    )
    return "IOB2" if b_after_other else "IOB1"  # mixed use: IOB2, and validation names the offending line


def _opens_with_i(tags: list[str], i: int) -> bool:
    return tags[i].startswith("I-") and (i == 0 or tags[i - 1] == "O" or tags[i - 1][2:] != tags[i][2:])


def validate_scheme(sentences: Sequence[Sentence], scheme: str, source: str) -> None:
    """Raise on the first tag the scheme does not allow, with its line."""
    for sentence in sentences:
        problem = next(((i, p) for i, p in enumerate(_problems(sentence.tags or [], scheme)) if p), None)
        if problem is not None:
            index, message = problem
            raise DataError(
                f"{message} (word {sentence.words[index]!r})",
                file=source,
                line=sentence.line_of(index),
                hint=f"the tags were read as {scheme}; fix the tag, or pass --scheme with the file's scheme",
            )


def _problems(tags: list[str], scheme: str) -> Iterator[str | None]:
    allowed = {"IO": "I", "IOB1": "BI", "IOB2": "BI", "BIOES": "BIES"}[scheme]
    for i, tag in enumerate(tags):
        prev = tags[i - 1] if i else "O"
        prefix, label = tag[0], tag[2:]
        continues = prev != "O" and prev[2:] == label
        if tag == "O":
            open_bioes = scheme == "BIOES" and prev[0] in "BI"
            yield f"{prev} is not closed with E-{prev[2:]} before O" if open_bioes else None
        elif prefix not in allowed:
            yield f"{prefix}- tags do not exist in {scheme}"
        elif scheme == "IOB2" and prefix == "I" and not continues:
            yield f"{tag} does not continue an entity (IOB2 starts every entity with B-{label})"
        elif scheme == "IOB1" and prefix == "B" and not continues:
            yield f"{tag} follows no {label} entity (IOB1 uses B- only between two adjacent {label} entities)"
        elif scheme == "BIOES" and prefix in "IE" and not (continues and prev[0] in "BI"):
            yield f"{tag} does not continue a B-{label}/I-{label} entity"
        elif scheme == "BIOES" and prefix in "BS" and prev[0] in "BI":
            yield f"{prev} is not closed with E-{prev[2:]} before {tag}"
        elif scheme == "BIOES" and prefix in "BI" and i == len(tags) - 1:
            yield f"{tag} ends the sentence without E-{label}"
        else:
            yield None
