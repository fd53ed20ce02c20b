"""Render a jsonnet file to stdout, as YAML (`--yaml`) or JSON.

`--with FILE` (a jsonnet file) and `--with-json TEXT` change settings first:
each is passed, in order, to the file's `.with(...)` (docker-compose.jsonnet's
way of taking the operator's settings file and the tag ./build recorded).

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


def render(path, yaml=False, overrides=()):
    """Evaluate `path`; return the text to write (YAML or indented JSON, ending in a newline).

    `overrides` are jsonnet expressions (`import "FILE"` or JSON text) given in
    turn to the result's `.with(...)`.
    """
    path = os.path.abspath(path)
    value = f"(import {json.dumps(path)})"
    for override in overrides:
        value = f"{value}.with({override})"
    if yaml:
        # Keys unquoted where YAML allows it; lists indented under their key, as
        # people write compose files by hand.
        snippet = f"std.manifestYamlDoc({value}, indent_array_in_object=true, quote_keys=false)"
        text = json.loads(_jsonnet.evaluate_snippet(path, snippet))
    elif overrides:
        text = _jsonnet.evaluate_snippet(path, value)
    else:
        text = _jsonnet.evaluate_file(path)
    return text if text.endswith("\n") else text + "\n"


class _Override(argparse.Action):
    """Collect --with and --with-json, in the order given, as jsonnet expressions."""

    def __call__(self, parser, namespace, value, option_string=None):
        if option_string == "--with":
            value = f"import {json.dumps(os.path.abspath(value))}"
        else:
            try:
                json.loads(value)
            except ValueError as e:
                parser.error(f"--with-json: not JSON: {e}")
        namespace.overrides = [*namespace.overrides, value]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--yaml", action="store_true", help="YAML instead of JSON")
    parser.set_defaults(overrides=[])
    parser.add_argument(
        "--with", action=_Override, metavar="FILE", help="a jsonnet file of settings to apply"
    )
    parser.add_argument(
        "--with-json", action=_Override, metavar="TEXT", help="settings to apply, as JSON"
    )
    args = parser.parse_args(argv)
    try:
        text = render(args.path, args.yaml, args.overrides)
    except RuntimeError as e:  # _jsonnet reports every evaluation error this way
        print(f"{args.path}: {str(e).strip()}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
