"""Any-to-any search: algebra, modes, fusion, filters against catalog ground truth, cutoff, captions."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from photoman.captions.edit import get_caption, set_caption
from photoman.captions.sources import clean, read_embedded, read_sidecar, xmp_description
from photoman.catalog.models import Photo
from photoman.config import Settings
from photoman.errors import BadInputError
from photoman.indexing.pipeline import index
from photoman.library import Library
from photoman.search.cutoff import adaptive_threshold
from photoman.search.engine import combine, search, term_vectors
from photoman.search.filters import build_filter
from photoman.search.query import Query, Term, parse_query
from photoman.vectors import CAPTION, IMAGE, point_id


def xmp_packet(text: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
        f'<rdf:li xml:lang="x-default">{text}</rdf:li></rdf:Alt></dc:description></rdf:Description>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


def with_iptc_caption(jpeg: bytes, caption: str) -> bytes:
    """Insert an APP13 Photoshop block with IPTC 2:120 (Caption/Abstract) after the JPEG's SOI."""
    data = caption.encode()
    record = b"\x1c\x02\x78" + len(data).to_bytes(2, "big") + data
    resource = b"8BIM" + (0x0404).to_bytes(2, "big") + b"\x00\x00" + len(record).to_bytes(4, "big") + record
    resource += b"\x00" * (len(record) % 2)
    payload = b"Photoshop 3.0\x00" + resource
    return jpeg[:2] + b"\xff\xed" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


# ---------- grammar, algebra, cutoff (pure) ----------


def test_query_grammar(photos_src: Path, tmp_path: Path) -> None:
    import os

    img = str(photos_src / "exif--test1.jpg")
    folder, fifo = tmp_path / "album.jpg", tmp_path / "pipe.jpg"  # named like photos, neither a file
    folder.mkdir()
    os.mkfifo(fifo)
    terms = parse_query(["beach", "+", "2:red car", "-", "0.5:people"])
    assert [(t.kind, t.value, t.weight, t.sign) for t in terms] == [
        ("text", "beach", 1.0, 1), ("text", "red car", 2.0, 1), ("text", "people", 0.5, -1)
    ]  # fmt: skip
    assert [t.value for t in parse_query(["beach + 'red car' - people"])] == ["beach", "red car", "people"]
    assert parse_query(["two", "dogs", "running"])[0].value == "two dogs running"
    mixed = parse_query(["sunset", "+", img])
    assert [t.kind for t in mixed] == ["text", "image"] and mixed[1].value == img
    stdin = parse_query(["-"], stdin=b"bytes")
    assert stdin[0].kind == "image" and stdin[0].data == b"bytes"
    for bad, words in (
        (["beach", "+"], "ends with an operator"),
        (["+", "beach"], "expected a term"),
        (["beach", "+", "+", "x"], "expected a term"),
        (["0:beach"], "weight must be positive"),
        (["beach", "+", "./missing.jpg"], "no such image"),
        (["beach", "+", str(folder)], "is a folder, not an image file"),
        (["beach", "+", str(fifo)], "not a regular file"),
        (["-"], "standard input"),
        (["  "], "empty query"),
    ):
        with pytest.raises(BadInputError, match=words):
            parse_query(bad)


def test_combination_is_a_normalised_signed_weighted_sum() -> None:
    v = np.eye(4, dtype=np.float32)
    terms = [Term("text", "a", 2.0, 1), Term("text", "b", 1.0, 1), Term("text", "c", 1.0, -1)]
    q, coef = combine(v[:3], terms)
    expected = np.array([2, 1, -1, 0]) / math.sqrt(6)
    assert np.allclose(q, expected) and np.allclose(
        coef, [2 / math.sqrt(6), 1 / math.sqrt(6), -1 / math.sqrt(6)]
    )
    with pytest.raises(BadInputError, match="cancel"):
        combine(np.stack([v[0], v[0]]), [Term("text", "a"), Term("text", "a", sign=-1)])


def test_adaptive_threshold_separates_standouts_per_kind() -> None:
    rng = np.random.default_rng(0)
    background = list(rng.normal(0.18, 0.015, 95))
    text_scores = sorted([0.31, 0.30, 0.29, *background], reverse=True)
    t = adaptive_threshold(text_scores, "text")
    assert sum(s >= t for s in text_scores) == 3
    flat = sorted(rng.normal(0.2, 0.01, 100), reverse=True)
    assert 1 <= sum(s >= adaptive_threshold(flat, "text") for s in flat) < 30
    image_scores = sorted([0.97, 0.86, 0.83, *rng.normal(0.5, 0.05, 97)], reverse=True)
    t_img = adaptive_threshold(image_scores, "image")
    assert sum(s >= t_img for s in image_scores) == 3  # 0.86 is within the image gap of 0.97
    assert adaptive_threshold(text_scores, "image") < t  # a wider gap for image queries
    assert adaptive_threshold([0.3, 0.2], "text") == float("-inf")


