"""`percodec models`: the shipped models and what each is for."""

from __future__ import annotations

import click

from codec.cli import friendly_errors, main


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON list of objects (one per model) for scripts.")
@friendly_errors
def models(as_json: bool) -> None:
    """List the shipped models: family, status (a rung model of a scale, retired but kept so
    its files decode, or a reference), levels, file size, and what each was trained from."""
    import json

    from codec.zoo import catalogue

    rows = catalogue()
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    click.echo(f"{'model':<18} {'family':<7} {'status':<19} {'levels':>6} {'MB':>5}  lineage")
    for r in rows:
        status = r["status"] + (f" ({', '.join(r['scales'])})" if r["scales"] else "")
        lineage = "; ".join(x for x in (f"from {r['from']}" if r["from"] else "",
                                         f"base {r['base']}" if r["base"] else "") if x)  # fmt: skip
        levels = "-" if r["levels"] is None else str(r["levels"])
        click.echo(f"{r['name']:<18} {r['family']:<7} {status:<19} {levels:>6} {r['bytes'] / 1e6:5.1f}  {lineage}")
