"""The README stays true: its two set-up commands (CI runs the test one verbatim), its Python example and
every `photoman …` console example, run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", setup, flags=re.S)
    assert len(commands) == 2, commands
    assert commands[0].startswith("pip install") and "photoman index" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == commands[1]


def test_readme_documents_every_command() -> None:
    from photoman.cli import app

    readme = (ROOT / "README.md").read_text()
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__
        assert f"### `photoman {name}" in readme, name


def test_the_python_example_runs(cli_env, library_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """The README's script example, saved as a script and run as written against a test library (as
    `python -c` it hid that the decode workers import a script without a __main__ guard)."""
    import os
    import shutil
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### From Python", 1)[1]
    code = re.search(r"```python\n(.+?)\n```", section, flags=re.S).group(1)
    work = tmp_path / "script"
    shutil.copytree(library_dir, work / "tests-library")
    (work / "example.py").write_text(code + "\n")
    proc = subprocess.run([sys.executable, "example.py"], cwd=work, env=dict(os.environ), capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[:3]] == ["1", "2", "3"]
    assert "'indexed': 10" in lines[3]


def readme_commands() -> list[str]:
    """Every `$ photoman …` line of the README's console examples, in order."""
    readme = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```console\n(.+?)\n```", readme, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ ") and "photoman" in line:
                lines.append(line[2:])
    return lines


# The README's console examples, run as written in four parts (each under half a minute): the
# everyday commands; choosing and switching models; evaluating them; the daemon, the TUI, roots and
# settings. Each part gets its own HOME and library; a later part that searches starts from the
# photos already indexed.
PARTS = {  # first command, first command of the next part, whether it needs the photos indexed first
    "everyday": (None, "photoman models", False),
    "models": ("photoman models", "photoman eval", True),
    "eval": ("photoman eval", "photoman watch ", False),
    "daemon-and-rest": ("photoman watch ", None, True),
}


