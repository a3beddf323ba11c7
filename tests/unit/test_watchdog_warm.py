"""A warm watchdog (FAAS_WARM=1) in a subprocess: it waits for POST /_/init, then serves."""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import tarfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.watchdog.config import ConfigError, load_settings
from runtime.watchdog.warm import ArchiveError, RootWriter, preload
from runtime.watchdog.wire import claim_digest
from tests.unit.test_watchdog_server import REPO_ROOT, Launcher, Watchdog, read_response

HELLO = """
    import os

    from hello_helpers import shout

    GREETING = os.environ["GREETING"]  # read at import: the environment comes first


    def handle(event, context):
        with open(os.environ["SECRET_FILE"]) as secret:
            return {
                "greeting": shout(GREETING),
                "secret": secret.read(),
                "function": context.function_name,
                "path": event.path,
            }
"""

HELPERS = """
    def shout(text):
        return text.upper() + "!"
"""

BROKEN = """
    raise RuntimeError("boom at import")
"""

Member = tuple[str, str | bytes] | tarfile.TarInfo


def tar(*members: Member) -> bytes:
    """An uncompressed archive; a (name, content) pair is a regular file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
                continue
            name, content = member
            data = textwrap.dedent(content).encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def init_json(**fields: Any) -> tuple[str, bytes]:
    return "init.json", json.dumps(fields).encode()


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@dataclass
class Warm:
    wd: Watchdog
    code_dir: Path
    secrets_dir: Path

    def init(self, archive: bytes) -> tuple[int, dict[str, Any]]:
        status, _, body = self.wd.call(
            "/_/init", method="POST", body=archive, headers={"Content-Type": "application/x-tar"}
        )
        return status, json.loads(body)

    def hello_archive(self) -> bytes:
        return tar(
            init_json(
                function="hello",
                handler_file="functions/hello.py",
                environment={"GREETING": "hi", "SECRET_FILE": str(self.secrets_dir / "api-key")},
            ),
            special("app/functions", tarfile.DIRTYPE),  # directories are ignored
            ("app/functions/hello.py", HELLO),
            ("./app/functions/hello_helpers.py", HELPERS),
            ("secrets/api-key", "s3cret"),
        )

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.wd.stderr().splitlines() if line.startswith("{")]


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.kill_all()


@pytest.fixture
def start_warm(launcher: Launcher, tmp_path: Path) -> Callable[..., Warm]:
    def start(**env: str) -> Warm:
        secrets_dir = tmp_path / "secrets"
        wd = launcher.start(
            {},
            handler_file="",
            module="runtime.watchdog",
            cwd=REPO_ROOT,
            FAAS_WARM="1",
            FAAS_SECRETS_DIR=str(secrets_dir),
            FAAS_DEPS_DIR=str(tmp_path / "deps"),
            FAAS_FUNCTION_NAME="",
            **env,
        )
        return Warm(wd, wd.log_dir / "code", secrets_dir)

    return start


# ---------------------------------------------------------------- before /_/init


def test_warm_waits_for_a_function(start_warm: Callable[..., Warm]) -> None:
    warm = start_warm()
    assert (warm.wd.ready_status, warm.wd.ready_body) == (200, {"status": "warm"})
    for path, method in [("/", "GET"), ("/x", "POST"), ("/_/ready", "POST"), ("/_/init", "GET")]:
        status, headers, body = warm.wd.call(path, method=method, headers={"X-Faas-Call-Id": "c1"})
        assert status == 409
        assert json.loads(body) == {"error": "this replica has no function yet", "call_id": "c1"}
        assert headers["X-Call-Id"] == "c1"
    assert warm.wd.call("/_/ready", token=None)[0] == 403
    assert warm.wd.call("/_/ready", token="wrong")[0] == 403
    assert warm.wd.call("/_/init", method="POST", body=warm.hello_archive(), token="no")[0] == 403
    assert warm.wd.call("/_/ready")[2] == b'{"status":"warm"}'
    assert any(line["msg"] == "warm, waiting for a function" for line in warm.log_lines())


def test_init_body_over_the_limit_is_413(start_warm: Callable[..., Warm]) -> None:
    warm = start_warm(FAAS_MAX_BODY="1000")
    with warm.wd.raw() as sock, sock.makefile("rb") as stream:
        sock.sendall(
            b"POST /_/init HTTP/1.1\r\nX-Faas-Token: test-token\r\nContent-Length: 2000\r\n\r\n"
        )
        assert read_response(stream)[0] == 413
    assert warm.wd.call("/_/ready")[0] == 200


# ---------------------------------------------------------------- /_/init


def test_init_makes_the_warm_watchdog_serve_the_function(start_warm: Callable[..., Warm]) -> None:
    warm = start_warm()
    status, answer = warm.init(warm.hello_archive())
    assert status == 200, answer
    assert (answer["status"], answer["function"]) == ("ready", "hello")
    assert isinstance(answer["import_ms"], float)

    status, _, body = warm.wd.call("/greet", method="POST")
    assert status == 200
    assert json.loads(body) == {
        "greeting": "HI!",
        "secret": "s3cret",
        "function": "hello",
        "path": "/greet",
    }
    assert (warm.code_dir / "functions" / "hello.py").is_file()
    # the code is read-only, as it is in an image
    assert os.stat(warm.code_dir / "functions" / "hello.py").st_mode & 0o222 == 0
    assert os.stat(warm.code_dir / "functions").st_mode & 0o777 == 0o555
    assert os.stat(warm.code_dir).st_mode & 0o777 == 0o555
    assert os.stat(warm.secrets_dir / "api-key").st_mode & 0o777 == 0o400
    assert os.stat(warm.secrets_dir).st_mode & 0o777 == 0o500
    assert warm.wd.call("/_/ready")[:3:2] == (200, b'{"status":"ready"}')

    status, again = warm.init(warm.hello_archive())
    assert (status, again) == (409, {"error": "this replica already serves hello"})
    assert json.loads(warm.wd.call("/_/init")[2])["path"] == "/_/init"  # not a POST: the handler's
    assert warm.wd.call("/_/reload", method="POST")[0] == 200

    imported = next(line for line in warm.log_lines() if line["msg"] == "handler imported")
    assert (imported["function"], imported["handler"]) == ("hello", "functions/hello.py")


def test_init_with_a_handler_that_fails_to_import(start_warm: Callable[..., Warm]) -> None:
    warm = start_warm()
    archive = tar(init_json(function="broken", handler_file="broken.py"), ("app/broken.py", BROKEN))
    status, answer = warm.init(archive)
    assert status == 503
    assert answer == {
        "status": "failed",
        "error": "RuntimeError: boom at import",
        "file": "broken.py",
        "line": 2,
    }
    status, _, body = warm.wd.call("/_/ready")
    assert (status, json.loads(body)) == (503, answer)
    status, _, body = warm.wd.call("/", method="POST")  # a call is not told what was raised
    assert (status, json.loads(body)) == (503, {"error": "the function's handler failed to import"})
    assert warm.init(archive) == (409, {"error": "this replica already serves broken"})
    failed = next(line for line in warm.log_lines() if line["level"] == "error")
    assert failed["function"] == "broken"
    assert "boom at import" in failed["traceback"]


GOOD_INIT = init_json(function="f", handler_file="h.py")
GOOD_CODE = ("app/h.py", "def handle(event, context):\n    return 'ok'\n")

BAD_ARCHIVES: dict[str, tuple[Callable[[Path], bytes], str]] = {
    "traversal": (lambda tmp: tar(GOOD_INIT, GOOD_CODE, ("app/../x", "x")), "'..'"),
    "absolute": (lambda tmp: tar(GOOD_INIT, GOOD_CODE, (str(tmp / "abs"), "x")), "absolute"),
    "symlink": (
        lambda tmp: tar(GOOD_INIT, special("app/link", tarfile.SYMTYPE, str(tmp / "abs"))),
        "not a regular file",
    ),
    "hardlink": (
        lambda tmp: tar(GOOD_INIT, GOOD_CODE, special("app/hard", tarfile.LNKTYPE, "app/h.py")),
        "not a regular file",
    ),
    "unknown member": (lambda tmp: tar(GOOD_INIT, GOOD_CODE, ("etc/x", "x")), "expected"),
    "missing init.json": (lambda tmp: tar(GOOD_CODE), "init.json is missing"),
    "init.json wrong type": (
        lambda tmp: tar(init_json(function=1, handler_file="h.py"), GOOD_CODE),
        "function must be",
    ),
    "environment wrong type": (
        lambda tmp: tar(init_json(function="f", handler_file="h.py", environment={"A": 1})),
        "environment",
    ),
    "init.json not an object": (lambda tmp: tar(("init.json", "[]")), "object"),
    "secret with a slash": (
        lambda tmp: tar(GOOD_INIT, ("secrets/a/b", "x"), GOOD_CODE),
        "cannot contain '/'",
    ),
    "not a tar": (lambda tmp: b"plain text", "not a valid tar archive"),
}


@pytest.mark.parametrize("case", list(BAD_ARCHIVES))
def test_bad_archive_is_400_and_changes_nothing(
    start_warm: Callable[..., Warm], tmp_path: Path, case: str
) -> None:
    warm = start_warm()
    make, error = BAD_ARCHIVES[case]

    def files() -> set[Path]:
        return {path for path in tmp_path.rglob("*") if path.suffix != ".log"}

    before = files()
    status, answer = warm.init(make(tmp_path))
    assert status == 400
    assert error in answer["error"]
    assert files() == before
    assert warm.wd.call("/_/ready")[2] == b'{"status":"warm"}'
    assert warm.init(warm.hello_archive())[0] == 200
    assert warm.wd.call("/")[0] == 200


def test_init_is_an_ordinary_path_outside_warm_mode(launcher: Launcher) -> None:
    handler = "def handle(event, context):\n    return event.path\n"
    wd = launcher.start({"handler.py": handler})
    status, _, body = wd.call("/_/init", method="POST", body=b"x")
    assert (status, body) == (200, b"/_/init")


# ---------------------------------------------------------------- settings


def test_warm_settings() -> None:
    warm = load_settings({"FAAS_WARM": "1", "FAAS_TOKEN": "t", "FAAS_SECRETS_DIR": "/s"})
    assert (warm.warm, warm.handler_file, warm.secrets_dir) == (True, "", "/s")
    plain = load_settings({"FAAS_HANDLER_FILE": "h.py", "FAAS_TOKEN": "t"})
    assert (plain.warm, plain.secrets_dir) == (False, "/run/secrets")
    with pytest.raises(ConfigError, match="FAAS_HANDLER_FILE is required"):
        load_settings({"FAAS_TOKEN": "t"})
    with pytest.raises(ConfigError, match="FAAS_HANDLER_FILE is required"):
        load_settings({"FAAS_TOKEN": "t", "FAAS_WARM": "0"})
    with pytest.raises(ConfigError) as info:
        load_settings({"FAAS_WARM": "1", "FAAS_PORT": "x"})
    assert "FAAS_TOKEN" in str(info.value) and "FAAS_PORT" in str(info.value)
    assert "FAAS_HANDLER_FILE" not in str(info.value)
    with pytest.raises(ConfigError, match="FAAS_WARM"):
        load_settings({"FAAS_WARM": "maybe", "FAAS_TOKEN": "t"})


def test_init_with_requirements_imports_them(
    start_warm: Callable[..., Warm], tmp_path: Path
) -> None:
    warm = start_warm()
    archive = tar(
        init_json(function="uses-deps", handler_file="functions/uses.py"),
        ("app/functions/uses.py", """
            import tinylib

            def handle(event, context):
                return tinylib.VALUE
        """),
        ("deps/tinylib/__init__.py", "VALUE = 'from a requirement'\n"),
    )  # fmt: skip
    status, answer = warm.init(archive)
    assert status == 200, answer
    assert warm.wd.call("/")[2] == b"from a requirement"
    library = tmp_path / "deps" / "tinylib" / "__init__.py"
    assert os.stat(library).st_mode & 0o222 == 0  # read-only, as in an image


# ---------------------------------------------------------------- the writer and preload


@dataclass
class Dirs:
    code: Path
    secrets: Path
    deps: Path

    def writer(self) -> RootWriter:
        return RootWriter(str(self.code), str(self.secrets), str(self.deps))

    def written(self) -> set[Path]:
        return {
            path
            for top in (self.code, self.secrets, self.deps)
            if top.exists()
            for path in top.rglob("*")
        }


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    return Dirs(tmp_path / "code", tmp_path / "secrets", tmp_path / "deps")


def executable(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = 0o755
    return info  # empty: addfile needs no content for it


def assert_reaped(writer: RootWriter) -> None:
    """The writer has exited and was waited for: no zombie is left."""
    with pytest.raises(ChildProcessError):
        os.waitpid(writer._pid, os.WNOHANG)


def test_root_writer_writes_the_archive(dirs: Dirs) -> None:
    writer = dirs.writer()
    assert writer._pid not in (0, os.getpid())
    writer.write(
        tar(
            init_json(function="hello", handler_file="functions/hello.py"),
            ("app/functions/hello.py", HELLO),
            ("app/functions/hello_helpers.py", HELPERS),
            executable("app/bin/run"),
            ("deps/tinylib/__init__.py", "VALUE = 1\n"),
            ("secrets/api-key", "s3cret"),
        )
    )
    assert_reaped(writer)

    hello = dirs.code / "functions" / "hello.py"
    assert hello.read_text() == textwrap.dedent(HELLO)
    assert (dirs.code / "functions" / "hello_helpers.py").read_text() == textwrap.dedent(HELPERS)
    assert (dirs.deps / "tinylib" / "__init__.py").read_bytes() == b"VALUE = 1\n"
    assert (dirs.secrets / "api-key").read_bytes() == b"s3cret"
    assert dirs.written() == {
        dirs.code / "functions",
        hello,
        dirs.code / "functions" / "hello_helpers.py",
        dirs.code / "bin",
        dirs.code / "bin" / "run",
        dirs.deps / "tinylib",
        dirs.deps / "tinylib" / "__init__.py",
        dirs.secrets / "api-key",
    }

    def mode(path: Path) -> int:
        return os.stat(path).st_mode & 0o777

    # read-only, as in an image; written for another user, the secrets are readable by all
    assert mode(hello) == 0o444
    assert mode(dirs.code / "bin" / "run") == 0o555
    assert mode(dirs.deps / "tinylib" / "__init__.py") == 0o444
    for directory in (dirs.code, dirs.code / "functions", dirs.deps, dirs.deps / "tinylib"):
        assert mode(directory) == 0o555, directory
    assert mode(dirs.secrets / "api-key") == 0o444
    assert mode(dirs.secrets) == 0o555


def test_root_writer_with_code_only(dirs: Dirs) -> None:
    writer = dirs.writer()
    writer.write(tar(GOOD_INIT, GOOD_CODE))
    assert_reaped(writer)
    assert (dirs.code / "h.py").read_text() == GOOD_CODE[1]
    assert not dirs.deps.exists()
    assert not dirs.secrets.exists()  # nothing asked for it


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ((GOOD_INIT, GOOD_CODE, ("../x", "x")), "'../x': '..' is not allowed"),
        ((GOOD_INIT, GOOD_CODE, ("app/../../x", "x")), "'..' is not allowed"),
        ((GOOD_CODE, ("secrets/k", "v")), "init.json is missing"),
        ((GOOD_INIT, GOOD_CODE, ("secrets/a/b", "x")), "a secret name cannot contain '/'"),
        ((GOOD_INIT, GOOD_CODE, GOOD_CODE), "app/h.py appears twice"),
    ],
)
def test_root_writer_refuses_a_bad_archive_and_writes_nothing(
    dirs: Dirs, members: tuple[Member, ...], reason: str
) -> None:
    writer = dirs.writer()
    with pytest.raises(ArchiveError) as refused:
        writer.write(tar(*members))
    assert reason in str(refused.value)
    assert_reaped(writer)
    assert not dirs.code.exists() and not dirs.deps.exists() and not dirs.secrets.exists()


def test_root_writer_refuses_what_is_not_a_tar(dirs: Dirs) -> None:
    writer = dirs.writer()
    with pytest.raises(ArchiveError, match="not a valid tar archive"):
        writer.write(b"plain text")
    assert_reaped(writer)
    assert dirs.written() == set()


def test_root_writer_reports_what_it_cannot_write(dirs: Dirs) -> None:
    dirs.code.write_text("a file where the code directory should be")
    writer = dirs.writer()
    with pytest.raises(OSError) as failed:
        writer.write(tar(GOOD_INIT, GOOD_CODE))
    assert not isinstance(failed.value, ArchiveError)
    assert str(failed.value)  # the writer's reason, not an empty error
    assert_reaped(writer)


def test_root_writer_that_died_is_an_os_error(dirs: Dirs) -> None:
    writer = dirs.writer()
    os.kill(writer._pid, signal.SIGKILL)
    with pytest.raises(OSError, match=r"the writer exited without an answer|Broken pipe|reset"):
        writer.write(tar(GOOD_INIT, GOOD_CODE))
    assert_reaped(writer)
    assert not dirs.code.exists()


@pytest.fixture
def modules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for modules a test writes (named `warm_preload_*`), which are
    forgotten afterwards."""
    directory = tmp_path / "modules"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    yield directory
    for name in [name for name in sys.modules if name.startswith("warm_preload_")]:
        del sys.modules[name]


