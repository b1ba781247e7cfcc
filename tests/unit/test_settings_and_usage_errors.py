"""Every setting is validated with the same one-line error, a broken config file names itself and
its line, and every CLI usage error is one line and exit 2 (the same as any error a user causes)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgrag.cli import app
from imgrag.indexing.config import get_settings
from imgrag.indexing.errors import ImgragError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for k in list(os.environ):
        if k.startswith("IMGRAG_") and not k.startswith("IMGRAG_TEST"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("IMGRAG_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)  # no ./imgrag.toml from elsewhere
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        ("MAX_K", "0", "greater than or equal to 1"),
        ("MAX_K", "-5", "greater than or equal to 1"),
        ("MAX_K", "99999999999999999999999", "less than or equal to 10000"),  # reached LanceDB as a C integer
        ("LLM_TIMEOUT", "1e23", "less than or equal to 86400"),  # beyond time_t: OverflowError at the first call
        ("ES_REQUEST_TIMEOUT", "1e23", "less than or equal to 86400"),
        ("ES_SHARDS", "5000", "less than or equal to 1024"),  # refused by Elasticsearch only at the first write
        ("MAX_PIXELS", "-1", "greater than or equal to 1"),
        ("MAX_FILE_MB", "-1", "greater than or equal to 1"),
        ("MAX_PAGES", "0", "greater than or equal to 1"),
        ("RRF_K", "-1", "greater than or equal to 0"),
        ("WEIGHT_IMAGE", "nan", "finite number"),
        ("WEIGHT_BM25", "inf", "finite number"),
        ("WEIGHT_TEXT_VECTOR", "-0.5", "greater than or equal to 0"),
        ("WEIGHT_REGION", "NaN", "finite number"),
        ("REGION_RERANK", "-inf", "finite number"),
        ("STANDOUT_Z", "nan", "finite number"),
        ("WORKERS", "0", "greater than or equal to 1"),
        # session 10's settings
        ("WRITE_AHEAD", "maybe", "valid boolean"),
        ("LANCE_COMPACT_FRAGMENTS", "-1", "greater than or equal to 0"),
        ("ES_MERGE_WAIT_S", "nan", "finite number"),
        ("ES_MERGE_MIN_PAGES", "0", "greater than or equal to 1"),
        ("ES_MERGE_SEGMENTS", "-1", "greater than or equal to 0"),
        ("ES_NUM_CANDIDATES", "10001", "less than or equal to 10000"),
        ("ES_REGION_NUM_CANDIDATES", "0", "greater than or equal to 1"),
        ("REGION_TEXT_TOKENS", "8", "greater than or equal to 16"),
        ("IMAGE_BACKBONE", "lite1", "'lite0' or 'lite2'"),
        ("IMAGE_FRAMING", "center", "'centre', 'content' or 'auto'"),
        # session 12's
        ("EXEMPLAR_WEIGHT", "-0.01", "greater than or equal to 0"),
        ("EXEMPLAR_WEIGHT", "nan", "finite number"),
        # session 13's
        ("IMAGE_QUERY_TRANSLATION", "-1", "greater than or equal to 0"),
        ("IMAGE_QUERY_TRANSLATION", "11", "less than or equal to 10"),
        # session 14's: 100000 retries of a 30 s request against a stuck cluster is a month
        ("ES_MAX_RETRIES", "101", "less than or equal to 100"),
    ],
)
def test_nonsense_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str, why: str) -> None:
    monkeypatch.setenv(f"IMGRAG_{name}", value)
    with pytest.raises(ImgragError) as e:
        get_settings()
    text = str(e.value)
    assert f"IMGRAG_{name}={value!r}" in text and why in text and "\n" not in text


def test_valid_edge_values_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGRAG_RRF_K", "0")
    monkeypatch.setenv("IMGRAG_WEIGHT_IMAGE", "0")
    monkeypatch.setenv("IMGRAG_MAX_PAGES", "5")
    s = get_settings()
    assert (s.rrf_k, s.weight_image, s.max_pages) == (0, 0.0, 5)


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("workers = 2\nmax_k = [1,,2]\nbatch_size = 4\n", r"is not valid TOML: .*line 2"),
        ("workers = 2\nmax_k = [\n", r"is not valid TOML: .*end of document"),
        ("workers = 2\nmax_k = 'a' 'b'\n", r"is not valid TOML: .*line 2"),
        (b"\xff\xfe not utf-8", r"is not valid TOML"),
        ("max_pixel = 5\n", r"unknown setting\(s\) 'max_pixel' \(did you mean 'max_pixels'\?\)"),
        ("max_k = 0\n", r"IMGRAG_MAX_K=0: Input should be greater than or equal to 1"),
    ],
)
def test_a_broken_config_file_is_one_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes, expect: str
) -> None:
    toml = tmp_path / "imgrag.toml"  # found in the current folder
    toml.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ImgragError, match=expect) as e:
        get_settings()
    assert "\n" not in str(e.value)
    if "TOML" in expect or "unknown" in expect:
        assert str(toml) in str(e.value)


def test_imgrag_config_must_exist_and_be_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGRAG_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ImgragError, match="nope.toml does not exist"):
        get_settings()
    get_settings.cache_clear()
    monkeypatch.setenv("IMGRAG_CONFIG", str(tmp_path))
    with pytest.raises(ImgragError, match="is not a regular file"):
        get_settings()


def one_line_exit_2(result: object) -> str:
    out = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, (result.exit_code, out)  # type: ignore[attr-defined]
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    assert "Usage:" not in out and "╭" not in out and "Traceback" not in out
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["search", "x", "-k", "0"], "'-k': Input should be greater than or equal to 1 — see `imgrag search --help`"),
        (["index", "--workers", "0", "."], "'--workers': Input should be greater than or equal to 1"),
        (["index", "--batch-size", "999", "."], "'--batch-size'"),
        (["rollback", "abc"], "Invalid value for 'version'"),
        (["index"], "Missing argument"),
        (["search", "x", "--nope"], "No such option: --nope"),
        (["serach", "x"], "No such command 'serach'"),
        (["search", "x", "--filter", "seal=maybe"], "--filter seal=maybe is not true or false"),
        (["search", "x", "--filter", "quality=bogus"], "bad --filter quality='bogus'"),
        (["search", "x", "--filter", "year=soon"], "--filter year=soon"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], expect: str) -> None:
    line = one_line_exit_2(CliRunner().invoke(app, args, prog_name="imgrag"))
    assert expect in line


def test_a_bad_setting_stops_every_command_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "imgrag.toml").write_text("max_k = [\n")
    for args in (["stats"], ["serve"], ["versions"], ["search", "x"]):
        line = one_line_exit_2(CliRunner().invoke(app, args, prog_name="imgrag"))
        assert "imgrag.toml is not valid TOML" in line


def test_help_still_works() -> None:
    result = CliRunner().invoke(app, ["rollback", "--help"], prog_name="imgrag")
    assert result.exit_code == 0 and "version" in result.output


def test_the_real_entry_point_prints_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")} | {"IMGRAG_HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "imgrag", "rollback", "abc"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: Invalid value for 'version'")


class _Interrupted:
    """A facade whose indexing writes 3 pages and is then stopped (Ctrl-C, or SIGTERM to the process)."""

    def __init__(self, how: str) -> None:
        self.how = how

    def index(self, paths: list[str], opts: object, progress: object) -> object:
        import signal

        progress("start", {"files": 9})  # type: ignore[operator]
        progress("written", {"count": 3})  # type: ignore[operator]
        if self.how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_interrupted_index_says_what_it_kept_in_one_line(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Ctrl-C (and SIGTERM, which stops a write the same way) used to end `imgrag index` silently
    with 130; now one line says the pages written are kept as a version and a re-run resumes."""
    import signal

    import imgrag.cli.index as cli_index

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(cli_index, "facade", lambda: _Interrupted(how))
    result = CliRunner().invoke(app, ["index", "."], prog_name="imgrag")
    assert result.exit_code == 130, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: the 3 page(s) written") and "run the same command again" in lines[0]
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is the index command's alone


