"""SQuAD v1.1 (its development set) and the four SQuADShifts test sets, from the PyPI package bigbench==1.0.0.

bigbench ships them as SQuAD JSON in ``bigbench/benchmark_tasks/squad_shifts/``. The package is large (a
342 MB source archive) and its requirements pull TensorFlow, so it is never a dependency: ``sora data fetch
squad`` reads the five files from an installed bigbench if there is one, else downloads the archive alone
(``pip download --no-deps``) and reads them out of it; only the five files stay in the cache. They carry
BIG-bench's canary (never part of a language-model training corpus): they train and test a task model here
and are never committed.

No SQuAD training split exists offline, so the 10,565 development questions are split **by article**
(``title``): no article is in two splits. The SQuADShifts sets (new Wikipedia articles, New York Times,
Reddit, Amazon reviews) are extra out-of-domain test splits: ``new_wiki``, ``nyt``, ``reddit``, ``amazon``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from sora.data.builtin.entry import Builtin, Raw
from sora.data.config import DataConfig
from sora.data.table import Table
from sora.errors import SoraError
from sora.paths import file_sha256

REQUIREMENT = "bigbench==1.0.0"
MEMBERS = "bigbench/benchmark_tasks/squad_shifts/"
FILES = {  # split name -> file
    "all": "squaddev_v1.1.json",
    "new_wiki": "new_wiki_v1.0.json",
    "nyt": "nyt_v1.0.json",
    "reddit": "reddit_v1.0.json",
    "amazon": "amazon_reviews_v1.0.json",
}
COLUMNS = {"text": "question", "text_pair": "context", "answer": "answers", "answer_start": "answer_start"}
# pip 26.3 refuses to prepare an archive from PyPI whose metadata names a URL dependency (bigbench's bleurt)
URL_DEPENDENCY = "cannot declare direct URL dependencies"


def fetch_squad(folder: Path) -> dict:
    installed = _installed_folder()
    if installed is not None:
        for name in FILES.values():
            shutil.copyfile(installed / name, folder / name)
        info = {"from": f"installed bigbench ({installed})"}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            archive = download_archive(REQUIREMENT, Path(tmp))
            _extract(archive, folder)
            info = {"from": archive.name, "archive_sha256": file_sha256(archive)}
    info["questions"] = {split: _count(folder / name) for split, name in FILES.items()}
    return info


def _installed_folder() -> Path | None:
    spec = importlib.util.find_spec("bigbench")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "benchmark_tasks" / "squad_shifts"
    return folder if all((folder / n).is_file() for n in FILES.values()) else None


def download_archive(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps`` of ``requirement`` (a wheel or a source archive), with the project's
    constraints; when this pip refuses bigbench's metadata, the interpreter's bundled pip in a throwaway
    environment downloads it instead."""
    done = _pip_download([sys.executable], requirement, dest)
    if done.returncode != 0 and URL_DEPENDENCY in (done.stderr or ""):
        env = dest / "pip-env"
        subprocess.run([sys.executable, "-m", "venv", str(env)], capture_output=True, check=False)
        done = _pip_download([str(env / "bin" / "python")], requirement, dest)
    archives = sorted(p for p in dest.iterdir() if p.name.endswith((".whl", ".tar.gz", ".zip")))
    if done.returncode != 0 or not archives:
        tail = ((done.stderr or done.stdout).strip().splitlines() or ["no archive"])[-1]
        raise SoraError(
            f"dataset 'squad': could not download {requirement} from PyPI ({tail}); or install it yourself: "
            f"pip install --no-deps -c constraints.txt {requirement}"
        )
    return archives[0]


def _pip_download(python: list[str], requirement: str, dest: Path) -> subprocess.CompletedProcess:
    cmd = [*python, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", requirement]
    constraints = Path(__file__).resolve().parents[3] / "constraints.txt"
    if constraints.is_file():
        cmd += ["-c", str(constraints)]
    return subprocess.run([*cmd, "-d", str(dest)], capture_output=True, text=True)


def _extract(archive: Path, folder: Path) -> None:
    """The five files out of a wheel (zip) or a source archive (tar.gz, read as a stream)."""
    found = set()
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            for member in z.namelist():
                if _wanted(member):
                    (folder / _wanted(member)).write_bytes(z.read(member))
                    found.add(_wanted(member))
    else:
        with tarfile.open(archive, "r|gz") as tar:
            for member in tar:
                if member.isfile() and _wanted(member.name):
                    (folder / _wanted(member.name)).write_bytes(tar.extractfile(member).read())
                    found.add(_wanted(member.name))
    missing = sorted(set(FILES.values()) - found)
    if missing:
        raise SoraError(f"dataset 'squad': {archive.name} lacks {', '.join(missing)} under {MEMBERS}")


def _wanted(member: str) -> str | None:
    """The file name of an archive member that is one of the five files (a source archive adds a top folder)."""
    name = member.rsplit("/", 1)[-1]
    return name if member.endswith(MEMBERS + name) and name in FILES.values() else None


def _count(path: Path) -> int:
    return sum(len(p["qas"]) for a in json.loads(path.read_text())["data"] for p in a["paragraphs"])


def read_squad_json(path: Path) -> Table:
    """One row per question: question, context, answers (texts), answer_start (their starts), title, id."""
    cols: dict[str, list] = {k: [] for k in ("question", "context", "answers", "answer_start", "title", "id")}
    where = []
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        for p, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                cols["question"].append(qa["question"])
                cols["context"].append(paragraph["context"])
                cols["answers"].append([a["text"] for a in qa["answers"]])
                cols["answer_start"].append([a["answer_start"] for a in qa["answers"]])
                cols["title"].append(article.get("title", ""))
                cols["id"].append(qa.get("id", ""))
                where.append(f"{path.name}:{article.get('title', '')}:{p}:{qa.get('id', '')}")
    return Table(cols, where)


def load_squad(folder: Path, cfg: DataConfig, task: str) -> Raw:
    tables = {split: read_squad_json(folder / name) for split, name in FILES.items()}
    return Raw(tables, dict(COLUMNS), None, group="title")


SQUAD = Builtin(
    name="squad",
    task="span",
    tasks=("span",),
    description="SQuAD v1.1 dev (10,565 questions, split by article) + SQuADShifts new_wiki, nyt, reddit, amazon",
    origin=f"PyPI {REQUIREMENT} ({MEMBERS}; downloaded --no-deps, 342 MB)",
    fetch_into=fetch_squad,
    load=load_squad,
)
