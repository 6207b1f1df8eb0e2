"""``labkit compare``: statistics over the runs under a base directory."""

from __future__ import annotations

import click

from labkit.params import default_base_dir


@click.command("compare")
@click.option("--base-dir", default=default_base_dir, show_default="$BASE_DIR or .")
@click.option("--metric", "metrics", multiple=True,
              help="a table column to compare (repeatable) [default: fit time and the ground-truth quality columns]")
@click.option("--by", default="method", show_default=True, help="the column whose values are the groups")
@click.option("--posthoc", type=click.Choice(["nemenyi", "conover"]), default="nemenyi", show_default=True)
@click.option("--unpaired", is_flag=True, help="treat the runs as unpaired instead of blocking by recording and seed")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None, help="also write the run table as CSV")
@click.option("--figures", "figures_dir", type=click.Path(file_okay=False), default=None,
              help="write box plots, critical-difference diagrams and the topomap grid here as PNG")
def compare_runs(base_dir: str, metrics: tuple[str, ...], by: str, posthoc: str, unpaired: bool,
                 csv_path: str | None, figures_dir: str | None) -> None:
    """Compare the runs under base-dir: rank tests chosen by the design, effect sizes, Holm (labkit.study.compare)."""
    from labkit.study import compare, figures, quality

    frame = quality.comparison_table(base_dir)
    if frame.empty:
        raise compare.ComparisonError(f"no result folders under {base_dir}")
    if csv_path:
        frame.to_csv(csv_path)
    chosen = list(metrics) or [m for m in compare.DEFAULT_METRICS if m in frame and frame[m].notna().any()]
    result = compare.compare(frame, chosen, by, blocks=None if unpaired else compare.BLOCKS, posthoc=posthoc)
    click.echo(result.summary())
    click.echo("\n" + result.tests.drop(columns=["design", "blocking"]).to_string(index=False))
    if len(result.posthoc):
        click.echo("\n" + result.posthoc.to_string(index=False))
    for path in figures.save_figures(frame, result, figures_dir) if figures_dir else []:
        click.echo(f"wrote {path}")
