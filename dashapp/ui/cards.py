"""One card per instance, with a component id for every part the browser updates.

Every id starts with `card-{key}`: the key is a stable ASCII id, so names with any characters
stay out of ids. Names, tags and reasons are passed as strings, which React renders as text.
"""

from __future__ import annotations

from dash import html

from dashapp.i18n import t


def card_id(key: str, part: str | None = None) -> str:
    return f"card-{key}" if part is None else f"card-{key}-{part}"


def instance_card(instance: dict, lang: str) -> html.Div:
    """Build the card of one instance from InstanceState.to_dict().

    Status, latency and problem are filled in here for the first paint. The browser adds the
    times (in its own time zone) and the details, and keeps every part current from then on.
    """
    key = instance["key"]
    status = instance["status"]

    header = html.Div([
        html.Div(instance["name"], id=card_id(key, "name"), className="card-name"),
        html.Div([
            html.Span(t(f"status.{status}", lang), id=card_id(key, "status"),
                      className=f"status-badge status-{status}"),
            html.Span(t("ui.stale.badge", lang), className="stale-badge"),
        ], className="card-badges"),
    ], className="card-head")

    meta = html.Div([
        html.Span([
            html.Span(className=f"type-icon type-{instance['type']}"),
            t(f"ui.type.{instance['type']}", lang),
        ], className="card-type"),
        html.Span(f"{instance['host']}:{instance['port']}", className="card-address"),
    ], className="card-meta")

    tags = html.Div([html.Span(tag, className="tag-badge") for tag in instance["tags"]],
                    className="card-tags")

    metrics = html.Div([
        html.Div([
            html.Span(t("ui.card.latency", lang), className="metric-label"),
            html.Span(_latency_text(instance, lang), id=card_id(key, "latency"), className="metric-value"),
        ], className="card-metric"),
        html.Div([
            html.Span(t("ui.card.last_check", lang), className="metric-label"),
            html.Span("—" if instance["last_check"] else t("ui.card.never_checked", lang),
                      id=card_id(key, "checked"), className="metric-value"),
        ], className="card-metric"),
    ], className="card-metrics")

    problem = html.Div([
        html.Span(t(f"failure.{instance['failure']}", lang) if instance["failure"] else "",
                  id=card_id(key, "failure"), className="problem-failure"),
        html.Span(instance["reason"] or "", id=card_id(key, "reason"), className="problem-reason"),
        html.Span("", id=card_id(key, "since"), className="problem-since"),
    ], id=card_id(key, "problem"), className=_problem_class(instance))

    details = html.Details([
        html.Summary(t("ui.card.details", lang)),
        html.Dl([], id=card_id(key, "details"), className="card-details"),
    ], className="card-details-box")

    body = html.Div([header, meta, tags, metrics, problem, details],
                    id=card_id(key, "body"), className=f"instance-card status-{status}")
    return html.Div(body, id=card_id(key), className="card-slot")


def _latency_text(instance: dict, lang: str) -> str:
    if instance["latency_ms"] is None:
        return "—"
    return t("ui.card.latency_value", lang, value=f"{instance['latency_ms']:.1f}")


def _problem_class(instance: dict) -> str:
    shown = instance["status"] != "running" and bool(instance["failure"] or instance["reason"])
    return "card-problem" if shown else "card-problem d-none"
