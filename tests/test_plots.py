"""Trial figures on small synthetic tables (no simulation): content of the drawn artists,
edge cases (zero events, all not evaluable, one patient, missing optional columns)."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from vcohort import plots

BOR = ["CR", "PR", "SD", "PD", "NE"]


def make_endpoints(arms=("A", "B"), n=12, seed=0, horizon=168.0):
    rng = np.random.default_rng(seed)
    rows = []
    for arm in arms:
        for p in range(n):
            event = bool(rng.random() < 0.6)
            rows.append(
                {
                    "patient": p,
                    "arm": arm,
                    "status": 0,
                    "best_pct_change": float(rng.uniform(-100, 150)),
                    "final_pct_change": float(rng.uniform(-100, 200)),
                    "bor": BOR[p % 4],
                    "pfs_days": float(rng.choice([42, 84, 126])) if event else horizon,
                    "pfs_event": event,
                    "baseline_diameter_mm": 86.0,
                    "nadir_diameter_mm": 50.0,
                }
            )
    ep = pd.DataFrame(rows)
    # responders respond at the first assessment (day 42; halfway to a PD at day 42) and stay
    # in response until PFS ends
    responder = ep["bor"].isin(["CR", "PR"])
    ep["response_day"] = np.where(responder, np.minimum(42.0, ep["pfs_days"] / 2), np.nan)
    ep["dor_days"] = ep["pfs_days"] - ep["response_day"]
    ep["dor_event"] = pd.array(np.where(responder, ep["pfs_event"], pd.NA), dtype="boolean")
    return ep


DAYS = np.arange(0, 169, 7.0)


def make_timecourse(endpoints, days=DAYS):
    rows = []
    for r in endpoints.itertuples():
        slope = -0.8 if r.bor in ("CR", "PR") else 0.5  # % per day
        for d in days:
            rows.append((r.patient, r.arm, d, 80.0 * max(1 + slope * d / 100, 0.01)))
    return pd.DataFrame(rows, columns=["patient", "arm", "day", "diameter_mm"])


def nmtran(drug, time, amt, ii, addl, rate):
    return pd.DataFrame(
        {
            "ID": 1,
            "TIME": [time],
            "AMT": [amt],
            "CMT": 1,
            "EVID": 1,
            "II": [ii],
            "ADDL": [addl],
            "RATE": [rate],
            "DRUG": [drug],
        }
    )


def test_expand_doses_addl_ii_and_infusion_duration():
    tab = pd.concat(
        [nmtran("pembro", 0.0, 200.0, 21.0, 3, 9600.0), nmtran("oral", 1.0, 10.0, 0.5, 2, 0.0)]
    )
    d = plots.expand_doses(tab)
    pem = d[d["DRUG"] == "pembro"]
    np.testing.assert_allclose(pem["TIME"], [0, 21, 42, 63])  # ADDL=3 → 4 doses, II apart
    np.testing.assert_allclose(pem["DUR"], 200.0 / 9600.0)  # 30 min infusion
    oral = d[d["DRUG"] == "oral"]
    np.testing.assert_allclose(oral["TIME"], [1.0, 1.5, 2.0])
    assert (oral["DUR"] == 0).all() and len(d) == 7


def test_expand_doses_without_drug_column_and_missing_column_error():
    tab = nmtran("x", 0.0, 5.0, 0.0, 0, 0.0).drop(columns="DRUG")
    assert plots.expand_doses(tab)["DRUG"].tolist() == ["CMT 1"]
    with pytest.raises(ValueError, match=r"dose schedule lacks columns \['II'\]"):
        plots.expand_doses(tab.drop(columns="II"))


def test_waterfall_bars_sorted_coloured_and_capped():
    ep = make_endpoints(arms=("A",), n=10)
    ep.loc[0, "best_pct_change"] = 250.0  # above the +100% cap
    ax = plots.waterfall(ep).axes[0]
    bars, hatched = ax.collections
    tops = np.array([p.vertices[1] for p in bars.get_paths()])  # (x left, top) of each bar
    expected = np.sort(np.minimum(ep["best_pct_change"].to_numpy(), 100.0))[::-1]
    np.testing.assert_allclose(tops[:, 1], expected)
    np.testing.assert_allclose(tops[:, 0], np.arange(10) - 0.5)
    order = ep.sort_values("best_pct_change", ascending=False, kind="stable")
    colours = [to_hex(c) for c in bars.get_facecolors()]
    assert colours == [plots.BOR_COLORS[b] for b in order["bor"]]
    capped = np.sort(ep["best_pct_change"].to_numpy())[::-1] > 100.0
    assert capped.sum() >= 1 and not capped.all()
    assert hatched.get_hatch() == "//"
    notes = [t.get_text() for t in ax.texts if t.get_text().startswith("hatched")]
    assert notes == [f"hatched: above +100%, cut at +100% ({int(capped.sum())})"]
    ep["best_pct_change"] = ep["best_pct_change"].clip(upper=50.0)  # nothing cut: no note
    assert not [t for t in plots.waterfall(ep).axes[0].texts if "hatched" in t.get_text()]
    hatched_x = [p.vertices[1, 0] + 0.5 for p in hatched.get_paths()]
    assert hatched_x == np.flatnonzero(capped).tolist()
    refs = sorted(ln.get_ydata()[0] for ln in ax.lines)
    assert refs == [-30.0, 0.0, 20.0]


def test_spider_subsample_is_random_limited_and_reproducible():
    ep = make_endpoints(arms=("A",), n=20)
    tc = make_timecourse(ep)
    a = plots.spider(ep, tc, max_patients=5, seed=3).axes[0]
    b = plots.spider(ep, tc, max_patients=5, seed=3).axes[0]
    curves = [ln for ln in a.lines if len(ln.get_xdata()) > 2]
    assert len(curves) == 5
    assert [ln.get_ydata().tolist() for ln in curves] == [
        ln.get_ydata().tolist() for ln in b.lines if len(ln.get_xdata()) > 2
    ]
    for ln in curves:  # % change from each patient's first day
        assert ln.get_ydata()[0] == pytest.approx(0.0, abs=1e-12)


def test_km_zero_event_arm_one_patient_arm_and_at_risk_table():
    ep = make_endpoints(arms=("A", "B"), n=8)
    ep.loc[ep["arm"] == "B", "pfs_event"] = False  # zero events
    one = make_endpoints(arms=("C",), n=1)
    fig = plots.km_pfs(pd.concat([ep, one], ignore_index=True), horizon=168.0)
    curve_b = [ln for ln in fig.axes[0].lines if ln.get_label() == "B"]
    assert len(curve_b) == 1 and np.all(curve_b[0].get_ydata() == 1.0)  # no events: S(t) = 1
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(labels) == 3
    assert labels[1].startswith("B: n=8, events=0") and "not reached" in labels[1]
    assert len(fig.axes) == 2  # lifelines' at-risk axis under the plot
    assert fig.axes[0].get_legend() is None  # one legend only (the figure's)
    at_risk = fig.axes[1].get_xticklabels()[0].get_text()
    assert "A" in at_risk and "8" in at_risk


def test_km_arm_without_evaluable_patients_is_named_not_dropped():
    ep = make_endpoints(arms=("A", "B"), n=5)
    ep.loc[ep["arm"] == "B", "status"] = 2  # every B patient failed
    fig = plots.km_pfs(ep, horizon=168.0)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0].startswith("A: n=5")
    assert labels[1] == "B: no evaluable patients (of 5)"
    assert [ln.get_label() for ln in fig.axes[0].lines if ln.get_label() in "AB"] == ["A"]


def test_numbers_at_risk_count_patients_with_an_event_on_the_tick():
    """PFS events sit on assessment days, which are often ticks: a patient progressing on day
    84 is still at risk at day 84 (lifelines' own table counted it out)."""
    ep = make_endpoints(arms=("A",), n=10)
    ep["pfs_days"] = [42.0] * 4 + [84.0] * 3 + [168.0] * 3
    ep["pfs_event"] = [True] * 7 + [False] * 3
    fig = plots.km_pfs(ep, horizon=168.0)
    ax2 = fig.axes[1]
    got = {
        float(t): int(lab.get_text().split()[-1])
        for t, lab in zip(ax2.get_xticks(), ax2.get_xticklabels(), strict=True)
    }
    assert got == {0.0: 10, 28.0: 10, 56.0: 6, 84.0: 6, 112.0: 3, 140.0: 3, 168.0: 3}
    assert plots.numbers_at_risk([42.0, 84.0], [0.0, 42.0, 43.0, 84.0]) == [2, 2, 1, 1]


def test_all_not_evaluable_and_missing_optional_columns():
    ep = make_endpoints(arms=("A",), n=4)
    ep["status"] = 2
    ep["bor"] = "NE"
    ep[["best_pct_change", "pfs_days"]] = np.nan
    for fig in (plots.waterfall_by_arm(ep), plots.km_pfs(ep), plots.swimmer_by_arm(ep)):
        texts = [t.get_text() for a in fig.axes for t in a.texts]
        assert "no evaluable patients" in texts
    bare = make_endpoints(arms=("A",), n=3)[list(plots.ENDPOINT_COLUMNS)]  # no status etc.
    assert len(plots.waterfall(bare).axes[0].collections[0].get_paths()) == 3


def test_missing_required_column_names_it():
    ep = make_endpoints().drop(columns="bor")
    with pytest.raises(ValueError, match=r"endpoints lacks columns \['bor'\]"):
        plots.waterfall_by_arm(ep)


def test_swimmer_markers_match_events_and_responses():
    # endpoints without response_day (written before it existed): ▲ from the time course
    ep = make_endpoints(arms=("A",), n=10).drop(columns="response_day")
    tc = make_timecourse(ep)
    ax = plots.swimmer(ep, tc, horizon=168.0).axes[0]
    by_marker = {ln.get_marker(): len(ln.get_xdata()) for ln in ax.lines}
    assert by_marker["x"] == int(ep["pfs_event"].sum())
    assert by_marker[">"] == int((~ep["pfs_event"]).sum())
    # responders shrink 0.8%/day: ≥30% at day 42 (first saved day ≥ 37.5), shown if ≤ PFS
    resp = ep["bor"].isin(["CR", "PR"]) & (ep["pfs_days"] >= 42)
    assert by_marker["^"] == int(resp.sum())
    onset = plots.response_onset(tc)
    assert set(onset.unique()) == {42.0}


def test_swimmer_marks_the_recist_response_day_when_the_endpoints_have_it():
    """▲ sits at the assessment that first measured the CR/PR the bar's colour shows (not at a
    saved day with ≥30% shrinkage: that one may be an unconfirmed, SD-coloured dip), and the
    legend says which it is."""
    ep = make_endpoints(arms=("A",), n=10)
    resp = ep["bor"].isin(["CR", "PR"])
    ep["response_day"] = np.where(resp, 84.0, np.nan)
    dip = make_timecourse(ep.assign(bor="PR"))  # every patient dips ≥30% in the time course
    ax = plots.swimmer(ep, dip, horizon=168.0).axes[0]
    (tri,) = [ln for ln in ax.lines if ln.get_marker() == "^"]
    shown = resp & (ep["pfs_days"] >= 84)
    assert len(tri.get_xdata()) == int(shown.sum()) and set(tri.get_xdata()) == {84.0}
    fig = plots.swimmer_by_arm(ep, dip)
    labels = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert "response (RECIST)" in labels and "≥30% shrinkage" not in labels


def test_dose_schedule_arms_lanes_labels_and_empty_arm():
    sched = {
        "pembro": nmtran("pembrolizumab", 0.0, 200.0, 21.0, 7, 9600.0),
        "combo": pd.concat(
            [
                nmtran("pembrolizumab", 0.0, 200.0, 21.0, 7, 9600.0),
                nmtran("cb839", 0.0, 800.0, 0.5, 335, 0.0),
            ]
        ),
        "control": nmtran("x", 0.0, 1.0, 0.0, 0, 0.0).iloc[:0],
    }
    fig = plots.dose_schedule(sched, horizon=168.0)
    axes = [a for a in fig.axes if a.get_visible()]
    assert [a.get_title(loc="left") for a in axes] == ["pembro", "combo", "control"]
    top_down = [t.get_text() for t in axes[1].get_yticklabels()][::-1]
    assert top_down == ["pembrolizumab", "cb839"]  # schedule order, first drug on top
    notes = [t.get_text() for t in axes[1].texts]
    assert "200 mg q21d ×8, IV 30 min" in notes and "800 mg q12h ×336" in notes
    assert [t.get_text() for t in axes[2].texts] == ["no doses"]
    with pytest.raises(ValueError, match="schedules must be a dict"):
        plots.dose_schedule([sched["pembro"]])


def test_user_strings_with_mathtext_and_save_png(tmp_path):
    ep = make_endpoints(arms=("arm $1", "<b>&"), n=3)
    fig = plots.waterfall_by_arm(ep)
    path = plots.save_figure(fig, tmp_path / "w.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert b"matplotlib" not in data.lower()  # no software metadata → reproducible files
    assert [a.get_title() for a in fig.axes if a.get_visible()] == ["arm \\$1", "<b>&"]


def test_waterfall_panels_share_the_tallest_arm_s_top():
    """Untreated first (+123%, +71%), an effective arm last (max +36.7%): the shared y-axis took
    the last panel's top (41.7), cutting the +71% bar unmarked; now the tallest arm's, capped."""
    ep = make_endpoints(("untreated", "triple"), n=4)
    ep.loc[ep.arm == "untreated", "best_pct_change"] = [123.0, 71.3, 36.8, 27.2]
    ep.loc[ep.arm == "triple", "best_pct_change"] = [-90.0, -50.0, 10.0, 36.7]
    fig = plots.waterfall_by_arm(ep)
    assert [ax.get_ylim()[1] for ax in fig.axes[:2]] == [105.0, 105.0]
    ep.loc[ep.arm == "untreated", "best_pct_change"] = [60.0, 10.0, 0.0, -5.0]
    assert plots.waterfall_by_arm(ep).axes[0].get_ylim()[1] == 65.0


def test_a_cell_product_s_dose_label_is_in_cells():
    from types import SimpleNamespace

    row = SimpleNamespace(DRUG="cd133_cart", AMT=80.78, ADDL=0, II=0.0, RATE=0.0)
    assert plots._regimen_label(row) == "80.78×10⁶ cells"
    assert plots._regimen_label(SimpleNamespace(**{**vars(row), "DRUG": "pembrolizumab"})) == (
        "80.78 mg"
    )


def forest_table(rows):
    """A subgroup table for `plots.forest`: (subgroup, hr, ci_low, ci_high) per row, arm B
    against the reference A."""
    out = []
    for label, hr, lo, hi in rows:
        out += [
            {"variable": "v", "subgroup": label, "arm": "A", "n": 10, "hr_n": pd.NA, "hr": 1.0,
             "hr_ci_low": np.nan, "hr_ci_high": np.nan, "interaction_p": np.nan},
            {"variable": "v", "subgroup": label, "arm": "B", "n": 10, "hr_n": 10, "hr": hr,
             "hr_ci_low": lo, "hr_ci_high": hi, "interaction_p": np.nan},
        ]  # fmt: skip
    return pd.DataFrame(out)


def _whiskers(ax):
    """Per drawn row (y): the whisker's x ends and the arrow markers at its ends."""
    out = {}
    for line in ax.lines:
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        if len(x) == 2 and y[0] == y[1] and line.get_marker() in ("None", "", None):
            out.setdefault(y[0], {})["ends"] = tuple(x)
        elif line.get_marker() in ("<", ">"):
            out.setdefault(y[0], {}).setdefault("arrows", []).append((line.get_marker(), x[0]))
    return out


def test_forest_an_unbounded_ci_is_drawn_to_the_edge_with_an_arrow():
    t = forest_table([("a", 0.5, 0.3, 0.8), ("b", 2.0, 0.0, np.inf), ("c", 0.4, 0.2, 0.8)])
    ax = plots.forest(t).axes[0]
    left, right = ax.get_xlim()
    w = _whiskers(ax)
    assert w[-1.0]["ends"] == pytest.approx((left, right))  # 'b': open at both ends
    assert sorted(w[-1.0]["arrows"]) == [("<", pytest.approx(left)), (">", pytest.approx(right))]
    assert "arrows" not in w[0.0] and w[0.0]["ends"] == (0.3, 0.8)  # bounded: no arrow


def test_forest_one_wide_ci_does_not_squeeze_the_others_and_ticks_span_the_axis():
    t = forest_table([("a", 0.5, 0.3, 0.8), ("b", 0.6, 1e-4, 1e4), ("c", 0.4, 0.2, 0.8)])
    ax = plots.forest(t).axes[0]
    left, right = ax.get_xlim()
    assert left >= 0.4 / plots.FOREST_SPAN / 1.2 and right <= 1.1 * plots.FOREST_SPAN * 1.2
    w = _whiskers(ax)
    assert w[-1.0]["ends"] == pytest.approx((left, right)) and len(w[-1.0]["arrows"]) == 2
    # an axis from 0.02 to 50: ticks out to both ends (not stopping at 0.05 and 20)
    ax = plots.forest(forest_table([("a", 0.02, 0.01, 0.04), ("b", 50.0, 30.0, 80.0)])).axes[0]
    left, right = ax.get_xlim()
    ticks = ax.get_xticks()
    assert ticks.min() < 2 * left and ticks.max() > right / 2 and 1.0 in ticks
    assert not any("arrows" in v for v in _whiskers(ax).values())  # every CI within the axis


def test_forest_legend_and_labels_stay_inside_the_figure_with_long_arm_names():
    """Whole regimens as arm names: three side by side ran off the figure's edge (clipped in
    the saved PNG); the legend now puts long names one per row, wrapped."""
    arms = [
        "triple (WNT974 10 mg QD + pembrolizumab 200 mg q3w + CB-839 800 mg BID) with induction",
        "pembrolizumab 200 mg q3w + CB-839 800 mg BID",
        "WNT974 10 mg QD + pembrolizumab 200 mg q3w",
    ]
    rows = [("all", "all patients", "control", 100, 1.0, np.nan, np.nan)]
    rows += [("all", "all patients", a, 100, 0.6, 0.4, 0.9) for a in arms]
    t = pd.DataFrame(rows, columns=list(plots.FOREST_COLUMNS))
    fig = plots.forest(t)
    fig.canvas.draw()
    box = fig.bbox
    ax = fig.axes[0]
    for artist in [*fig.legends, ax.xaxis.label, *ax.get_yticklabels()]:
        e = artist.get_window_extent()
        assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1, (artist, e, box)
        assert box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1, (artist, e, box)
    texts = [x.get_text() for x in fig.legends[0].get_texts()]
    assert texts[1:] == arms[1:] and texts[0].replace("\n", " ") == arms[0]


def test_km_takes_arm_names_with_braces():
    """lifelines formats the at-risk row's first label with str.format: 'Arm {A}' raised
    KeyError (and so no report was written); the row shows the name as given."""
    e = pd.DataFrame(
        dict(
            patient=[0, 1, 2, 3],
            arm=["Arm {A}"] * 2 + ["ctrl {}"] * 2,
            status=0,
            bor="SD",
            best_pct_change=0.0,
            pfs_days=[42.0, 84.0, 42.0, 84.0],
            pfs_event=True,
        )
    )
    fig = plots.km_pfs(e)
    first = fig.axes[-1].get_xticklabels()[0].get_text()
    assert "Arm {A}" in first and "ctrl {}" in first
