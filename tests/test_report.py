"""The HTML trial report: every file written and non-empty, figures embedded, no network
references, user strings escaped, edge cases and input errors."""

import base64
import re

import numpy as np
import pandas as pd
import pytest
from test_plots import make_endpoints, make_timecourse, nmtran

from vcohort.endpoints import summarize
from vcohort.report import FIGURES, write_trial_report


def inputs(endpoints):
    summary = summarize(endpoints, by="arm")
    summary["extra_statistic"] = 0.125  # more columns may come: all must be rendered
    sched = {
        a: nmtran("pembrolizumab", 0.0, 200.0, 21.0, 7, 9600.0) for a in endpoints["arm"].unique()
    }
    return {
        "summary": summary,
        "endpoints": endpoints,
        "timecourse": make_timecourse(endpoints),
        "schedules": sched,
        "config": {"seed": 1, "arms": {"A": "pembrolizumab 200 mg q3w"}, "days": 168},
    }


def check_report(out, paths, forest: bool = False, dor: bool = True):
    """Every figure (the forest plot only with a subgroup table, the duration of response's
    only with its columns) written and embedded."""
    figures = [f for f in FIGURES if (forest or f.name != "forest") and (dor or f.name != "km_dor")]
    names = sorted(p.relative_to(out).as_posix() for p in paths)
    assert names == sorted([f"figures/{f.name}.png" for f in figures] + ["report.html"])
    for p in paths:
        assert p.is_file() and p.stat().st_size > 0, p
    page = (out / "report.html").read_text(encoding="utf-8")
    for p in paths[:-1]:  # each figure embedded byte for byte
        assert base64.b64encode(p.read_bytes()).decode() in page, p.name
    srcs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert len(srcs) == len(figures) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"<(link|script|iframe)\b|@import|url\(", page, re.IGNORECASE)
    return page


def test_report_writes_every_file_and_is_self_contained(tmp_path):
    ep = make_endpoints(arms=("A", "B"), n=10)
    out = tmp_path / "run"
    paths = write_trial_report(out, title='Trial <1> & "x"', **inputs(ep))
    page = check_report(out, paths)
    assert "http://" not in page and "https://" not in page
    assert "<title>Trial &lt;1&gt; &amp; &quot;x&quot;</title>" in page
    assert "<th>extra_statistic</th>" in page and "<td>0.125</td>" in page
    assert "pembrolizumab 200 mg q3w" in page and "vcohort 0.1.0" in page
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)


def test_a_subgroup_table_adds_the_forest_plot(tmp_path):
    from vcohort.subgroups import subgroup_table

    ep = make_endpoints(arms=("A", "B"), n=10)
    base = pd.DataFrame({"patient": ep["patient"].unique()})
    base["marker"] = base["patient"] % 2 == 0
    sub = subgroup_table(ep, base, "A", ["marker"])
    out = tmp_path / "run"
    page = check_report(out, write_trial_report(out, title="t", subgroups=sub, **inputs(ep)), True)
    assert "Subgroups: PFS hazard ratio by baseline value" in page
    # a report without subgroups written into the same folder leaves no stale forest plot
    assert (out / "figures" / "forest.png").exists()
    paths = write_trial_report(out, title="t", **inputs(ep))
    assert not (out / "figures" / "forest.png").exists()
    figures = sorted(p.name for p in paths if p.parent.name == "figures")
    assert sorted(p.name for p in (out / "figures").iterdir()) == figures


