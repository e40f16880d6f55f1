"""The canonical workloads file (bench/workloads.yaml): read with PyYAML when installed,
else with a parser for the small subset of YAML the file uses. No torch needed."""

from pathlib import Path

from . import _lib


def _parse_workloads_minimal(text):
    """The subset of YAML that workloads.yaml uses (for machines without PyYAML):
    `- name: X` items whose `lengths: [...]` flow list may span lines."""
    workloads, current, collecting, buf = [], None, False, ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if collecting:
            buf += " " + line
            if "]" in line:
                current["lengths"] = [int(x) for x in buf.strip(" []").split(",") if x.strip()]
                collecting = False
            continue
        stripped = line.strip()
        if stripped.startswith("- name:"):
            current = {"name": stripped.split(":", 1)[1].strip()}
            workloads.append(current)
        elif stripped.startswith("lengths:") and current is not None:
            buf = stripped.split(":", 1)[1]
            if "]" in buf:
                current["lengths"] = [int(x) for x in buf.strip(" []").split(",") if x.strip()]
            else:
                collecting = True
    return workloads


def load_workloads(path):
    text = Path(path).read_text()
    try:
        import yaml
    except ImportError:
        return _parse_workloads_minimal(text)
    return [{"name": w["name"], "lengths": [int(n) for n in w["lengths"]]}
            for w in yaml.safe_load(text)["workloads"]]


def default_workloads_path():
    root = _lib._repo_root()
    candidates = []
    if root is not None:
        candidates += [root / "bench" / "workloads.yaml",
                       root.parent / "shared" / "bench" / "workloads.yaml"]
    candidates.append(Path.cwd() / "bench" / "workloads.yaml")
    for c in candidates:
        if c.is_file():
            return c
    raise SystemExit("jsdpa.bench: no workloads.yaml found (tried "
                     + ", ".join(str(c) for c in candidates) + "); pass --workloads FILE")
