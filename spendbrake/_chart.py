"""The report's PNG: spend by team, stacked by model (matplotlib, Agg backend: no display)."""

from __future__ import annotations

from pathlib import Path

from spendbrake.schemas import NUSD

#: Models drawn by name; the rest of a team's spend is one "other" segment.
TOP_MODELS = 8


def spend_chart(
    costs: dict[str, dict[str, int]], stacked: bool, title: str, path: str | Path
) -> Path:
    """Write a bar chart of ``costs`` (team -> model -> nano-dollars) to ``path``.

    ``stacked`` False means the store had no [team, model] series: one plain bar per
    team, and the title says so.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    teams = sorted(costs, key=lambda t: -sum(costs[t].values()))
    by_model: dict[str, int] = {}
    for models in costs.values():
        for model, cost in models.items():
            by_model[model] = by_model.get(model, 0) + cost
    named = sorted(by_model, key=lambda m: -by_model[m])[:TOP_MODELS]
    segments = [*named, "other"] if len(by_model) > len(named) else named
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    bottoms = [0.0] * len(teams)
    for model in segments:
        heights = [
            (
                sum(c for m, c in costs[t].items() if m not in named)
                if model == "other"
                else costs[t].get(model, 0)
            )
            / NUSD
            for t in teams
        ]
        ax.bar(teams, heights, bottom=bottoms, label=model if stacked else None)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_ylabel("spend (USD)")
    ax.yaxis.set_major_formatter("${x:,.0f}")
    ax.set_title(title if stacked else f"{title} (no [team, model] rollups: not stacked)")
    if stacked:
        ax.legend(title="model", fontsize="small", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
