"""IMDb download: fetch the archive, verify its checksum, unpack it atomically; offline, say where to put the data.

The archive is a small tar.gz the test makes, served from a file:// URL.
"""

import pytest

from data_fixtures import make_aclimdb_archive
from seqlab.data.download import sha256_of
from seqlab.data.imdb import IMDBDataModule
from seqlab.data.tokenizers import WordTokenizer
from seqlab.errors import SeqlabError


@pytest.fixture
def served_archive(tmp_path, monkeypatch):
    archive = make_aclimdb_archive(tmp_path / "served" / "aclImdb_v1.tar.gz", per_folder=4)
    monkeypatch.setattr(IMDBDataModule, "URL", archive.as_uri())
    monkeypatch.setattr(IMDBDataModule, "SHA256", sha256_of(archive))
    return archive


def imdb(data_dir, **kwargs):
    return IMDBDataModule(data_dir=str(data_dir), tokenizer=WordTokenizer(), cache_dir=None, **kwargs)


def test_absent_data_is_downloaded_verified_and_unpacked(tmp_path, served_archive):
    data_dir = tmp_path / "data"
    datamodule = imdb(data_dir)
    datamodule.prepare_data()
    assert sorted(p.name for p in data_dir.iterdir()) == ["aclImdb"]  # no archive, no temporary folder left
    assert len(list((data_dir / "aclImdb" / "train" / "pos").glob("*.txt"))) == 4
    datamodule.setup()
    assert datamodule.split_sizes["data/test_size"] == 8
    imdb(data_dir).prepare_data()  # present: nothing fetched again
    assert sorted(p.name for p in data_dir.iterdir()) == ["aclImdb"]


def test_a_wrong_checksum_writes_nothing(tmp_path, served_archive, monkeypatch):
    monkeypatch.setattr(IMDBDataModule, "SHA256", "0" * 64)
    data_dir = tmp_path / "data"
    with pytest.raises(SeqlabError, match="has checksum .* expected 0000"):
        imdb(data_dir).prepare_data()
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_a_damaged_archive_leaves_no_half_unpacked_folder(tmp_path, served_archive, monkeypatch):
    damaged = served_archive.with_name("damaged.tar.gz")
    damaged.write_bytes(served_archive.read_bytes()[:-2000])
    monkeypatch.setattr(IMDBDataModule, "URL", damaged.as_uri())
    monkeypatch.setattr(IMDBDataModule, "SHA256", sha256_of(damaged))
    data_dir = tmp_path / "data"
    with pytest.raises(SeqlabError, match="cannot unpack"):
        imdb(data_dir).prepare_data()
    assert list(data_dir.iterdir()) == [], "no half-unpacked folder, no temporary files"


def test_an_archive_put_in_place_by_hand_is_verified_and_unpacked_offline(tmp_path, served_archive, monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "aclImdb_v1.tar.gz").write_bytes(served_archive.read_bytes())
    monkeypatch.setattr(IMDBDataModule, "URL", (tmp_path / "unreachable.tar.gz").as_uri())
    imdb(data_dir, download=False).prepare_data()
    assert sorted(p.name for p in data_dir.iterdir()) == ["aclImdb", "aclImdb_v1.tar.gz"]
    (data_dir / "aclImdb_v1.tar.gz").write_bytes(b"not the archive")
    (data_dir / "aclImdb").rename(data_dir / "moved")
    with pytest.raises(SeqlabError, match="wrong checksum"):
        imdb(data_dir).prepare_data()
    assert sorted(p.name for p in data_dir.iterdir()) == ["aclImdb_v1.tar.gz", "moved"]


def test_offline_says_where_to_put_the_data(tmp_path, monkeypatch):
    monkeypatch.setattr(IMDBDataModule, "URL", (tmp_path / "unreachable.tar.gz").as_uri())
    data_dir = tmp_path / "data"
    with pytest.raises(SeqlabError) as caught:
        imdb(data_dir).prepare_data()
    message = str(caught.value)
    assert "\n" not in message
    assert f"put the extracted aclImdb folder (train/ and test/, each with pos/ and neg/) at {data_dir / 'aclImdb'}" in message
    assert not (data_dir / "aclImdb").exists()
    with pytest.raises(SeqlabError, match="data.download=false"):
        imdb(data_dir, download=False).prepare_data()
