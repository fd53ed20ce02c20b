"""Render a jsonnet file to stdout, as YAML (`--yaml`) or JSON.

Used by ./generate-docker-compose both on the host (the project's .venv) and in
its jsonnet image (the same pinned `jsonnet` package), so both render the same
bytes. Only the standard library and `_jsonnet` are imported: the image has
nothing else. An error in the jsonnet prints the evaluator's message and exits 1.
"""

import argparse
import json
import os
import sys

import _jsonnet


def render(path, yaml=False):
    """Evaluate `path`; return the text to write (YAML or indented JSON, ending in a newline)."""
    path = os.path.abspath(path)
    if yaml:
        # Keys unquoted where YAML allows it; lists indented under their key, as
        # people write compose files by hand.
        snippet = (
            f"std.manifestYamlDoc(import {json.dumps(path)},"
            " indent_array_in_object=true, quote_keys=false)"
        )
        text = json.loads(_jsonnet.evaluate_snippet(path, snippet))
    else:
        text = _jsonnet.evaluate_file(path)
    return text if text.endswith("\n") else text + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--yaml", action="store_true", help="YAML instead of JSON")
    args = parser.parse_args(argv)
    try:
        text = render(args.path, args.yaml)
    except RuntimeError as e:  # _jsonnet reports every evaluation error this way
        print(f"{args.path}: {str(e).strip()}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