def test_caption_text_cleaning_and_xmp() -> None:
    assert clean("  A dog\x00 on the beach  ") == "A dog on the beach"
    for boiler in (
        "OLYMPUS DIGITAL CAMERA",
        "KONICA MINOLTA DIGITAL CAMERA",
        "SONY DSC",
        "DSC_0042",
        "(C) me",
    ):
        assert clean(boiler) is None
    assert xmp_description(xmp_packet("Harbour at dawn")) == "Harbour at dawn"
    assert xmp_description(b"<x:xmpmeta not xml") is None
    assert xmp_description(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>') is None


# ---------- captions from real files ----------


def test_caption_sources_read_from_real_files(tmp_path: Path, photos_src: Path) -> None:
    src = photos_src / "scikit-learn--china.jpg"
    img = Image.open(src)
    exif = Image.Exif()
    exif[0x010E] = "Pagoda on a green hill"
    img.save(tmp_path / "exif.jpg", exif=exif)
    user_comment = Image.Exif()
    user_comment.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00Temple above the lake"
    img.save(tmp_path / "comment.jpg", exif=user_comment)
    boiler = Image.Exif()
    boiler[0x010E] = "OLYMPUS DIGITAL CAMERA"
    img.save(tmp_path / "boiler.jpg", exif=boiler)
    img.save(tmp_path / "xmp.jpg", xmp=xmp_packet("Chinese pagoda by a lake"))
    (tmp_path / "iptc.jpg").write_bytes(with_iptc_caption(src.read_bytes(), "Pagoda, IPTC caption"))
    got = {p.name: read_embedded(Image.open(p)) for p in sorted(tmp_path.glob("*.jpg"))}
    assert got == {
        "boiler.jpg": None,
        "comment.jpg": "Temple above the lake",
        "exif.jpg": "Pagoda on a green hill",
        "iptc.jpg": "Pagoda, IPTC caption",
        "xmp.jpg": "Chinese pagoda by a lake",
    }
    (tmp_path / "xmp.xmp").write_bytes(xmp_packet("From the XMP sidecar"))
    assert read_sidecar(tmp_path / "xmp.jpg") == "From the XMP sidecar"
    (tmp_path / "xmp.jpg.txt").write_text("From the text sidecar\n")
    assert read_sidecar(tmp_path / "xmp.jpg") == "From the text sidecar"  # photo.jpg.txt comes first


def test_captions_are_indexed_edited_and_searched(settings: Settings, library_dir: Path) -> None:
    china = library_dir / "scikit-learn--china.jpg"
    exif = Image.Exif()
    exif[0x010E] = "Pagoda on a green hill"
    Image.open(china).save(china, exif=exif)  # embedded caption
    (library_dir / "scikit-image--coffee.png.txt").write_text("A cup of coffee on a red saucer")  # sidecar
    with Library(settings) as lib:
        index(lib, [library_dir])
        with lib.catalog.session() as s:
            caps = {Path(r.path).name: (r.caption, r.caption_source) for r in s.scalars(select(Photo))}
        assert caps["scikit-learn--china.jpg"] == ("Pagoda on a green hill", "embedded")
        assert caps["scikit-image--coffee.png"] == ("A cup of coffee on a red saucer", "sidecar")
        assert sum(1 for c, _ in caps.values() if c) == 2

        # text→caption: the exact caption finds its photo, with cosine ≈ 1
        q = Query(parse_query(["A cup of coffee on a red saucer"]), mode="text-caption", cutoff="none")
        res = search(lib, q)
        assert len(res) == 2 and res[0].path == str(library_dir / "scikit-image--coffee.png")
        assert res[0].score == pytest.approx(1.0, abs=1e-3) and res[0].caption.startswith("A cup")

        # a user caption wins, and re-embeds only the caption vector
        coffee_hash = next(r for r in res if r.path.endswith("coffee.png")).content_hash
        pid = point_id(coffee_hash, lib.model_id)
        before = lib.store.retrieve([pid], with_vectors=True)[0].vectors
        info = set_caption(lib, str(library_dir / "scikit-image--coffee.png"), "espresso in the morning")
        assert (info.caption, info.source) == ("espresso in the morning", "user")
        after = lib.store.retrieve([pid], with_vectors=True)[0].vectors
        assert np.array_equal(before[IMAGE], after[IMAGE]) and not np.allclose(
            before[CAPTION], after[CAPTION]
        )
        hit = search(
            lib, Query(parse_query(["espresso in the morning"]), mode="text-caption", cutoff="none")
        )[0]
        assert hit.path.endswith("coffee.png") and hit.score == pytest.approx(1.0, abs=1e-3)
        # re-indexing keeps the user's caption; --clear goes back to the sidecar
        index(lib, [library_dir])
        assert get_caption(lib, str(library_dir / "scikit-image--coffee.png")).source == "user"
        assert set_caption(lib, str(library_dir / "scikit-image--coffee.png"), None).source == "sidecar"

        # editing a sidecar is noticed on the next run and changes only the caption vector
        (library_dir / "scikit-image--coffee.png.txt").write_text("Latte art in a white cup")
        os.utime(library_dir / "scikit-image--coffee.png.txt", (2e9, 2e9))
        rep = index(lib, [library_dir])
        assert rep.embedded == 0 and rep.reused == 1
        assert (
            get_caption(lib, str(library_dir / "scikit-image--coffee.png")).caption
            == "Latte art in a white cup"
        )
        assert np.array_equal(lib.store.retrieve([pid], with_vectors=True)[0].vectors[IMAGE], before[IMAGE])

        # image→caption ranks captioned photos by image·caption similarity; photos without captions are absent
        image_q = Query(parse_query([str(library_dir / "scikit-image--chelsea.png")]), mode="image-caption",
                        cutoff="none")  # fmt: skip
        got = search(lib, image_q)
        qv = term_vectors(lib, image_q.terms)[0]
        ids = {r.path: point_id(r.content_hash, lib.model_id) for r in got}
        vecs = {p.id: p.vectors[CAPTION] for p in lib.store.retrieve(list(ids.values()), with_vectors=True)}
        assert len(got) == 2
        assert [r.path for r in got] == sorted(ids, key=lambda p: -float(qv @ vecs[ids[p]]))

        # all: both vectors, fused by reciprocal rank of the two rankings
        words = ["Latte art in a white cup"]
        both = search(lib, Query(parse_query(words), mode="all", cutoff="none", limit=5))
        by_image = [
            r.path for r in search(lib, Query(parse_query(words), mode="text-image", cutoff="none", limit=50))
        ]
        by_caption = [
            r.path for r in search(lib, Query(parse_query(words), mode="text-caption", cutoff="none"))
        ]

        def rrf(path: str) -> float:
            return sum(
                1 / (60 + ranking.index(path) + 1) for ranking in (by_image, by_caption) if path in ranking
            )

        assert [r.path for r in both] == sorted(set(by_image) | set(by_caption), key=rrf, reverse=True)[:5]
        with pytest.raises(BadInputError, match="needs an image term"):
            search(lib, Query(parse_query(["text only"]), mode="image-caption"))


# ---------- filters against ground truth ----------


def _truth(rows: list[Photo], pred) -> set[str]:  # noqa: ANN001
    return {r.path for r in rows if pred(r)}


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def test_filters_match_catalog_ground_truth(settings: Settings, library_dir: Path, photos_src: Path) -> None:
    shutil.copy(photos_src / "exif--sony-alpha-6000.jpg", library_dir / "trips" / "paris.jpg")  # MPO
    with Library(settings) as lib:
        index(lib, [library_dir])
        with lib.catalog.session() as s:
            rows = list(s.scalars(select(Photo)))

        def when(r: Photo) -> datetime:
            return r.taken_at or datetime.fromtimestamp(r.mtime)

        cases = {
            "since 2008 until 2013-12": (
                build_filter(since="2008", until="2013-12"),
                lambda r: datetime(2008, 1, 1) <= when(r) <= datetime(2013, 12, 31, 23, 59, 59),
            ),
            "camera canon": (build_filter(camera="canon"), lambda r: "canon" in (r.camera or "").lower()),
            "camera iphone 4s": (build_filter(camera="iPhone 4S"), lambda r: r.camera == "Apple iPhone 4S"),
            "in trips": (
                build_filter(folder=str(library_dir / "trips")),
                lambda r: r.path.startswith(str(library_dir / "trips") + "/"),
            ),
            "format png": (build_filter(formats=["png"]), lambda r: r.format == "PNG"),
            "format jpeg (incl. MPO)": (build_filter(formats=["jpg"]), lambda r: r.format in ("JPEG", "MPO")),
            "near San Francisco bay 50 km": (
                build_filter(near="37.8,-122.4", radius_km=50),
                lambda r: r.gps_lat is not None and _km(37.8, -122.4, r.gps_lat, r.gps_lon) <= 50,
            ),
            "near Denmark 2000 km": (
                build_filter(near="55.0,8.5", radius_km=2000),
                lambda r: r.gps_lat is not None and _km(55.0, 8.5, r.gps_lat, r.gps_lon) <= 2000,
            ),
        }
        for name, (flt, pred) in cases.items():
            expected = _truth(rows, pred)
            assert expected, name  # every case selects something real
            res = search(lib, Query(parse_query(["a photo"]), limit=100, filters=flt, cutoff="none"))
            assert {r.path for r in res} == expected, name
        # date sort applies after the cut, newest first
        res = search(lib, Query(parse_query(["a photo"]), limit=100, cutoff="none", sort="date"))
        dates = [r.taken_at or datetime.fromtimestamp(r.mtime) for r in res]
        assert dates == sorted(dates, reverse=True) and [r.rank for r in res] == list(range(1, len(res) + 1))
        with pytest.raises(BadInputError, match="not inside the library"):
            search(lib, Query(parse_query(["x"]), filters=build_filter(folder="/elsewhere")))


def test_search_and_dupes_answer_throughout_a_store_upgrade(settings: Settings, library_dir: Path) -> None:
    """A store an older photoman wrote names the content hash "hash" (payload format 1). While some of
    its points still do (a shared server another machine is upgrading, an upgrade a full disk put off)
    search and dupes find every photo, copies folded as before; reopened, the library's store renames
    the key on every point and answers the same."""
    import qdrant_edge as qe

    from photoman.dupes import find_duplicates
    from photoman.vectors.edge import FORMAT_FILE

    shutil.copy(library_dir / "scikit-image--chelsea.png", library_dir / "trips" / "chelsea-copy.png")
    q = Query(parse_query(["a photo"]), limit=100, cutoff="none")
    with Library(settings) as lib:
        index(lib, [library_dir])
        before = [(r.path, r.duplicates) for r in search(lib, q)]
        groups = find_duplicates(lib, rotations=False)
        ids = sorted(lib.store.all_ids())
        assert len(before) == len(ids) and any(dupes for _, dupes in before) and groups
        old = ids[::2]  # half the points back to format 1
        for pt in lib.store.retrieve(old):
            lib.store.set_payload([pt.id], {"hash": pt.payload["content_hash"]})
        lib.store.live._shard.update(qe.UpdateOperation.delete_payload(old, ["content_hash"]))  # type: ignore[attr-defined]
        assert sorted(pt.id for pt in lib.store.retrieve(ids) if "hash" in pt.payload) == old
        assert [(r.path, r.duplicates) for r in search(lib, q)] == before
        assert find_duplicates(lib, rotations=False) == groups
        shard = lib.store.live.path  # type: ignore[attr-defined]
    (shard / FORMAT_FILE).unlink()  # as an older photoman left it: no format recorded
    with Library(settings) as lib:
        payloads = [pt.payload for pt in lib.store.retrieve(ids)]
        assert len(payloads) == len(ids) and all("content_hash" in p and "hash" not in p for p in payloads)
        assert [(r.path, r.duplicates) for r in search(lib, q)] == before
        assert find_duplicates(lib, rotations=False) == groups


def test_explain_contributions_sum_to_the_score(settings: Settings, library_dir: Path) -> None:
    with Library(settings) as lib:
        index(lib, [library_dir])
        chelsea = str(library_dir / "scikit-image--chelsea.png")
        q = Query(parse_query(["2:a cat", "+", chelsea, "-", "a dog"]), cutoff="none", explain=True, limit=5)
        res = search(lib, q)
        for r in res:
            parts = [e["contribution"] for e in r.explain]
            assert len(parts) == 3 and sum(parts) == pytest.approx(r.score, abs=1e-4)
        assert res[0].explain[0]["term"] == '+2:"a cat"'


# ---------- the CLI ----------


def run_cli(env: Settings, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    e = {
        **os.environ,
        "PHOTOMAN_DATA_DIR": str(env.data_dir),
        "PHOTOMAN_MODEL": env.model,
        "PHOTOMAN_RUNTIME_DIR": str(env.data_dir / "run"),
    }
    return subprocess.run([sys.executable, "-m", "photoman", *args], env=e, input=stdin, capture_output=True)


def test_cli_search_outputs_and_errors(
    cli_env: Settings, library_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real processes, as a shell runs them; the first `find` starts the daemon, the rest use it."""
    assert run_cli(cli_env, "index", str(library_dir)).returncode == 0
    monkeypatch.setenv("PHOTOMAN_AUTOSTART", "1")
    monkeypatch.setenv("PHOTOMAN_RUNTIME_DIR", str(cli_env.data_dir / "run"))  # in-process calls: same daemon
    try:
        _search_outputs_and_errors(cli_env, library_dir)
    finally:
        run_cli(cli_env, "stop")


def _search_outputs_and_errors(cli_env: Settings, library_dir: Path) -> None:
    chelsea = library_dir / "scikit-image--chelsea.png"
    nul = run_cli(cli_env, "find", "--image", "-", "-0", "--all", "-n", "3", stdin=chelsea.read_bytes())
    paths = nul.stdout.decode().split("\0")
    assert nul.returncode == 0 and paths[-1] == "" and paths[0] == str(chelsea) and len(paths) == 4
    nd = run_cli(
        cli_env, "find", "a red", "saucer", "+", str(chelsea), "--ndjson", "--all", "-n", "4", "--explain"
    )
    lines = [json.loads(x) for x in nd.stdout.decode().splitlines()]
    assert len(lines) == 4 and all(len(x["explain"]) == 2 for x in lines)
    assert lines[0]["explain"][0]["term"] == '+1:"a red saucer"'
    table = run_cli(cli_env, "find", "a cat", "--explain", "--all", "-n", "2", "--sort", "date")
    assert table.returncode == 0 and b'= +1:"a cat"' in table.stdout
    for args, words in (
        (["find", "beach", "+"], "ends with an operator"),
        (["find", "cat", "--since", "2023-02-30"], "not a real date"),
        (["find", "cat", "--since", "2024", "--until", "2020"], "nothing can match"),
        (["find", "cat", "--mode", "sideways"], "unknown mode"),
        (["find", "cat", "--format", "psd"], "unknown format"),
        (["find", "cat", "--near", "91,0"], "off the globe"),
        (["find", "cat", "--in", "/somewhere/else"], "not inside the library"),
        (["find", "cat", "--all", "--threshold", "0.3"], "contradict"),
        (["caption", str(library_dir / "nope.jpg"), "x"], "not in the library"),
    ):  # in-process (the same code as a process; the processes above and below cover the process)
        from typer.testing import CliRunner

        from photoman.cli import app

        res = CliRunner().invoke(app, args)
        err = res.stderr.strip()
        assert res.exit_code != 0 and err.count("\n") == 0 and words in err, (args, err)
        assert "Traceback" not in err and res.exception is None or isinstance(res.exception, SystemExit)
    usage = run_cli(cli_env, "find", "cat", "--colour", "red")  # click's usage errors: main() words them
    err = usage.stderr.decode().strip()
    assert usage.returncode == 2 and err.count("\n") == 0 and "No such option" in err, err
    cap = run_cli(cli_env, "caption", str(chelsea), "a tabby cat looking up")
    assert cap.returncode == 0 and b"a tabby cat looking up  [user]" in cap.stdout
    shown = json.loads(run_cli(cli_env, "caption", str(chelsea), "--json").stdout)
    assert shown == {"path": str(chelsea), "caption": "a tabby cat looking up", "source": "user"}
    hit = run_cli(cli_env, "find", "a tabby cat looking up", "--mode", "text-caption", "--json")
    assert json.loads(hit.stdout)[0]["path"] == str(chelsea)


def test_stdin_is_read_only_for_a_lone_dash_where_a_term_goes() -> None:
    """`-` between two terms is the minus operator; only `-` as a whole word in term position is stdin."""
    from photoman.search.query import needs_stdin

    assert not needs_stdin(["beach", "+", "./sunset.jpg", "-", "people"])
    assert not needs_stdin(["2:red car", "-", "blurry"])
    assert not needs_stdin(["beach + ./sunset.jpg - people"])
    assert needs_stdin(["-"]) and needs_stdin(["-", "+", "cat"]) and needs_stdin(["cat", "-", "-"])
    assert needs_stdin([], ["-"])
    terms = parse_query(["cat", "-", "-"], stdin=b"img")
    assert [(t.kind, t.sign) for t in terms] == [("text", 1), ("image", -1)]
    for bad, words in (
        (["cat + "], "ends with an operator"),
        (["cat", "+ "], "ends with an operator"),
        (["2:"], "has no term after it"),
        (["cat", "+", "3:"], "has no term after it"),
        (["nan:cat"], "finite"),
        (["inf:dog"], "finite"),
        (["- people"], "expected a term"),
    ):
        with pytest.raises(BadInputError, match=words):
            parse_query(bad)


def test_documented_algebra_examples_run_without_stdin(cli_env: Settings, library_dir: Path) -> None:
    """The README's `find beach + ./sunset.jpg - people` and `"2:red car" - blurry` never wait for stdin."""
    assert run_cli(cli_env, "index", str(library_dir)).returncode == 0
    e = {**os.environ, "PHOTOMAN_DATA_DIR": str(cli_env.data_dir), "PHOTOMAN_MODEL": cli_env.model}
    shutil.copy(library_dir / "scikit-image--coffee.png", library_dir / "sunset.jpg")  # a PNG named .jpg
    for args in (["beach", "+", "./sunset.jpg", "-", "people"], ["2:red car", "-", "blurry"]):
        cmd = [sys.executable, "-m", "photoman", "find", *args, "--all"]
        proc = subprocess.run(
            cmd, cwd=library_dir, env=e, stdin=subprocess.DEVNULL, capture_output=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr


def test_explicit_images_tags_and_empty_libraries_say_what_is_wrong(
    cli_env: Settings, library_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from photoman.cli import app

    def run(*args: str):  # noqa: ANN202
        return CliRunner().invoke(app, list(args))

    res = run("find", "cat")  # nothing indexed yet
    assert res.exit_code == 1 and "library is empty" in res.stderr and "photoman index" in res.stderr
    assert run("index", str(library_dir)).exit_code == 0
    noext = tmp_path / "photo_without_extension"
    noext.write_bytes((library_dir / "scikit-image--chelsea.png").read_bytes())
    hit = run("find", "--image", str(noext), "--json", "-n", "1")
    assert hit.exit_code == 0 and json.loads(hit.stdout)[0]["path"].endswith("chelsea.png")
    for args, code, words in (
        (["find", "--image", "/etc/passwd"], 2, "not a readable image"),
        (["find", "--image", str(tmp_path)], 2, "is a folder"),
        (["find", "cat", "--tag", "zebra"], 2, "no photo has tags yet"),
        (["find", "cat", "--radius", "nan", "--near", "1,1"], 2, "--radius"),
        # given but empty: a mistake (they ran unfiltered), as an empty --format or --in already was
        (["find", "cat", "--since", ""], 2, "--since"),
        (["find", "cat", "--until", " "], 2, "--until"),
        (["find", "cat", "--camera", ""], 2, "--camera"),
        (["find", "cat", "--tag", ""], 2, "--tag"),
        (["find", "cat", "--near", ""], 2, "--near"),
    ):
        res = run(*args)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.exit_code == code and len(lines) == 1 and words in lines[0], (args, res.stderr)


def test_in_folder_prints_the_copy_inside_it_and_file_dates_are_marked(
    cli_env: Settings, library_dir: Path
) -> None:
    from typer.testing import CliRunner

    from photoman.cli import app

    copy_dir = library_dir / "zz-copies"
    copy_dir.mkdir()
    shutil.copy(library_dir / "scikit-image--chelsea.png", copy_dir / "chelsea-copy.png")
    assert CliRunner().invoke(app, ["index", str(library_dir)]).exit_code == 0
    query = ["find", "--image", str(copy_dir / "chelsea-copy.png")]
    res = CliRunner().invoke(app, [*query, "--in", str(copy_dir), "--json", "--all"])
    data = json.loads(res.stdout)
    assert [d["path"] for d in data] == [str(copy_dir / "chelsea-copy.png")]
    assert data[0]["duplicates"] == [str(library_dir / "scikit-image--chelsea.png")]
    table = CliRunner().invoke(app, ["find", "--image", str(copy_dir / "chelsea-copy.png"), "-n", "1"])
    assert data[0]["taken_at"] is None and data[0]["file_time"]
    assert re.search(r"\d{4}-\d\d-\d\d \(file\)", table.stdout)  # the file date, marked as such