def test_the_duration_of_response_figure_needs_its_columns(tmp_path):
    """Endpoints with the duration of response get its Kaplan–Meier figure (responders only);
    endpoints without it (written before it existed) get none, and no stale one is left."""
    from vcohort import plots

    ep = make_endpoints(arms=("A", "B"), n=10)
    out = tmp_path / "run"
    page = check_report(out, write_trial_report(out, title="t", **inputs(ep)))
    assert "Kaplan–Meier duration of response" in page
    fig = plots.km_dor(ep)
    texts = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    n_resp = ep[ep["arm"] == "A"]["dor_days"].notna().sum()
    assert any(t.startswith(f"A: n={n_resp},") for t in texts), texts
    assert fig.axes[0].get_xlabel() == "days since the response"
    old = ep.drop(columns=["response_day", "dor_days", "dor_event"])
    check_report(out, write_trial_report(out, title="t", **inputs(old)), dor=False)
    assert not (out / "figures" / "km_dor.png").exists()
    # an arm without a responder is named, not dropped; one whose every patient failed says so
    none = ep.assign(dor_days=np.where(ep["arm"] == "B", np.nan, ep["dor_days"]))
    texts = [t.get_text() for lg in plots.km_dor(none).legends for t in lg.get_texts()]
    assert "B: no responders (of 10)" in texts
    failed = ep.assign(status=np.where(ep["arm"] == "B", 1, 0))
    texts = [t.get_text() for lg in plots.km_dor(failed).legends for t in lg.get_texts()]
    assert "B: no evaluable patients (of 10)" in texts
    # the swimmer's caption says what its ▲ marks
    assert "▲: the response, at the RECIST assessment" in page
    old_page = (out / "report.html").read_text(encoding="utf-8")
    assert "▲: first saved day with ≥30% shrinkage" in old_page


def test_user_strings_escaped_and_urls_in_config_are_only_text(tmp_path):
    ep = make_endpoints(arms=("<script>alert(1)</script>", "B&B"), n=4)
    kw = inputs(ep)
    kw["config"]["source"] = "https://example.org/<trial>"
    page = check_report(tmp_path, write_trial_report(tmp_path, title="<i>t</i>", **kw))
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<i>t</i>" not in page and "B&amp;B" in page
    pre = page[page.index("<pre>") : page.index("</pre>")]
    assert page.count("https://") == pre.count("https://") == 1
    assert "https://example.org/&lt;trial&gt;" in pre


@pytest.mark.parametrize("case", ["zero_events", "all_ne", "one_patient", "bare_columns"])
def test_report_edge_cases(tmp_path, case):
    ep = make_endpoints(arms=("A", "B"), n=5)
    if case == "zero_events":
        ep["pfs_event"] = False
        ep["pfs_days"] = 168.0
        ep["dor_days"] = 168.0 - ep["response_day"]
        ep["dor_event"] = ep["dor_event"].where(ep["dor_event"].isna(), False)
    elif case == "all_ne":  # every simulation failed: not evaluable, NaN endpoints
        ep["status"] = 1
        ep["bor"] = "NE"
        ep[["best_pct_change", "final_pct_change", "pfs_days"]] = np.nan
    elif case == "one_patient":
        ep = ep[(ep["patient"] == 0) & (ep["arm"] == "A")]
    kw = inputs(ep)
    if case == "bare_columns":  # only the required columns; no schedule for arm B
        kw["endpoints"] = ep[["patient", "arm", "bor", "best_pct_change", "pfs_days", "pfs_event"]]
        kw["timecourse"] = kw["timecourse"][["patient", "arm", "day", "diameter_mm"]]
        kw["schedules"] = {"A": kw["schedules"]["A"]}
        kw["summary"] = pd.DataFrame({"arm": ["A", "B"]})
    paths = write_trial_report(tmp_path, title="edge", **kw)
    check_report(tmp_path, paths, dor=case != "bare_columns")


def test_bad_inputs_raise_naming_the_field(tmp_path):
    kw = inputs(make_endpoints(arms=("A",), n=2))
    bad = dict(kw, endpoints=kw["endpoints"].drop(columns="pfs_event"))
    with pytest.raises(ValueError, match=r"endpoints lacks columns \['pfs_event'\]"):
        write_trial_report(tmp_path, title="t", **bad)
    bad = dict(kw, schedules={"A": kw["schedules"]["A"].drop(columns="ADDL")})
    with pytest.raises(ValueError, match=r"schedules\['A'\] lacks columns \['ADDL'\]"):
        write_trial_report(tmp_path, title="t", **bad)
    with pytest.raises(ValueError, match="title must be a string"):
        write_trial_report(tmp_path, title=3, **kw)
    assert not (tmp_path / "figures").exists()  # nothing drawn before validation


