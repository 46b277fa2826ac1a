import hashlib
import zipfile

import pytest

from mtrec.config import DataConfig
from mtrec.data.movielens import load_movielens
from mtrec.errors import ChecksumMismatch, DataSourceError


def test_bundled_counts_match_the_release(canonical) -> None:
    # Counts stated in the release's README.txt.
    assert len(canonical.interactions) == 100_836
    assert canonical.interactions["user"].nunique() == 610
    assert len(canonical.items) == 9_742
    assert canonical.rating_scale == (0.5, 5.0)


def test_items_carry_genres_year_and_tag_text(canonical) -> None:
    toy_story = canonical.items.set_index("item").loc[1]
    assert list(toy_story["categories"]) == [
        "Adventure",
        "Animation",
        "Children",
        "Comedy",
        "Fantasy",
    ]
    assert toy_story["year"] == 1995
    assert toy_story["text"].startswith("Toy Story")
    assert "pixar" in toy_story["text"]  # from tags.csv
    assert (canonical.interactions["like"] == (canonical.interactions["rating"] >= 4)).all()


def _ml1m_zip(tmp_path):
    """A small archive in the exact ML-1M layout (``::``-separated, latin-1)."""
    folder = tmp_path / "src" / "ml-1m"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text(
        "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n"
    )
    (folder / "movies.dat").write_bytes(
        "10::Amélie (2001)::Comedy|Romance\n20::Toy Story (1995)::Animation|Children's\n".encode(
            "latin-1"
        )
    )
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in folder.iterdir():
            zf.write(f, f"ml-1m/{f.name}")
    return archive, hashlib.sha256(archive.read_bytes()).hexdigest()


def test_download_path_verifies_and_reads_ml1m(tmp_path) -> None:
    archive, digest = _ml1m_zip(tmp_path)
    cfg = DataConfig(
        dataset="ml-1m",
        url=archive.as_uri(),
        sha256=digest,
        download_dir=str(tmp_path / "downloads"),
    )
    tables = load_movielens(cfg)
    assert len(tables.interactions) == 3
    assert tables.rating_scale == (1.0, 5.0)
    assert tables.items.set_index("item").loc[10, "title"] == "Amélie (2001)"


def test_checksum_mismatch_deletes_the_download(tmp_path) -> None:
    archive, _ = _ml1m_zip(tmp_path)
    downloads = tmp_path / "downloads"
    cfg = DataConfig(
        dataset="ml-1m", url=archive.as_uri(), sha256="0" * 64, download_dir=str(downloads)
    )
    with pytest.raises(ChecksumMismatch, match="does not match"):
        load_movielens(cfg)
    assert not (downloads / "ml-1m.zip").exists()


def test_ml25m_needs_a_user_supplied_checksum(tmp_path) -> None:
    with pytest.raises(DataSourceError, match=r"data\.sha256"):
        load_movielens(DataConfig(dataset="ml-25m", download_dir=str(tmp_path)))