def test_preload_imports_and_reports_what_failed(modules_dir: Path) -> None:
    (modules_dir / "warm_preload_ok_xyz.py").write_text("LOADED = True\n")
    assert "warm_preload_ok_xyz" not in sys.modules
    done = preload(("json", "no_such_module_xyz", "warm_preload_ok_xyz"))
    assert done.imported == ["json", "warm_preload_ok_xyz"]
    assert done.failed == {
        "no_such_module_xyz": "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    }
    assert done.ms >= 0
    assert "json" in sys.modules
    assert sys.modules["warm_preload_ok_xyz"].LOADED is True


def test_preload_of_nothing() -> None:
    done = preload(())
    assert (done.imported, done.failed) == ([], {})
    assert done.ms >= 0


def test_preload_of_a_submodule(modules_dir: Path) -> None:
    package = modules_dir / "warm_preload_pkg_xyz"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "sub.py").write_text("X = 1\n")
    done = preload(("warm_preload_pkg_xyz.sub", "warm_preload_pkg_xyz.missing"))
    assert done.imported == ["warm_preload_pkg_xyz.sub"]
    assert list(done.failed) == ["warm_preload_pkg_xyz.missing"]
    assert "warm_preload_pkg_xyz.sub" in sys.modules


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("raise SystemExit(3)\n", "SystemExit: 3"),
        ("import sys\nsys.exit('bye')\n", "SystemExit: bye"),
        ("raise RuntimeError('boom at import')\n", "RuntimeError: boom at import"),
        ("def broken(:\n", "SyntaxError: "),
    ],
)
def test_preload_reports_a_module_that_fails_at_import(
    modules_dir: Path, source: str, error: str
) -> None:
    (modules_dir / "warm_preload_bad_xyz.py").write_text(source)
    (modules_dir / "warm_preload_after_xyz.py").write_text("")
    done = preload(("warm_preload_bad_xyz", "warm_preload_after_xyz"))
    assert list(done.failed) == ["warm_preload_bad_xyz"]
    assert done.failed["warm_preload_bad_xyz"].startswith(error)
    assert done.imported == ["warm_preload_after_xyz"]  # the rest are still imported
    assert "warm_preload_bad_xyz" not in sys.modules