def test_an_empty_transfer_memory_is_the_shipped_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """IMGRAG_TRANSFER_MEMORY= (an env file's empty line) was Path('.'): "transfer memory . not
    found" for the transfer embedder, and another eval index key; it is unset, like the LLM settings."""
    monkeypatch.setenv("IMGRAG_TRANSFER_MEMORY", "")
    assert get_settings().transfer_memory is None


def _stopped(*args: object, **kwargs: object) -> object:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("args", "target", "says"),
    [
        (["eval", "retrieval", "--set", "contracts"], "imgrag.evals.runner.run_retrieval", "imgrag eval stopped before it wrote results"),
        (["reembed", "--adapter", "a"], "imgrag.cli.align.facade", "what it changed is recorded as a version"),
        (["align", "--pairs", "p.jsonl", "--out", "o"], "imgrag.cli.align.facade", "nothing was written to --out"),
        (["stats"], "imgrag.cli.index.facade", "imgrag stats stopped before it finished"),
    ],
)
def test_ctrl_c_of_any_command_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch, args: list[str], target: str, says: str) -> None:
    """typer 0.29 turns Ctrl-C into a silent exit 130: `imgrag eval`, `reembed` and `align` (minutes
    long) stopped without a word about what they left behind."""
    monkeypatch.setattr(target, _stopped)
    result = CliRunner().invoke(app, args, prog_name="imgrag")
    assert result.exit_code == 130, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("interrupted: ") and says in lines[-1], result.output