@pytest.mark.parametrize("part", list(PARTS))
def test_every_readme_example_runs(
    part: str, tiny_model_auto: Path, tiny_model: Path, wide_model: Path, library_dir: Path, photos_src: Path,
    tmp_path: Path,
) -> None:
    """Each documented command, run as written (a user's shell, HOME, files in the current folder), in
    README order against a test library. With the tiny random model only success is checked. The
    user's cache holds the encoders a first run builds (tests/test_client.py covers building them)."""
    import json
    import os
    import shlex
    import shutil
    import signal
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(library_dir, home / "Pictures")
    shutil.copy(photos_src / "exif-js--dsc_09827.jpg", home / "Pictures" / "dog.jpg")
    (home / "Phone").mkdir()
    (tmp_path / "mnt" / "nas").mkdir(parents=True)  # the relocate example's target, a drive mounted elsewhere
    shutil.copy(photos_src / "scikit-image--rocket.jpg", home / "Phone" / "rocket.jpg")
    for name, src in (("a.jpg", "scikit-learn--china.jpg"), ("b.png", "scikit-image--coffee.png"),
                      ("sunset.jpg", "mate-backgrounds--Storm.jpg"), ("scan.jpg", "exif--test1.jpg"),
                      ("photo.jpg", "scikit-image--rocket.jpg")):  # fmt: skip
        shutil.copy(photos_src / src, work / name)
    (work / "my-labels.txt").write_text("dog\t0.001\ncat\t0.001\n")
    for label, src in (("cat", "scikit-image--chelsea.png"), ("coffee", "scikit-image--coffee.png")):
        (home / "eval-set" / label).mkdir(parents=True)
        shutil.copy(photos_src / src, home / "eval-set" / label / src)
    (work / "captions.tsv").write_text("a.jpg\ta pagoda\nb.png\ta cup of coffee\n")
    bindir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOMAN_")}
    env.update(HOME=str(home), PHOTOMAN_MODEL=str(tiny_model), PHOTOMAN_DATA_DIR=str(tmp_path / "data"),
               PHOTOMAN_STATE_DIR=str(tmp_path / "state"), PHOTOMAN_RUNTIME_DIR=str(tmp_path / "run"),
               PHOTOMAN_CONFIG=str(tmp_path / "none.toml"), PHOTOMAN_WORKERS="1", HF_HUB_OFFLINE="1",
               XDG_DATA_HOME=str(tmp_path / "xdg"),
               PHOTOMAN_CACHE_DIR=str(home / ".cache" / "photoman"))  # fmt: skip
    env["SHELL"] = env.get("SHELL") or "/bin/bash"  # a user has a login shell; completion falls back to it
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["PHOTOMAN_VIEWER"] = "true"  # `--open` examples: a viewer that opens nothing, and exists
    (tmp_path / "none.toml").write_text("")

    def sh(cmd: str, **kw):  # noqa: ANN003, ANN202
        return subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, text=True, **kw)

    def stop_daemon() -> None:
        sh("photoman stop", timeout=120)

    from photoman.embedding.known_models import KNOWN_MODELS

    commands = [c.replace("/mnt/nas", str(tmp_path / "mnt" / "nas")) for c in readme_commands()]
    # the model switched to is a second tiny checkpoint (16-d vectors there, 24-d here)
    commands = [c.replace("openai/clip-vit-base-patch16", str(wide_model)) for c in commands]
    for m in KNOWN_MODELS:  # no weights can be downloaded here: named models run as the test checkpoint
        commands = [c.replace(m.name, str(tiny_model)) for c in commands]
    assert len(commands) > 20
    first, stop, indexed = PARTS[part]
    begin = 0 if first is None else next(i for i, c in enumerate(commands) if c.startswith(first))
    end = len(commands) if stop is None else next(i for i, c in enumerate(commands) if c.startswith(stop))
    shutil.copytree(tiny_model_auto, home / ".cache" / "photoman")
    if indexed:  # the photos are indexed already, as the everyday part left them
        from .daemon_helpers import index_here

        index_here(env, home / "Pictures")
    commands = commands[begin:end]
    assert commands
    try:
        for cmd in commands:
            words = shlex.split(cmd, comments=True)
            sub = words[words.index("photoman") + 1 :]
            if sub[:1] == ["watch"] and "--detach" not in sub and "--once" not in sub:
                stop_daemon()  # foreground: runs until stopped
                proc = subprocess.Popen(
                    ["bash", "-c", f"exec {cmd.split('#')[0]}"],
                    cwd=work,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                time.sleep(4)
                assert proc.poll() is None, (cmd, proc.communicate())
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=60) == 0, cmd
                continue
            if sub[:1] == ["tui"]:
                if shutil.which("tmux") is None:
                    continue  # the TUI is covered by tests/test_tui.py, which skips the same way
                sock = str(tmp_path / "tmux.sock")
                exports = " ".join(
                    f"{k}={shlex.quote(v)}"
                    for k, v in env.items()
                    if k.startswith(("PHOTOMAN_", "HOME", "HF_", "PATH"))
                )
                tmux = ["tmux", "-S", sock, "new-session", "-d", "-x", "120", "-y", "40", "-c", str(work)]
                subprocess.run([*tmux, f"env {exports} {cmd.split('#')[0]}"], check=True)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline:
                    pane = subprocess.run(
                        ["tmux", "-S", sock, "capture-pane", "-p"], capture_output=True, text=True
                    )
                    if "photos," in pane.stdout:
                        break
                    time.sleep(0.3)
                assert "photos," in pane.stdout, pane.stdout
                subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
                continue
            if sub[:1] == ["watch"]:
                stop_daemon()  # --detach and --once need the library to themselves
            if sub[:2] == ["roots", "relocate"]:  # the drive was mounted elsewhere: the files are there now
                src, dest = (Path(os.path.expanduser(p.replace("~", str(home), 1))) for p in sub[2:4])
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(src), str(dest))
            if sub[:2] == ["models", "drop"]:  # the user waits for `status` to say the switch is done
                deadline = time.monotonic() + 60
                while (
                    time.monotonic() < deadline and json.loads(sh("photoman status --json").stdout)["switch"]
                ):
                    time.sleep(0.5)
            if "--trash" in sub and "--yes" not in sub:
                import pty

                main_fd, tty_fd = pty.openpty()  # it asks only on a terminal: give it one, answer no
                os.write(main_fd, b"n\n")
                res = sh(cmd, stdin=tty_fd, timeout=300)
                os.close(tty_fd)
                os.close(main_fd)
                asked = "Move" in res.stderr and "nothing moved" in res.stderr
                assert asked or "nothing to move" in res.stdout, (cmd, res.stdout, res.stderr)
                continue
            res = sh(cmd, timeout=300)
            assert res.returncode == 0, (cmd, res.stdout, res.stderr)
            assert "Traceback" not in res.stderr, (cmd, res.stderr)
    finally:
        stop_daemon()