def test_key_results_read_as_a_trial_table():
    """Rates as % with their exact CIs, 'NR' for a median not reached, the reference arm's HR
    named, columns the summary lacks left out."""
    from vcohort.report import key_results_html

    s = pd.DataFrame(
        {
            "arm": ["ref", "new"],
            "n": [100, 100],
            "orr": [0.2, 0.354],
            "orr_ci_low": [0.127, 0.312],
            "orr_ci_high": [0.291, 0.398],
            "median_pfs_days": [84.0, np.nan],
            "median_pfs_ci_low": [84.0, 126.0],
            "median_pfs_ci_high": [126.0, np.inf],
            "hr": [1.0, 0.61],
            "hr_ci_low": [np.nan, 0.45],
            "hr_ci_high": [np.nan, 0.83],
            "hr_note": ["reference", ""],
        }
    )
    page = key_results_html(s)
    heads = re.findall(r"<th>(.*?)</th>", page)
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", page, re.S)]
    rows = [r for r in rows if r]
    assert heads == [
        "Arm", "n", "ORR, % (95% CI)", "median PFS, days (95% CI)", "HR for PFS (95% CI)",
    ]  # fmt: skip
    assert rows[1][2] == "35.4 (31.2–39.8)" and rows[0][2] == "20.0 (12.7–29.1)"
    assert rows[0][3] == "84 (84–126)" and rows[1][3] == "NR (126–NR)"  # its lower bound
    assert rows[0][4] == "reference" and rows[1][4] == "0.61 (0.45–0.83)"
    assert rows[0][1] == "100"
    # n is the rates' denominator (evaluable patients), the failed ones beside it; the
    # landmark header takes its day from an arm that has one (an all-failed arm has NaN)
    s = s.assign(n_failed=[0, 3], pfs_landmark_days=[np.nan, 182.625])
    s = s.assign(pfs_landmark=[np.nan, 0.5], pfs_landmark_ci_low=[np.nan, 0.4])
    page = key_results_html(s.assign(pfs_landmark_ci_high=[np.nan, 0.6]))
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", page, re.S)]
    rows = [r for r in rows if r]
    assert rows[0][1] == "100" and rows[1][1] == "97 (+3 failed)"
    assert "PFS at day 182.6, % (95% CI)" in re.findall(r"<th>(.*?)</th>", page)
    # a strong effect: two significant figures below 0.1 (it printed '0.00 (0.00–0.01)')
    s = s.assign(hr=[1.0, 0.004], hr_ci_low=[np.nan, 0.0012], hr_ci_high=[np.nan, 0.013])
    page = key_results_html(s.assign(pfs_landmark_ci_high=[np.nan, 0.6]))
    assert "<td>0.004 (0.0012–0.013)</td>" in page


def test_a_landmark_past_follow_up_is_explained_under_the_table():
    """An arm with evaluable patients but no landmark PFS (the landmark lies past the last
    follow-up) gets a sentence saying why; an all-failed arm's NaN needs none."""
    from vcohort.report import landmark_note

    s = pd.DataFrame(
        {
            "arm": ["ref", "new", "broken"],
            "n": [10, 10, 4],
            "n_failed": [0, 0, 4],
            "orr": [0.2, 0.3, np.nan],
            "pfs_landmark": [0.5, np.nan, np.nan],
            "pfs_landmark_days": [182.625, np.nan, np.nan],
        }
    )
    (note,) = landmark_note(s)
    assert "PFS at day 182.6 is not evaluable in new:" in note and "broken" not in note
    assert landmark_note(s.assign(pfs_landmark=[0.5, 0.4, np.nan])) == []


def test_key_results_give_the_median_duration_of_response():
    """Median DoR with its CI; 'NR' with its lower bound when responses last; '–' for an arm
    without a responder (nothing to estimate, not 'not reached')."""
    from vcohort.report import key_results_html

    s = pd.DataFrame(
        {
            "arm": ["none", "lasting", "ending"],
            "n": [50, 50, 50],
            "orr": [0.0, 0.3, 0.4],
            "orr_ci_low": [0.0, 0.18, 0.26],
            "orr_ci_high": [0.07, 0.45, 0.55],
            "median_dor_days": [np.nan, np.nan, 126.0],
            "median_dor_ci_low": [np.nan, 84.0, 84.0],
            "median_dor_ci_high": [np.nan, np.inf, 168.0],
        }
    )
    page = key_results_html(s)
    assert "median DoR, days (95% CI)" in re.findall(r"<th>(.*?)</th>", page)
    rows = [re.findall(r"<td>(.*?)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", page, re.S)]
    assert [r[-1] for r in rows if r] == ["–", "NR (84–NR)", "126 (84–168)"]