def test_ctrl_c_of_the_real_process_says_so(tmp_path: Path) -> None:
    """The real entry point and a real SIGINT, while `imgrag align` loads its models and embeds."""
    import signal
    import time

    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(tmp_path / "a.png")
    (tmp_path / "p.jsonl").write_text('{"image": "a.png", "caption": "a red square"}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")} | {"IMGRAG_HOME": str(tmp_path / "home")}
    # a test run started in the background (`pytest … &`) has SIGINT ignored, which a child inherits:
    # Python then installs no Ctrl-C handler and the signal did nothing (exit 2). A handled SIGINT is not inherited.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        p = subprocess.Popen([sys.executable, "-m", "imgrag", "align", "--pairs", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "o")],
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        assert p.stderr is not None
        first = p.stderr.readline()  # "embedding the images of …": the models are loading
        assert first.startswith("embedding the images"), first
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, rest = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    # 130 and nothing else: a Ctrl-C landing inside `import torch` used to end in -2 or -6
    # (test_ctrl_c_during_a_native_import_waits_for_the_import)
    assert p.returncode == 130, rest
    lines = [ln for ln in rest.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("interrupted: imgrag align stopped before it saved an adapter"), rest
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name", ["HOME", "ADAPTER", "PADDLE_MODEL_DIR", "ES_CA_CERTS"])
def test_an_empty_path_setting_is_unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """IMGRAG_HOME= (an env file's empty line) was Path('.'): the index was made in whatever folder the
    command ran in; the other folder / file settings named '.' too."""
    monkeypatch.setenv(f"IMGRAG_{name}", " ")
    from imgrag.indexing.config import Settings

    default = Settings.model_fields[name.lower()].default
    assert getattr(get_settings(), name.lower()) == (default.expanduser() if name == "HOME" else default)


def test_an_empty_es_credential_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """IMGRAG_ES_API_KEY= (an env file's empty line) beside a user and password was an API key of '':
    the client sent no credentials at all (it skips an empty key, and an API key wins over basic auth),
    and a secured cluster's 401 said "set IMGRAG_ES_API_KEY, or IMGRAG_ES_USERNAME and
    IMGRAG_ES_PASSWORD" - both set. Found against a server logging the Authorization header."""
    from imgrag.indexing.stores.elastic.client import connect

    monkeypatch.setenv("IMGRAG_ES_API_KEY", "")
    monkeypatch.setenv("IMGRAG_ES_USERNAME", "elastic")
    monkeypatch.setenv("IMGRAG_ES_PASSWORD", "secret")
    s = get_settings()
    assert s.es_api_key is None
    es = connect(s)
    assert es._headers["authorization"].startswith("Basic ")  # elastic:secret
    get_settings.cache_clear()
    for name in ("ES_API_KEY", "ES_USERNAME", "ES_PASSWORD"):
        monkeypatch.setenv(f"IMGRAG_{name}", "  ")
    s = get_settings()
    assert (s.es_api_key, s.es_username, s.es_password) == (None, None, None)
    assert "authorization" not in connect(s)._headers


def test_an_empty_imgrag_home_makes_no_index_in_the_working_folder(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")} | {"IMGRAG_HOME": "", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "imgrag", "stats"], cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert not list(work.iterdir())


def test_ctrl_c_during_a_native_import_waits_for_the_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt raised inside torch's C++ start-up (pybind11 calling back into Python)
    aborted the process (-6) or killed it with SIGINT after its `interrupted:` line (-2). The first
    import of such a library holds Ctrl-C: it is raised when the import is done, from Python code."""
    import signal

    from imgrag.indexing.interrupts import held_import

    (tmp_path / "slow_native.py").write_text(
        "import signal\nsignal.raise_signal(signal.SIGINT)  # Ctrl-C in the middle of the import\nFINISHED = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # a run started with `&` ignores SIGINT
    try:
        with pytest.raises(KeyboardInterrupt):
            held_import("slow_native")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)
    assert sys.modules["slow_native"].FINISHED  # the import ran to its end
    assert held_import("slow_native") is sys.modules["slow_native"]  # imported once: no second hold


def test_the_product_imports_torch_with_ctrl_c_held() -> None:
    """Every first import of torch (or of a package that imports it) in the product goes through
    held_import: a bare `import torch` anywhere could be the one a Ctrl-C lands in."""
    import re

    bare = re.compile(r"^\s*(import (torch|open_clip)\s*$|from (sentence_transformers|open_clip)\b|import sentence_transformers)", re.MULTILINE)
    product = [p for d in ("indexing", "mcp_server", "agent", "evals", "imgrag") for p in (ROOT / d).rglob("*.py")]
    found = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for p in product for m in bare.finditer(p.read_text())]
    assert not found, found


def test_a_settings_file_that_is_not_a_small_regular_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """IMGRAG_CONFIG=/dev/zero read without end (MemoryError traceback once the box was out of
    memory); a FIFO blocked every command for ever; a 2 MiB file was read whole. A settings file is
    a few hundred bytes: anything not a regular file, or over 1 MiB, is refused before it is read."""
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 210_000)  # valid TOML, 2.1 MB
    monkeypatch.setenv("IMGRAG_CONFIG", str(big))
    assert "over 1 MiB" in one_line_exit_2(CliRunner().invoke(app, ["stats"], prog_name="imgrag"))
    monkeypatch.setenv("IMGRAG_CONFIG", "/dev/zero")
    assert "is not a regular file" in one_line_exit_2(CliRunner().invoke(app, ["stats"], prog_name="imgrag"))
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGRAG_")} | {"IMGRAG_HOME": str(tmp_path / "h"), "IMGRAG_CONFIG": str(fifo)}
    try:
        p = subprocess.run([sys.executable, "-m", "imgrag", "stats"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("imgrag stats blocked on a FIFO named by IMGRAG_CONFIG")
    assert p.returncode == 2 and "is not a regular file" in p.stderr and p.stderr.count("\n") == 1, p.stderr


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_eval_cache_is_the_default_not_the_working_folder(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """IMGRAG_EVAL_CACHE= (an env file's empty line) was Path('.'): `imgrag eval` built its corpora
    and indexes in whatever folder it ran in (the class of IMGRAG_HOME= fixed in session 12)."""
    from imgrag.evals.datasets.iconify import root as iconify_root
    from imgrag.evals.standard import cache_root

    monkeypatch.setenv("IMGRAG_EVAL_CACHE", value)
    monkeypatch.setenv("IMGRAG_ICONIFY_DIR", value)
    assert cache_root() == Path("~/.cache/imgrag/eval").expanduser()
    assert iconify_root() == Path("~/.cache/imgrag/iconify/node_modules/@iconify-json").expanduser()


class _DiskFull:
    """A facade whose index run hits a full disk the way LanceDB reports it (a RuntimeError raised
    while handling another), or as an OSError; or fails with a bug."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def index(self, paths: list[str], opts: object, progress: object) -> object:
        raise self.error


def _lance_no_space() -> RuntimeError:
    text = ("lance error: LanceError(IO): No space left on device (os error 28), /root/.cargo/registry/src/"
            "index.crates.io-1949cf8c6b5b557f/lance-file-13.0.0/src/writer/structural.rs:258:9")
    try:
        try:
            raise RuntimeError(text)
        except RuntimeError:
            raise RuntimeError(text)  # as LanceDB chains them: "During handling of the above ..."
    except RuntimeError as e:
        return e


@pytest.mark.parametrize("error", [_lance_no_space(), OSError(28, "No space left on device"), OSError(122, "Disk quota exceeded")],
                         ids=["lance", "enospc", "edquot"])
def test_a_full_disk_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """A real `imgrag index` onto a full 40 MB tmpfs ended in three chained LanceDB tracebacks."""
    import imgrag.cli.index as cli_index

    monkeypatch.setattr(cli_index, "facade", lambda: _DiskFull(error))
    line = one_line_exit_2(CliRunner().invoke(app, ["index", "."], prog_name="imgrag"))
    assert "is full (" in line and "run the command again" in line and "IMGRAG_HOME" in line, line
    assert ".cargo" not in line


def test_a_bug_is_still_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import imgrag.cli.index as cli_index

    monkeypatch.setattr(cli_index, "facade", lambda: _DiskFull(RuntimeError("a bug")))
    result = CliRunner().invoke(app, ["index", "."], prog_name="imgrag")
    assert isinstance(result.exception, RuntimeError) and str(result.exception) == "a bug"