# ---------------------------------------------------------------- claims (shared warm services)

CLAIM = "c" * 43


def claim(warm: Warm, token: str | None = CLAIM, key: str = "test-token") -> tuple[int, Any]:
    """The first step: the claim alone, no archive."""
    headers = {} if token is None else {"X-Faas-Claim": token}
    status, _, body = warm.wd.call("/_/init", method="POST", body=b"", headers=headers, token=key)
    return status, json.loads(body)


def send_function(warm: Warm, token: str = CLAIM) -> tuple[int, Any]:
    """The second step, with the claimer's token."""
    headers = {"Content-Type": "application/x-tar"}
    status, _, body = warm.wd.call(
        "/_/init", method="POST", body=warm.hello_archive(), headers=headers, token=token
    )
    return status, json.loads(body)


def claim_lines(warm: Warm) -> list[dict[str, Any]]:
    return [line for line in warm.log_lines() if line["msg"] == "claimed"]


def test_a_shared_warm_watchdog_is_claimed_once_then_given_its_function(
    start_warm: Callable[..., Warm],
) -> None:
    warm = start_warm(FAAS_CLAIM="1")
    status, answer = warm.init(warm.hello_archive())
    assert (status, answer) == (400, {"error": "a shared warm replica needs x-faas-claim"})
    assert claim(warm, "short")[0] == 400
    with_archive = warm.wd.call(
        "/_/init", method="POST", body=warm.hello_archive(), headers={"X-Faas-Claim": CLAIM}
    )
    assert with_archive[0] == 400  # secrets never travel with the claim itself
    assert warm.wd.call("/_/ready")[2] == b'{"status":"warm"}'  # nothing was taken
    assert claim_lines(warm) == []

    assert claim(warm) == (200, {"status": "claimed"})
    # logged before the answer, as its digest, for the claimer to check through the engine
    assert [line["claim"] for line in claim_lines(warm)] == [claim_digest(CLAIM)]
    # from now on the shared key opens nothing, the claimer's token everything
    for path, method in [("/_/ready", "GET"), ("/greet", "POST"), ("/_/retire", "POST")]:
        assert warm.wd.call(path, method=method)[0] == 403
    assert claim(warm, "d" * 43)[0] == 403  # a second claimer loses at once
    assert claim(warm, "d" * 43, key=CLAIM) == (409, {"error": "this replica was claimed already"})
    status, answer = send_function(warm)
    assert (status, answer["function"]) == (200, "hello")
    assert json.loads(warm.wd.call("/greet", method="POST", token=CLAIM)[2])["greeting"] == "HI!"
    assert send_function(warm)[0] == 409
    assert len(claim_lines(warm)) == 1

    status, _, body = warm.wd.call("/_/retire", method="POST", token=CLAIM)
    assert (status, json.loads(body)) == (200, {"status": "retiring"})
    assert warm.wd.proc.wait(timeout=10) == 0


