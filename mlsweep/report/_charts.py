"""Vega-Lite specs of the report's charts, built with Altair from tables already aggregated.

Every chart colours losses from one fixed domain, so a loss keeps its colour from chart to chart,
and every chart's loss legend is clickable: a click highlights that loss, shift-click adds one.
A sweep's other factors (margin, ...) are a `setting`: a dropdown picks one on the learning curves
(a loss that sets no margin shows under each), the x axis shows them side by side elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

# Vega's own categorical scheme (tableau10), fixed here so a loss keeps its colour everywhere.
PALETTE = ("#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6",
           "#9d755d", "#bab0ac")
FADED = 0.15
TOOLTIP_FORMAT = ".4g"
PAGE_WIDTH = 1100  # pixels a chart may take before it wraps or scrolls


def loss_colors(losses: Sequence[str]) -> dict[str, str]:
    """The colour of each loss, the same in every chart and table of a report."""
    return {loss: PALETTE[i % len(PALETTE)] for i, loss in enumerate(losses)}


def _loss_encoding(losses: Sequence[str]) -> tuple[alt.Parameter, alt.Color, Any]:
    """The legend-bound highlight, the loss colour, and an opacity that fades other losses."""
    highlight = alt.selection_point(name="highlight", fields=["loss"], bind="legend")
    colors = loss_colors(losses)
    color = alt.Color("loss:N", scale=alt.Scale(domain=list(colors), range=list(colors.values())),
                      legend=alt.Legend(title="loss (click to highlight)", symbolOpacity=1))
    return highlight, color, alt.condition(highlight, alt.value(1.0), alt.value(FADED))


def _tooltip(fields: Sequence[tuple[str, str]]) -> list[alt.Tooltip]:
    """Tooltips with exact values: numbers to 4 significant digits, everything else as is."""
    return [alt.Tooltip(f"{name}:{kind}", format=TOOLTIP_FORMAT) if kind == "Q"
            else alt.Tooltip(f"{name}:{kind}") for name, kind in fields]


def curves_chart(frame: pd.DataFrame, title: str, metrics: Sequence[str], losses: Sequence[str],
                 settings: Sequence[str]) -> alt.FacetChart:
    """Per-epoch mean over seeds with its 95% band, one panel per metric, one line per loss;
    a dropdown picks the setting when the sweep has several, and a row shows under every
    setting its `shown_in` lists (`|margin=0.2|margin=1|`)."""
    highlight, color, opacity = _loss_encoding(losses)
    base = alt.Chart(frame)
    choice = None
    if len(settings) > 1:
        choice = alt.param(name="setting", value=settings[0],
                           bind=alt.binding_select(options=list(settings), name="setting "))
        base = base.transform_filter(f"indexof(datum.shown_in, '|' + {choice.name} + '|') >= 0")
    x = alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1))
    band = base.mark_area().encode(
        x=x, y=alt.Y("low:Q", title=None, scale=alt.Scale(zero=False)), y2="high:Q", color=color,
        opacity=alt.condition(highlight, alt.value(0.2), alt.value(0.03)))
    line = base.mark_line(point=alt.OverlayMarkDef(size=18)).encode(
        x=x, y=alt.Y("mean:Q", title=None), color=color, opacity=opacity,
        tooltip=_tooltip([("loss", "N"), ("setting", "N"), ("metric", "N"), ("epoch", "Q"),
                          ("mean", "Q"), ("low", "Q"), ("high", "Q"), ("n", "Q")]))
    chart = (alt.layer(band, line.add_params(highlight)).properties(width=210, height=150)
             .facet(facet=alt.Facet("metric:N", sort=list(metrics), title=None), columns=len(metrics))
             .resolve_scale(y="independent")
             .properties(title=alt.Title(title, subtitle="mean over seeds; band: 95% t-interval")))
    return chart.add_params(choice) if choice is not None else chart


def ci_chart(frame: pd.DataFrame, title: str, metrics: Sequence[str], losses: Sequence[str],
             settings: Sequence[str]) -> alt.FacetChart:
    """Mean over seeds with its 95% bootstrap CI per data set and metric (a panel each), setting
    (x) and loss (colour), for any group of final-epoch metrics. Panels wrap to keep the chart
    about a screen wide however many settings and losses there are."""
    highlight, color, opacity = _loss_encoding(losses)
    datasets = sorted(frame["dataset"].unique())
    frame = frame.assign(panel=frame["dataset"] + " · " + frame["metric"])
    base = alt.Chart(frame).encode(
        x=alt.X("setting:N", title=None, sort=list(settings), axis=alt.Axis(labelAngle=-30)),
        xOffset=alt.XOffset("loss:N", scale=alt.Scale(domain=list(losses))),
        color=color, opacity=opacity,
        tooltip=_tooltip([("loss", "N"), ("dataset", "N"), ("setting", "N"), ("metric", "N"),
                          ("mean", "Q"), ("ci_low", "Q"), ("ci_high", "Q"), ("std", "Q"), ("n", "Q")]))
    bars = base.mark_rule(strokeWidth=2).encode(y=alt.Y("ci_low:Q", title=None, scale=alt.Scale(zero=False)),
                                                y2="ci_high:Q")
    points = base.mark_point(filled=True, size=60).encode(y="mean:Q")
    width = min(max(150, 14 * len(settings) * len(losses)), PAGE_WIDTH)
    panels = [f"{d} · {m}" for d in datasets for m in metrics]
    return (alt.layer(bars, points.add_params(highlight)).properties(width=width, height=150)
            .facet(facet=alt.Facet("panel:N", title=None, sort=panels),
                   columns=max(1, min(len(metrics), PAGE_WIDTH // (width + 60))))
            .resolve_scale(y="independent")
            .properties(title=alt.Title(title, subtitle="final epoch, mean over seeds; "
                                        "bars: 95% bootstrap CI")))


SIGNED_P_LIMIT = 6.0  # colour saturates at p = 1e-6


def pvalue_chart(frame: pd.DataFrame, metrics: Sequence[str], blocks: Sequence[str]) -> alt.FacetChart:
    """Holm-corrected p-values of the seed-paired t-test: a heat map per loss pair, metrics down,
    data set and setting across. The number is p; the colour (`wins`: −log10 p, signed) says
    which loss of the pair is better and how surely, on a diverging scale."""
    base = alt.Chart(frame).encode(
        x=alt.X("block:N", title=None, sort=list(blocks), axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("metric:N", title=None, sort=list(metrics)))
    rect = base.mark_rect().encode(
        color=alt.Color("wins:Q", title=["first loss better ↑", "−log10 Holm p, signed", "second ↓"],
                        scale=alt.Scale(domain=[-SIGNED_P_LIMIT, SIGNED_P_LIMIT], scheme="redblue",
                                        clamp=True, domainMid=0)),
        tooltip=_tooltip([("pair", "N"), ("block", "N"), ("metric", "N"), ("p_holm", "Q"),
                          ("holm_family", "N"),
                          ("t_p", "Q"), ("w_p", "Q"), ("mean_diff", "Q"), ("ci_low", "Q"),
                          ("ci_high", "Q"), ("d_z", "Q"), ("n_pairs", "Q"), ("better", "N"),
                          ("note", "N")]))
    text = base.mark_text(fontSize=10).encode(
        text="p_label:N",
        color=alt.condition(f"abs(datum.wins) > {SIGNED_P_LIMIT / 2}", alt.value("white"),
                            alt.value("#222")))
    return (alt.layer(rect, text).properties(width=max(160, 40 * len(blocks)), height=alt.Step(22))
            .facet(row=alt.Row("pair:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")))
            .properties(title=alt.Title("Which loss wins: Holm-corrected p per loss pair",
                                        subtitle="paired t-test at the final epoch, Holm within each "
                                        "block x metric (hover: the family); blue: the pair's first "
                                        "loss better, red: the second")))


def cd_chart(frame: pd.DataFrame, labels: Sequence[str], losses: Sequence[str],
             arms: Sequence[str]) -> alt.FacetChart:
    """Critical-difference diagram: each arm's mean rank over blocks (coloured by its loss), a
    row per metric (`label`), and a bar of the Nemenyi critical difference from the best rank:
    arms inside the bar do not differ significantly from the best."""
    highlight, color, opacity = _loss_encoding(losses)
    x = alt.X("mean_rank:Q", title="mean rank over blocks",
              scale=alt.Scale(domain=[1, max(2, len(arms))], nice=False))
    y = alt.Y("arm:N", title=None, sort=list(arms), axis=None)
    base = alt.Chart(frame)
    bar = base.transform_filter("datum.is_best && isValid(datum.cd)").mark_rule(
        strokeWidth=7, opacity=0.25, color="#333").encode(
        x=x, x2="cd_end:Q", y=y, tooltip=_tooltip([("cd", "Q"), ("n_blocks", "Q")]))
    points = base.mark_point(filled=True, size=90).encode(
        x=x, y=y, color=color, opacity=opacity,
        tooltip=_tooltip([("arm", "N"), ("metric", "N"), ("mean_rank", "Q"), ("n_blocks", "Q"),
                          ("cd", "Q"), ("friedman_p", "Q"), ("note", "N")]))
    names = base.mark_text(align="left", dx=8).encode(x=x, y=y, text="arm:N", color=color,
                                                      opacity=opacity)
    return (alt.layer(bar, points.add_params(highlight), names)
            .properties(width=480, height=alt.Step(16))
            .facet(row=alt.Row("label:N", title=None, sort=list(labels),
                               header=alt.Header(labelAngle=0, labelAlign="left", labelOrient="top",
                                                 labelAnchor="start", labelFontWeight="bold")))
            .properties(title=alt.Title("Critical-difference diagram",
                                        subtitle="grey bar: Nemenyi critical difference from the best "
                                        "mean rank")))
