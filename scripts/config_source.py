"""The configuration keys as src/config/mod.rs declares them, read from its doc comments
and serde renames: shared by gen-config-reference.py (docs/configuration.md) and
gen-chart-config.py (the chart's values.yaml and schema)."""
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
src = (root / "src/config/mod.rs").read_text()


def fields(struct):
    """(key, Rust type, documentation) of each field of `struct`, in order."""
    body = re.search(r"pub struct " + struct + r" \{(.*?)\n\}", src, re.S).group(1)
    docs, rename = [], None
    for line in body.split("\n"):
        l = line.strip()
        if l.startswith("///"):
            docs.append(l[3:].strip())
        elif l.startswith("#[serde(rename"):
            rename = re.search(r'"(.*)"', l).group(1)
        elif l.startswith("pub "):
            field, ty = re.match(r"pub (\w+): (.*),", l).groups()
            yield (rename or field), ty, " ".join(docs)
            docs, rename = [], None