def test_a_refused_archive_after_the_claim_and_the_watchdog_exits(
    start_warm: Callable[..., Warm],
) -> None:
    warm = start_warm(FAAS_CLAIM="1")
    assert claim(warm)[0] == 200
    assert warm.wd.call("/_/init", method="POST", body=b"not a tar", token=CLAIM)[0] == 400
    assert warm.wd.proc.wait(timeout=10) == 0  # and it leaves, for a fresh one


def test_a_claimed_watchdog_retires_on_request_even_without_a_function(
    start_warm: Callable[..., Warm],
) -> None:
    warm = start_warm(FAAS_CLAIM="1")
    assert claim(warm)[0] == 200
    assert warm.wd.call("/_/ready", token=CLAIM)[0] == 200
    assert warm.wd.call("/_/retire", method="POST", token=CLAIM)[0] == 200
    assert warm.wd.proc.wait(timeout=10) == 0


def test_an_unshared_warm_watchdog_takes_no_claim(start_warm: Callable[..., Warm]) -> None:
    warm = start_warm()
    status, answer = claim(warm)
    assert status == 400
    assert answer == {"error": "this warm replica is not a shared one: it takes no claim"}
    assert warm.wd.call("/_/retire", method="POST")[0] == 409  # only a claimed one retires
    assert warm.init(warm.hello_archive())[0] == 200


def test_a_claimed_watchdog_left_alone_retires_itself(start_warm: Callable[..., Warm]) -> None:
    warm = start_warm(FAAS_CLAIM="1", FAAS_CLAIM_IDLE="0.4")
    assert claim(warm)[0] == 200
    assert send_function(warm)[0] == 200
    assert warm.wd.proc.wait(timeout=10) == 0
    assert any("since the claim: retiring" in line["msg"] for line in warm.log_lines())


def test_claim_settings() -> None:
    env = {"FAAS_TOKEN": "k", "FAAS_WARM": "1", "FAAS_CLAIM": "1", "FAAS_CLAIM_IDLE": "30"}
    settings = load_settings(env)
    assert (settings.claim, settings.claim_idle) == (True, 30.0)
    assert not load_settings({**env, "FAAS_WARM": "0", "FAAS_HANDLER_FILE": "h.py"}).claim
    with pytest.raises(ConfigError, match="FAAS_CLAIM='maybe' must be 1 or 0"):
        load_settings({**env, "FAAS_CLAIM": "maybe"})
